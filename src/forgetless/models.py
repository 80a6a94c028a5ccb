"""The ground floor for models: the one place forgetless loads a model and its tokenizer.

Everything above (training, replay, evaluation, merging, the study, the CLI) loads
through this module, and this module imports nothing of forgetless but its ground-floor
neighbours ``special_tokens`` and ``prompting`` (the BOS convention and prompt format a loaded
tokenizer follows): it sits at the bottom of the package's layers (``tests/test_layers.py``).

- ``load_model(spec)``: ``(model, tokenizer, path)`` from a checkpoint directory, a hub
  id or a LoRA adapter directory (merged into its base); in-memory models need no
  loading. ``load_causal_lm`` and ``load_tokenizer`` are its two halves.
- ``load_encoder(path)``: an encoder without a task head (``AutoModel``), for embedding models.
- ``capabilities(model)``: which optional forward arguments a model accepts.
- ``testbed:PRESET``, ``gguf:FILE`` and ``real:NAME`` specs are *not* resolved here: the
  entry points (the CLI, the study) resolve them with ``forgetless.testbed.specs`` before
  calling anything that loads, and a spec that reaches this module unresolved is refused
  with that hint.

Weights are safetensors only, never unpickled: ``train``, ``generate``, ``eval``, merge
sweeps, LoRA bases and the study all load through ``load_causal_lm`` (embedding models through
``load_encoder``, adapters through ``load_adapter``), so one policy holds everywhere:
``use_safetensors=True``. A pickled checkpoint (``pytorch_model.bin``, ``*.pt``) is refused
with a one-line error saying how to convert it, rather than unpickled: unpickling an
untrusted file runs its code, and even ``weights_only`` loading is a second, weaker policy.
Load failures become one-line ``ModelLoadError``s naming the path (a truncated shard, a
missing model, code that needs ``--trust-remote-code``).
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from forgetless.prompting import ChatChoice, PromptFormatError, apply_chat_choice
from forgetless.special_tokens import AddBos, SpecialTokensError, apply_add_bos

if TYPE_CHECKING:  # transformers is heavy to import; it is imported where a model is loaded
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class ModelLoadError(ValueError):
    """A model, adapter or tokenizer could not be loaded; the message names the path and the fix."""


_PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt")


def _convert_hint(path: Path, found: str, stem: str) -> str:
    if stem == "adapter_model":
        command = (f"import torch; from safetensors.torch import save_file; "
                   f"save_file(torch.load('{path / found}'), '{path / stem}.safetensors')")
    else:  # save_pretrained handles tied weights, which save_file refuses
        command = (f"from transformers import AutoModelForCausalLM as M; "
                   f"M.from_pretrained('{path}', use_safetensors=False).save_pretrained('{path}-safetensors')")
    return (
        f"{path}: holds only pickled weights ({found}), which forgetless does not load (unpickling runs code); "
        f"if you trust the file, convert it once: python -c \"{command}\""
    )


def check_safetensors(path: str | Path, stem: str = "model") -> None:
    """Check a local model (or, with ``stem="adapter_model"``, adapter) directory before loading it.

    Its ``config.json`` must be a JSON object, and its weights safetensors whose headers read
    (every shard an index names must be there); pickled weights alone are refused with the
    conversion. Nothing is loaded, and a hub id or a missing path passes: ``from_pretrained``
    reports those.

    Raises:
        ModelLoadError: naming the directory and the file at fault.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_dir():
        return
    for name in (f"{stem}.safetensors.index.json", f"{stem}.safetensors", "config.json", "adapter_config.json"):
        refuse_special(path / name)
    index = path / f"{stem}.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_bytes().decode("utf-8-sig"))["weight_map"]
            shards = sorted(set(weight_map.values()))
            if not all(isinstance(s, str) for s in shards):
                raise ValueError("shard names must be strings")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
            raise ModelLoadError(f"{index}: expected a JSON object with a weight_map ({_reason(err)})") from None
    elif (path / f"{stem}.safetensors").is_file():
        shards = [f"{stem}.safetensors"]
    else:
        pickled = sorted(p.name for pattern in _PICKLED for p in path.glob(pattern) if p.name != "training_args.bin")
        if pickled:
            raise ModelLoadError(_convert_hint(path, pickled[0], stem))
        raise ModelLoadError(f"{path}: no {stem}.safetensors; expected safetensors weights")
    for shard in shards:
        file = path / shard
        if Path(shard).is_absolute() or ".." in Path(shard).parts:
            raise ModelLoadError(f"{index}: shard {shard} lies outside {path}; expected shard files beside the index")
        refuse_special(file)
        if not file.is_file():
            raise ModelLoadError(f"{path}: shard {shard} named in {index.name} is missing")
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as err:
            raise ModelLoadError(f"{file}: not a complete safetensors file ({err})") from None
    config = path / ("adapter_config.json" if stem == "adapter_model" else "config.json")
    if not config.is_file():
        raise ModelLoadError(f"{path}: no {config.name}; expected a model directory written by save_pretrained")
    read_json_object(config)


