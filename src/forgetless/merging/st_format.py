"""The sentence-transformers side of an embedding model directory: its pooling, and the files
a merged model must carry so that ``sentence_transformers.SentenceTransformer`` loads it.

A sentence-transformers model saved with ``SentenceTransformer.save`` is a transformers
encoder at the top of the directory (``config.json``, ``model.safetensors``, tokenizer)
plus a pipeline described by ``modules.json``: the encoder (path ``""``), a pooling module
(``1_Pooling/config.json``), often ``Normalize``, and ``sentence_bert_config.json`` and
``config_sentence_transformers.json`` for the encoder's settings and the similarity. The
merge engine combines the encoder's tensors; this module reads which pooling the pipeline
uses (the embedding loss of LM-Cocktail must embed as the model does) and copies the
pipeline's files from one input to the output, or, for inputs that have none, writes the
smallest pipeline that embeds as the loss did (encoder, that pooling, ``Normalize``; what
lm-cocktail's ``save_ckpt_for_sentence_transformers`` writes, with BGE's CLS pooling).

Pooling configs come in two formats: sentence-transformers before 5 writes one flag per
mode (``"pooling_mode_cls_token": true``, what BGE ships), later versions one name
(``"pooling_mode": "cls"``). Both are read. Modules that hold weights of their own (a
``Dense`` projection) are refused: the engine merges the encoder's tensors only, and
copying one input's projection onto a merged encoder would be a silent mismatch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from forgetless.merging.errors import MergeError

Pooling = Literal["cls", "mean"]
POOLINGS: tuple[str, ...] = ("cls", "mean")
# Negatives per query of LM-Cocktail's contrastive loss for embedding models (lm-cocktail's neg_number). Here, below
# both the rule (merging/cocktail.py) and the loss (merging/embedding_loss.py, which needs transformers).
DEFAULT_NUM_NEGATIVES = 7
MODULES_FILE = "modules.json"
# Files of the pipeline itself, next to modules.json (the tokenizer is copied by the engine).
PIPELINE_FILES = (MODULES_FILE, "config_sentence_transformers.json", "sentence_bert_config.json")
# The old format's flags, by the mode name the new format uses.
_MODE_FLAGS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
               "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
               "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"))
    except ValueError as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise MergeError(f"{path}: not valid JSON ({err})") from None


def read_modules(model: Path) -> list[dict[str, Any]] | None:
    """The entries of ``model/modules.json`` (each with a ``type`` and a relative ``path``); None without one.

    Raises:
        MergeError: the file is not a list of objects with string ``type`` and ``path``, or a
            path leaves the model directory.
    """
    file = model / MODULES_FILE
    if not file.is_file():
        return None
    modules = _read_json(file)
    if not isinstance(modules, list) or not all(
            isinstance(m, dict) and isinstance(m.get("type"), str) and isinstance(m.get("path", ""), str)
            for m in modules):
        raise MergeError(f"{file}: expected a list of modules, each with a string 'type' and 'path'")
    for module in modules:
        path = Path(module.get("path", ""))
        if path.is_absolute() or ".." in path.parts:
            raise MergeError(f"{file}: module path {module['path']!r} leaves the model directory")
    return modules


def _pooling_config(model: Path) -> Path | None:
    """The pooling module's config.json: the one modules.json names, else ``1_Pooling/config.json``."""
    modules = read_modules(model)
    if modules is not None:
        for module in modules:
            if module["type"].rsplit(".", 1)[-1] == "Pooling":
                return model / module.get("path", "") / "config.json"
        return None
    default = model / "1_Pooling" / "config.json"
    return default if default.is_file() else None


def read_pooling(model: Path) -> str | None:
    """The pooling mode of the sentence-transformers model in ``model`` (``cls``, ``mean``, or
    another mode's name); None if the directory has no pooling module.

    Raises:
        MergeError: the config is missing, unreadable, or names no single mode.
    """
    file = _pooling_config(model)
    if file is None:
        return None
    if not file.is_file():
        raise MergeError(f"{file}: missing; {model / MODULES_FILE} names a pooling module there")
    config = _read_json(file)
    if not isinstance(config, dict):
        raise MergeError(f"{file}: expected a JSON object")
    mode = config.get("pooling_mode")
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if isinstance(mode, str):
        return mode
    modes = [name for flag, name in _MODE_FLAGS.items() if config.get(flag) is True]
    if len(modes) != 1:
        raise MergeError(f"{file}: expected one pooling mode ('pooling_mode', or one 'pooling_mode_*' flag true), "
                         f"found {modes or 'none'}")
    return modes[0]


