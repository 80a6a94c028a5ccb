"""The one way forgetless loads model weights: safetensors only, never unpickled.

``train``, ``generate``, ``eval``, merge sweeps, LoRA bases and the study all load
through ``load_causal_lm`` (and adapters through ``load_adapter``), so one policy
holds everywhere: ``use_safetensors=True``. A pickled checkpoint (``pytorch_model.bin``,
``*.pt``) is refused with a one-line error saying how to convert it, rather than
unpickled: unpickling an untrusted file runs its code, and even ``weights_only``
loading is a second, weaker policy. Load failures become one-line ``ModelLoadError``s
naming the path (a truncated shard, a missing model, code that needs
``--trust-remote-code``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


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
    import json

    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_dir():
        return
    index = path / f"{stem}.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_bytes().decode("utf-8-sig"))["weight_map"]
            shards = sorted(set(weight_map.values()))
            if not all(isinstance(s, str) for s in shards):
                raise ValueError("shard names must be strings")
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ModelLoadError(f"{index}: expected a JSON object with a weight_map ({err})") from None
    elif (path / f"{stem}.safetensors").is_file():
        shards = [f"{stem}.safetensors"]
    else:
        pickled = sorted(p.name for pattern in _PICKLED for p in path.glob(pattern) if p.name != "training_args.bin")
        if pickled:
            raise ModelLoadError(_convert_hint(path, pickled[0], stem))
        raise ModelLoadError(f"{path}: no {stem}.safetensors; expected safetensors weights")
    for shard in shards:
        file = path / shard
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
    try:
        if not isinstance(json.loads(config.read_bytes().decode("utf-8-sig")), dict):
            raise ValueError("not an object")
    except ValueError as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelLoadError(f"{config}: expected a JSON object ({err})") from None


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
    except (ValueError, KeyError) as err:
        if "trust_remote_code" in str(err):
            raise ModelLoadError(
                f"{spec}: the model needs its own Python code to load; pass --trust-remote-code "
                "(trust_remote_code: true) only if you trust its source"
            ) from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"{spec}: cannot load ({first})") from None
    except OSError as err:
        if err.filename is not None:  # PermissionError and friends: the file says it all
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"{spec}: cannot load ({first})") from None


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

    check_safetensors(path)
    if dtype is not None:
        kwargs["dtype"] = dtype
    with load_errors(path):
        return AutoModelForCausalLM.from_pretrained(
            str(path), trust_remote_code=trust_remote_code, use_safetensors=True, **kwargs
        )


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