def refuse_special(path: Path) -> None:
    """Refuse ``path`` when it exists but is not a regular file (or a link to one): a FIFO nobody writes to blocks
    its reader forever, and a link to ``/dev/zero`` never ends.

    Raises:
        ModelLoadError: naming ``path``.
    """
    if os.path.exists(path) and not path.is_file() and not path.is_dir():
        raise ModelLoadError(f"{path}: is not a regular file (a FIFO, device or socket); expected a file of the model")


def _reason(err: BaseException) -> str:
    """What went wrong, in one line: a RecursionError's own text would say "maximum recursion depth"."""
    if isinstance(err, RecursionError):
        return "JSON nested too deeply to read"
    text = " ".join(line.strip() for line in str(err).strip().splitlines())
    return text or type(err).__name__


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (a model's config.json, tokenizer.json, forgetless.json).

    Raises:
        ModelLoadError: naming ``path``: not UTF-8, not JSON, nested past Python's recursion limit, or not an object.
    """
    refuse_special(path)
    try:
        value = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelLoadError(f"{path}: expected a JSON object ({_reason(err)})") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, got a JSON {type(value).__name__}")
    return value


def check_tokenizer_file(path: str | Path) -> None:
    """Check a local directory's ``tokenizer.json`` has the shape transformers reads (an object whose ``model``
    is an object and whose ``added_tokens``, when present, is a list); a hub id or a directory without one passes.

    Raises:
        ModelLoadError: naming the file and what was expected.
    """
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        refuse_special(Path(path) / name)
    file = Path(path) / "tokenizer.json"
    if not file.is_file():
        return
    value = read_json_object(file)
    if not isinstance(value.get("model"), dict):
        raise ModelLoadError(f"{file}: expected a tokenizer with a 'model' object, as tokenizers writes it")
    if not isinstance(value.get("added_tokens", []), list):
        raise ModelLoadError(f"{file}: expected 'added_tokens' to be a list")


@contextmanager
def load_errors(spec: str | Path) -> Iterator[None]:
    """Turn the loaders' multi-line or anonymous errors into one-line ``ModelLoadError``s naming ``spec``."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as err:
        raise ModelLoadError(f"{spec}: a safetensors file is truncated or corrupt ({err})") from None
    except ModelLoadError:
        raise
    except RecursionError:
        raise ModelLoadError(f"{spec}: cannot load (a JSON file nested too deeply to read)") from None
    except OSError as err:
        if err.filename is not None:  # PermissionError and friends: the file says it all
            raise
        raise ModelLoadError(f"{spec}: cannot load ({_first_line(err)})") from None
    except (ValueError, KeyError) as err:
        if "trust_remote_code" in str(err):
            raise ModelLoadError(
                f"{spec}: the model needs its own Python code to load; pass --trust-remote-code "
                "(trust_remote_code: true) only if you trust its source"
            ) from None
        raise ModelLoadError(f"{spec}: cannot load ({_first_line(err)})") from None
    except (TypeError, AttributeError) as err:  # a field of the wrong type, deep inside the loader
        raise ModelLoadError(f"{spec}: cannot load ({_reason(err)})") from None
    except Exception as err:
        # transformers checks config.json's fields with huggingface_hub's strict dataclasses, whose error is no
        # ValueError (and not importable without that package's internals): matched by name.
        if not type(err).__name__.startswith("StrictDataclass"):
            raise
        raise ModelLoadError(f"{spec}/config.json: {_reason(err)}") from None