def resolve_pooling(models: list[Path], given: str | None) -> str:
    """The one pooling the embedding loss uses for ``models``: their pooling configs', else ``given``.

    Args:
        models: the input model directories (those without a pooling module say nothing).
        given: the ``--pooling`` parameter, or None.

    Raises:
        MergeError: the models disagree, ``given`` contradicts them, none says and none is given,
            or the pooling is neither cls nor mean.
    """
    found = [(path, mode) for path in models if (mode := read_pooling(path)) is not None]
    for path, mode in found[1:]:
        if mode != found[0][1]:
            raise MergeError(f"pooling differs: {found[0][0]} pools with {found[0][1]}, {path} with {mode}")
    if found and given is not None and given != found[0][1]:
        raise MergeError(f"--pooling {given} contradicts {found[0][0]}, whose pooling config says {found[0][1]}")
    mode = found[0][1] if found else given
    if mode is None:
        raise MergeError("no input has a sentence-transformers pooling config (1_Pooling/config.json); "
                         "pass --pooling cls or --pooling mean")
    if mode not in POOLINGS:
        source = f"{found[0][0]}'s pooling config" if found else "--pooling"
        raise MergeError(f"{source} says {mode}; the embedding loss supports cls or mean pooling")
    return mode


def check_pipeline(model: Path) -> list[str]:
    """The files and module directories of ``model``'s sentence-transformers pipeline, relative to
    it, to copy (empty for a plain transformers model).

    Raises:
        MergeError: a module other than the encoder holds weights (``Dense``), which no merge combines.
    """
    modules = read_modules(model)
    if modules is None:
        return []
    copied = [name for name in PIPELINE_FILES if (model / name).is_file()]
    for module in modules:
        path = module.get("path", "")
        if not path:
            continue  # the encoder itself: the merged tensors and the engine's config and tokenizer
        directory = model / path
        weights = sorted(p.name for pattern in _WEIGHT_PATTERNS for p in directory.glob(pattern))
        if weights:
            raise MergeError(f"{directory}: the sentence-transformers module {module['type']} holds weights "
                             f"({weights[0]}), which forgetless does not merge; only the encoder's tensors are")
        if directory.is_dir():
            copied.append(path)
    return copied


def copy_pipeline(model: Path, output: Path) -> list[str]:
    """Copy ``model``'s sentence-transformers pipeline (``check_pipeline``) into ``output``; returns what was copied."""
    copied = check_pipeline(model)
    for name in copied:
        source = model / name
        if source.is_dir():
            shutil.copytree(source, output / name, dirs_exist_ok=True)
        else:
            shutil.copy2(source, output / name)
    return copied


def write_pipeline(output: Path, pooling: str, dimension: int) -> list[str]:
    """Write a sentence-transformers pipeline into ``output``: the encoder at the top of the
    directory, ``pooling`` over its ``dimension``-wide states, then ``Normalize`` (the loss
    compares L2-normalised embeddings). The pooling config is in the format every
    sentence-transformers version reads; the sequence limit is left to the tokenizer's.

    Returns:
        The files and directories written, relative to ``output``.
    """
    if pooling not in POOLINGS:
        raise MergeError(f"pooling {pooling!r}: expected cls or mean")
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (output / MODULES_FILE).write_text(json.dumps(modules, indent=2) + "\n")
    (output / "1_Pooling").mkdir(exist_ok=True)
    flags = {flag: name == pooling for flag, name in _MODE_FLAGS.items()}
    config = {"word_embedding_dimension": dimension, **flags}
    (output / "1_Pooling" / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (output / "2_Normalize").mkdir(exist_ok=True)
    return [MODULES_FILE, "1_Pooling", "2_Normalize"]


def embedding_width(config: dict[str, Any], source: Path) -> int:
    """The width of an encoder's hidden states, from its config.json (``hidden_size``, or ``d_model`` / ``dim``).

    Raises:
        MergeError: the config names none.
    """
    for key in ("hidden_size", "d_model", "dim"):
        if isinstance(config.get(key), int):
            return int(config[key])
    raise MergeError(f"{source / 'config.json'}: no hidden_size; cannot write a sentence-transformers pooling config")
