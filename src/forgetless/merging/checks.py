"""Refusals before a merge writes anything: inputs must agree in architecture, tensors
(names, shapes, and the dtype of integer tensors) and tokenizer. Float tensors may differ
in float dtype (a bf16 base, an fp32 fine-tuned model): they are combined in float32.
Every message names the input and what differs."""

from __future__ import annotations

import json
from pathlib import Path

from forgetless.merging.checkpoint import FLOAT_DTYPES, Checkpoint
from forgetless.merging.errors import MergeError


def check_architectures(checkpoints: list[Checkpoint]) -> None:
    """Same ``model_type`` and ``architectures`` in every config.json that has them."""
    first = checkpoints[0]
    for other in checkpoints[1:]:
        for key in ("model_type", "architectures"):
            a, b = first.config.get(key), other.config.get(key)
            if a is not None and b is not None and a != b:
                raise MergeError(f"architectures differ: {first.path} is {first.architecture}, "
                                 f"{other.path} is {other.architecture}")


def check_tensors(checkpoints: list[Checkpoint]) -> None:
    """Same tensor names and shapes in every input; a float tensor may change float dtype, nothing else may."""
    first = checkpoints[0]
    for other in checkpoints[1:]:
        only_first = sorted(set(first.tensors) - set(other.tensors))
        only_other = sorted(set(other.tensors) - set(first.tensors))
        if only_first or only_other:
            name, has, lacks = (only_first[0], first, other) if only_first else (only_other[0], other, first)
            extra = len(only_first) + len(only_other) - 1
            raise MergeError(f"tensor {name} is in {has.path} but not in {lacks.path}"
                             + (f" ({extra} more tensors differ)" if extra else ""))
        for name, info in first.tensors.items():
            theirs = other.tensors[name]
            if info.shape != theirs.shape:
                raise MergeError(f"tensor {name} has shape {list(info.shape)} in {first.path} "
                                 f"but {list(theirs.shape)} in {other.path}")
            if info.dtype != theirs.dtype and not {info.dtype, theirs.dtype} <= FLOAT_DTYPES:
                raise MergeError(f"tensor {name} has dtype {info.dtype} in {first.path} but {theirs.dtype} in "
                                 f"{other.path}; only float tensors can be combined across dtypes")


def tokenizer_vocab(path: Path) -> dict[int, str] | None:
    """Token id -> token string of the tokenizer saved in ``path``; None if it has none.

    Reads ``tokenizer.json`` directly (vocabulary and added tokens) when present, so no
    tokenizer code runs; otherwise loads the tokenizer with ``AutoTokenizer``.
    """
    file = path / "tokenizer.json"
    if file.is_file():
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            vocab = (data.get("model") or {}).get("vocab") or {}
            if isinstance(vocab, list):  # Unigram: [[piece, score], ...], ids are positions
                by_id = {i: piece for i, (piece, _score) in enumerate(vocab)}
            else:
                by_id = {int(i): token for token, i in vocab.items()}
            for added in data.get("added_tokens") or []:
                by_id[int(added["id"])] = added["content"]
        except RecursionError:
            raise MergeError(f"{file}: not valid JSON (nested too deeply to read)") from None
        except (ValueError, TypeError, AttributeError, KeyError) as err:  # another shape than tokenizers writes
            raise MergeError(f"{file}: expected a tokenizer with a 'model' vocabulary and a list of "
                             f"'added_tokens' ({type(err).__name__}: {err})") from None
        return by_id
    if (path / "tokenizer_config.json").is_file():
        # imported here: the merge command starts without transformers (models imports it when it loads)
        from forgetless.models import load_saved_tokenizer

        return {i: t for t, i in load_saved_tokenizer(path).get_vocab().items()}
    return None


def check_tokenizers(checkpoints: list[Checkpoint]) -> None:
    """Identical vocabularies (same token at every id) among the inputs that ship a tokenizer."""
    vocabs = [(c.path, v) for c in checkpoints if (v := tokenizer_vocab(c.path)) is not None]
    if len(vocabs) < 2:
        return
    first_path, first = vocabs[0]
    for path, vocab in vocabs[1:]:
        if vocab == first:
            continue
        for i in sorted(set(first) | set(vocab)):
            if first.get(i) != vocab.get(i):
                raise MergeError(f"tokenizers differ at token id {i}: {first.get(i)!r} in {first_path}, "
                                 f"{vocab.get(i)!r} in {path}")


def check_compatible(checkpoints: list[Checkpoint]) -> None:
    """All refusals, cheapest first; raises ``MergeError`` on the first difference."""
    if len(checkpoints) < 1:
        raise MergeError("no input models")
    check_architectures(checkpoints)
    check_tensors(checkpoints)
    check_tokenizers(checkpoints)