def _first_line(err: BaseException) -> str:
    """The first line of ``err``'s message (transformers' are often long reports), or its type's name."""
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def load_causal_lm(
    path: str | Path, dtype: torch.dtype | str | None = None, trust_remote_code: bool = False, **kwargs: Any
) -> PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)``, with one-line errors.

    Args:
        path: a model directory or hub id (``testbed:PRESET`` resolved already).
        dtype: the dtype to load in (``"auto"``: the checkpoint's own); None: transformers' default.
        trust_remote_code: run the model's own code (off unless asked).
        **kwargs: passed to ``from_pretrained``.

    Raises:
        ModelLoadError: pickled weights only, a truncated shard, no such model, remote code needed.
    """
    from transformers import AutoModelForCausalLM

    return _from_pretrained(AutoModelForCausalLM, path, dtype, trust_remote_code, **kwargs)


def load_encoder(
    path: str | Path, dtype: torch.dtype | str | None = None, trust_remote_code: bool = False, **kwargs: Any
) -> PreTrainedModel:
    """``AutoModel.from_pretrained(path, use_safetensors=True)``: an encoder without a task head
    (a BERT or XLM-R embedding model, as sentence-transformers' ``Transformer`` module loads it),
    under the same safetensors-only policy and one-line errors as ``load_causal_lm``.

    Args:
        path: a model directory or hub id (``testbed:PRESET`` resolved already); for a
            sentence-transformers model, the directory whose ``config.json`` is the encoder's.
        dtype: the dtype to load in (``"auto"``: the checkpoint's own); None: transformers' default.
        trust_remote_code: run the model's own code (off unless asked).
        **kwargs: passed to ``from_pretrained``.

    Raises:
        ModelLoadError: pickled weights only, a truncated shard, no such model, remote code needed.
    """
    from transformers import AutoModel

    return _from_pretrained(AutoModel, path, dtype, trust_remote_code, **kwargs)


def _from_pretrained(auto_class: Any, path: str | Path, dtype: torch.dtype | str | None, trust_remote_code: bool,
                     **kwargs: Any) -> PreTrainedModel:
    """``auto_class.from_pretrained`` under the one policy: a resolved spec, safetensors checked first and only,
    one-line errors."""
    check_resolved(path)
    check_safetensors(path)
    if dtype is not None:
        kwargs["dtype"] = dtype
    with load_errors(path):
        # ignore_mismatched_sizes: a tensor of the wrong shape is then listed in the loading info, refused below by
        # name, instead of a RuntimeError that points at a multi-line report.
        kwargs.setdefault("ignore_mismatched_sizes", True)
        with _quiet_load_report():
            model, info = auto_class.from_pretrained(str(path), trust_remote_code=trust_remote_code,
                                                     use_safetensors=True, output_loading_info=True, **kwargs)
    arch = type(model).__name__
    mismatched = sorted(info.get("mismatched_keys") or [], key=lambda item: str(item[0]))
    if mismatched:
        name, found, expected = mismatched[0]
        raise ModelLoadError(f"{path}: tensor {name} has shape {list(found)} in the weights, but config.json's "
                             f"{arch} expects {list(expected)}"
                             f"{f' ({len(mismatched) - 1} more such tensor(s))' if len(mismatched) > 1 else ''}; "
                             "the weights and config.json do not belong together")
    # transformers initializes a tensor the checkpoint lacks at random and only prints a report: a model that is
    # partly noise must not be trained, merged or measured as if it were the user's.
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise ModelLoadError(f"{path}: the weights lack {len(missing)} tensor(s) of the {arch} "
                             f"architecture ({_listed(missing)}); the checkpoint is incomplete")
    # Tensors the architecture has no place for mean config.json describes another model (fewer layers, say): only
    # for causal LMs, since an encoder loaded without its task head legitimately leaves the head's tensors unused.
    unexpected = sorted(info.get("unexpected_keys") or [])
    if unexpected and auto_class.__name__ == "AutoModelForCausalLM":
        raise ModelLoadError(f"{path}: the weights hold {len(unexpected)} tensor(s) that config.json's {arch} "
                             f"has no place for ({_listed(unexpected)}); the weights and config.json do not "
                             "belong together")
    check_finite_weights(model, path)
    return model


@contextmanager
def _quiet_load_report() -> Iterator[None]:
    """Drop transformers' multi-line load report (a warning of ``transformers.modeling_utils``): every case it lists
    (missing, unexpected, mismatched tensors) is refused in one line naming the tensor. A filter, not a higher level:
    that logger's level at WARNING or above turns on another warning (transformers' tensor-parallel plan check)."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)

    logger = logging.getLogger("transformers.modeling_utils")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def _listed(names: list[str]) -> str:
    """Up to three names, then an ellipsis."""
    return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")


def check_finite_weights(model: torch.nn.Module, where: str | Path, fix: str = "the checkpoint is corrupt",
                         error: type[ValueError] = ModelLoadError) -> None:
    """Refuse a model any of whose floating-point tensors holds NaN or inf (one pass over the weights).

    Raises:
        error: (``ModelLoadError`` by default) naming ``where``, the first such tensor, how many of its values are
            non-finite, and ``fix``.
    """
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and tensor.device.type != "meta" and not torch.isfinite(tensor).all():
                bad = int((~torch.isfinite(tensor)).sum())
                raise error(f"{where}: tensor {name} holds {bad} non-finite value(s) (NaN or inf) of "
                            f"{tensor.numel()}; {fix}")


def load_adapter(base: PreTrainedModel, path: str | Path) -> Any:
    """Apply the PEFT (LoRA) adapter at ``path`` to ``base``; its weights must be safetensors.

    Raises:
        ModelLoadError: the adapter has only pickled weights (``adapter_model.bin``) or is corrupt.
    """
    from peft import PeftModel

    check_safetensors(path, stem="adapter_model")
    with load_errors(path):
        # PEFT takes adapter_model.safetensors when present; the check above makes sure it is.
        return PeftModel.from_pretrained(base, str(path))


def check_resolved(spec: str | Path) -> None:
    """Refuse a ``testbed:``, ``gguf:`` or ``real:`` spec that reached the loaders unresolved (a hub id or a
    path would be tried instead).

    Raises:
        ModelLoadError: naming the spec and the resolver.
    """
    kind = str(spec).partition(":")[0]
    if kind in ("testbed", "gguf", "real") and ":" in str(spec):
        raise ModelLoadError(f"{spec}: a {kind} spec; resolve it first with "
                             "forgetless.testbed.specs.resolve_spec (the CLI and the study do)")


def load_tokenizer(path: str | Path, trust_remote_code: bool = False, add_bos: AddBos | bool = "auto",
                   model_dir: str | Path | None = None,
                   chat_template: ChatChoice | bool = "auto") -> PreTrainedTokenizerBase:
    """Load a tokenizer, make sure it can pad (real Llama tokenizers have no PAD token), settle its BOS
    convention and how domain prompts are rendered.

    Args:
        path: the directory (or hub id) holding the tokenizer.
        trust_remote_code: run the tokenizer's own code (off unless asked).
        add_bos: ``auto`` follows the tokenizer, or the convention recorded for a model forgetless
            trained; ``true``/``false`` force it (``forgetless.special_tokens``).
        model_dir: the model whose ``forgetless.json`` records its convention (default ``path``).
        chat_template: render domain prompts with the chat template (``forgetless.prompting``); ``auto``
            keeps what the model was trained with, plain text otherwise.

    Raises:
        ModelLoadError: no tokenizer at ``path``, one that needs remote code, or a BOS or chat choice it cannot
            follow.
    """
    check_tokenizer_file(path)
    tokenizer = load_saved_tokenizer(path, trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        apply_add_bos(tokenizer, add_bos, model_dir if model_dir is not None else path)
        apply_chat_choice(tokenizer, chat_template, model_dir if model_dir is not None else path)
    except (SpecialTokensError, PromptFormatError) as error:
        raise ModelLoadError(f"{path}: {error}") from None
    return tokenizer


def load_saved_tokenizer(path: str | Path, trust_remote_code: bool = False, **kwargs: Any) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained(path)`` as saved, nothing settled (no PAD, BOS or chat choice applied): for
    copying a tokenizer beside a merged model, reading its vocabulary, or converting a GGUF's (``gguf_file=``).
    ``load_tokenizer`` is the one for encoding.

    Raises:
        ModelLoadError: an unresolved spec, or a tokenizer that cannot be loaded (one line naming ``path``).
    """
    from transformers import AutoTokenizer

    check_resolved(path)
    with load_errors(path):
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code, **kwargs)


def load_config(path: str | Path, trust_remote_code: bool = False) -> Any:
    """``AutoConfig.from_pretrained(path)`` (a ``PretrainedConfig``): the architecture without the weights.

    Raises:
        ModelLoadError: an unresolved spec, or a config.json that cannot be read (one line naming ``path``).
    """
    from transformers import AutoConfig

    check_resolved(path)
    with load_errors(path):
        return AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def _has_tokenizer(path: Path) -> bool:
    return (path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists()


def load_model(
    spec: str | Path,
    trust_remote_code: bool = False,
    dtype: torch.dtype | str = torch.float32,
    resolve: Callable[[str], str] = str,
    add_bos: AddBos | bool = "auto",
    chat_template: ChatChoice | bool = "auto",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """Load ``(model, tokenizer, path)`` in eval mode: a model directory, a hub id or a LoRA adapter.

    A directory with ``adapter_config.json`` is a PEFT (LoRA) adapter: its base model
    (``base_model_name_or_path``) is loaded, the adapter applied and merged, so the
    result runs at the base model's speed. The tokenizer comes from the adapter
    directory when it has one, else from the base.

    Args:
        spec: a model directory, a hub id or an adapter directory (``testbed:`` resolved already).
        trust_remote_code: run the model's own code (off unless asked).
        dtype: the dtype to load in; fp32 by default, so losses compare in one precision.
        resolve: applied to an adapter's base name (the entry points pass the testbed's resolver,
            for adapters whose base is ``testbed:PRESET``).
        add_bos: the BOS convention (``forgetless.special_tokens``); ``auto`` keeps the one the
            model was trained with.
        chat_template: chat-rendered domain prompts (``forgetless.prompting``); ``auto`` likewise.

    Raises:
        ModelLoadError: ``spec`` looks like a local path but does not exist, an adapter names
            no base, or the weights cannot be loaded (pickled, truncated, remote code needed).
    """
    path = Path(str(spec))
    # A hub id ("org/name") may legitimately not exist locally; a filesystem path must.
    if not path.exists() and (str(spec).startswith((".", "/", "~")) or str(spec).count("/") > 1):
        raise ModelLoadError(f"{spec}: no such model directory")
    adapter_config = path / "adapter_config.json"
    if adapter_config.exists():
        base_spec = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
        if not isinstance(base_spec, str):
            raise ModelLoadError(f"{adapter_config}: expected a string 'base_model_name_or_path'")
        base_path = resolve(base_spec)
        model = load_adapter(load_causal_lm(base_path, dtype, trust_remote_code), path).merge_and_unload()
        tokenizer = load_tokenizer(path if _has_tokenizer(path) else base_path, trust_remote_code, add_bos, path,
                                   chat_template)
    else:
        model = load_causal_lm(path if path.exists() else str(spec), dtype, trust_remote_code)
        tokenizer = load_tokenizer(path if path.exists() else str(spec), trust_remote_code, add_bos,
                                   chat_template=chat_template)
    model.eval()
    return model, tokenizer, str(spec)


@dataclass(frozen=True)
class Capabilities:
    """Which optional forward arguments a model accepts (checked by signature).

    ``cache_arg`` is the name its forward takes a KV cache under: ``cache`` since
    transformers 5.2x, ``past_key_values`` before (and in custom models), ``None`` when
    it takes none.
    """

    logits_to_keep: bool
    position_ids: bool
    cache_arg: str | None

    @property
    def kv_cache(self) -> bool:
        """Whether decoding can reuse a KV cache."""
        return self.cache_arg is not None

    def with_cache(self, cache: Any) -> dict[str, Any]:
        """The forward's keyword arguments that pass ``cache`` in (empty without a KV cache)."""
        return {self.cache_arg: cache, "use_cache": True} if self.cache_arg else {}


def core_model(model: nn.Module) -> nn.Module:
    """The module to call: a PEFT wrapper's base model (its LoRA layers are injected
    in place, so calling the base model runs the adapter), else the model itself."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def capabilities(model: nn.Module) -> Capabilities:
    """Inspect ``forward`` for ``logits_to_keep``, ``position_ids`` and a KV cache argument.

    Only explicitly named parameters count: a ``**kwargs`` forward (a user's ensemble
    wrapper) gets the plain ``(input_ids, attention_mask)`` call, which always works.
    transformers 5.2x renamed ``past_key_values`` to ``cache``; looking for the old name
    alone had turned the cache off, and every greedy step recomputed the whole sequence.
    """
    params = inspect.signature(core_model(model).forward).parameters
    names = [name for name in ("cache", "past_key_values") if name in params]
    return Capabilities(
        logits_to_keep="logits_to_keep" in params,
        position_ids="position_ids" in params,
        cache_arg=names[0] if names and "use_cache" in params else None,
    )


def output_cache(output: Any) -> Any:
    """The KV cache a forward returned (``cache`` since transformers 5.2x, else ``past_key_values``)."""
    if isinstance(output, dict) and output.get("cache") is not None:
        return output["cache"]
    return output.past_key_values


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless module)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")
