"""The one place that decides the special tokens around a sequence: BOS as the model's tokenizer adds it.

A model is trained, scored and sampled on the token ids its own tokenizer gives:
``tokenizer(text)`` adds BOS or it does not (SmolLM2's GGUF says ``add_bos_token =
false``; Llama 3 adds ``<|begin_of_text|>``). forgetless follows that convention by
default (``add_bos: auto``), so lm-eval's ``HFLM``, TRL and vLLM, which also follow the
tokenizer, feed a forgetless model the same ids and reproduce its figures. A user who
wants the other convention sets ``add_bos: true`` or ``false``; the choice is applied to
the tokenizer itself (``tokenizer.add_bos_token``), so the tokenizer saved beside a
trained model carries it to every other tool, and ``forgetless.json`` records it.

EOS is never added by a tokenizer's convention here: a prompt is never followed by EOS,
and forgetless ends every training text and completion with EOS itself (the model must
learn to stop). A chat template that writes its own BOS gets no second one.

Models trained by forgetless before this rule (``forgetless.json`` without ``add_bos``)
were trained with BOS prepended to every sequence whatever the tokenizer said; loading
one keeps that (``LEGACY_ADD_BOS``) and says so once.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BeforeValidator

if TYPE_CHECKING:  # transformers is heavy to import
    from transformers import PreTrainedTokenizerBase

# A setting that follows the model unless forced: add_bos here, chat_template in forgetless.prompting.
Tristate = Literal["auto", "true", "false"]
AddBos = Tristate
ADD_BOS_CHOICES: tuple[str, ...] = ("auto", "true", "false")
# What forgetless did before the choice was recorded: BOS before every sequence.
LEGACY_ADD_BOS = True
_PROBE = "a"
_CACHE = "_forgetless_adds_bos"


class SpecialTokensError(ValueError):
    """A convention the tokenizer cannot follow (no BOS token to add, a tokenizer that ignores the setting)."""


def parse_tristate(value: object, key: str) -> Tristate:
    """``auto``/``true``/``false`` from a flag or YAML value (YAML's ``true`` is a bool); ``key`` names it in errors."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text not in ADD_BOS_CHOICES:
        raise ValueError(f"{key}: expected one of {list(ADD_BOS_CHOICES)}, got {value!r}")
    return text  # type: ignore[return-value]


def parse_add_bos(value: object) -> AddBos:
    """``add_bos`` from a flag or YAML value."""
    return parse_tristate(value, "add_bos")


def recorded_setting(model_dir: str | Path, key: str, before: bool) -> bool | None:
    """What a forgetless model's ``forgetless.json`` records under ``key``: ``before`` for a model trained before
    the key was recorded; ``None`` when forgetless did not train it (or its metadata cannot be read: the
    loader's business, not the tokenizer's)."""
    meta = Path(model_dir) / "forgetless.json"
    if not meta.is_file():
        return None
    try:
        recorded = json.loads(meta.read_text()).get(key)
    except (ValueError, AttributeError, RecursionError):
        return None
    return recorded if isinstance(recorded, bool) else before


# The type of an ``add_bos`` config field or flag: YAML's true/false become "true"/"false".
AddBosSetting = Annotated[AddBos, BeforeValidator(parse_add_bos)]
ADD_BOS_HELP = ("BOS before every sequence: auto follows the model's tokenizer (what tokenizer(text) adds, as "
                "lm-eval and TRL do) or the convention a forgetless model was trained with; true or false forces it")


def adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether ``tokenizer(text)`` starts with BOS by default (probed, then cached on the tokenizer).

    Probing what the tokenizer does, not reading a flag, covers every way a tokenizer
    can declare it: a post-processor in ``tokenizer.json``, ``add_bos_token`` in its
    config, a slow tokenizer's ``build_inputs_with_special_tokens``.
    """
    state = getattr(tokenizer, "add_bos_token", None)
    cached = getattr(tokenizer, _CACHE, None)
    if cached is not None and cached[0] == state:
        return cached[1]
    bos = tokenizer.bos_token_id
    with_specials = tokenizer(_PROBE)["input_ids"]
    bare = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
    result = bos is not None and len(with_specials) > len(bare) and with_specials[0] == bos
    setattr(tokenizer, _CACHE, (state, result))
    return result


def bos_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """``[bos]`` when the tokenizer's convention adds BOS, else ``[]``."""
    return [tokenizer.bos_token_id] if adds_bos(tokenizer) else []


def encode(tokenizer: PreTrainedTokenizerBase, text: str, verbose: bool = True) -> list[int]:
    """Token ids of ``text`` with the convention's BOS (never EOS); no second BOS if the text writes one.

    ``verbose=False`` silences transformers' "longer than model_max_length" warning
    where a long text is expected (it is windowed or packed afterwards).
    """
    ids = tokenizer(text, add_special_tokens=False, verbose=verbose)["input_ids"]
    prefix = bos_prefix(tokenizer)
    return ids if not prefix or ids[:1] == prefix else [*prefix, *ids]


def context_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """What scores the first token of a text that has no context: BOS, else EOS (lm-eval's ``prefix_token_id``)."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return [token]


def recorded_add_bos(model_dir: str | Path) -> bool | None:
    """The BOS choice a forgetless model was trained with (``LEGACY_ADD_BOS`` before it was recorded)."""
    return recorded_setting(model_dir, "add_bos", LEGACY_ADD_BOS)


def set_add_bos(tokenizer: PreTrainedTokenizerBase, add_bos: bool) -> None:
    """Make ``tokenizer(text)`` add BOS or not, so that saving the tokenizer carries the choice.

    Raises:
        SpecialTokensError: ``add_bos`` with no BOS token, or a tokenizer that ignores ``add_bos_token``.
    """
    if adds_bos(tokenizer) == add_bos:
        return
    if add_bos and tokenizer.bos_token_id is None:
        raise SpecialTokensError(f"add_bos: true, but the tokenizer {tokenizer.name_or_path!r} has no BOS token; "
                                 "expected add_bos: auto or false")
    tokenizer.add_bos_token = add_bos
    # The attribute can read the same before and after (a post-processor in tokenizer.json that the
    # config does not mention): probe again.
    delattr(tokenizer, _CACHE)
    if adds_bos(tokenizer) != add_bos:
        raise SpecialTokensError(f"the tokenizer {tokenizer.name_or_path!r} ({type(tokenizer).__name__}) ignores "
                                 f"add_bos_token={add_bos}; expected add_bos: auto")


def apply_add_bos(tokenizer: PreTrainedTokenizerBase, choice: AddBos | bool = "auto",
                  model_dir: str | Path | None = None) -> bool:
    """Settle the BOS convention of a loaded tokenizer and return it.

    ``auto`` keeps the tokenizer's own convention, or, for a model forgetless trained,
    the one recorded in its ``forgetless.json``. An explicit choice wins, with a warning
    when it differs from what the model was trained with.
    """
    choice = parse_add_bos(choice)
    recorded = recorded_add_bos(model_dir) if model_dir is not None else None
    if choice == "auto":
        if recorded is None:
            return adds_bos(tokenizer)
        if recorded != adds_bos(tokenizer):
            warnings.warn(f"{model_dir}: trained with add_bos={str(recorded).lower()} (forgetless.json), which its "
                          "tokenizer does not declare; forgetless keeps the trained convention", stacklevel=2)
        wanted = recorded
    else:
        wanted = choice == "true"
        if recorded is not None and recorded != wanted:
            warnings.warn(f"{model_dir}: trained with add_bos={str(recorded).lower()}, now used with "
                          f"add_bos={choice}: its inputs differ from training", stacklevel=2)
    set_add_bos(tokenizer, wanted)
    return wanted


__all__ = [
    "ADD_BOS_CHOICES", "ADD_BOS_HELP", "LEGACY_ADD_BOS", "AddBos", "AddBosSetting", "SpecialTokensError", "adds_bos",
    "apply_add_bos", "bos_prefix",
    "Tristate", "context_prefix", "encode", "parse_add_bos", "parse_tristate", "recorded_add_bos",
    "recorded_setting", "set_add_bos",
]
