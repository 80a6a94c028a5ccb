"""The streaming merge engine: θ = Σ_k c_k θ_k over safetensors checkpoints, or a rule's own
per-tensor combination.

Every coefficient rule (interpolate, average, task_arithmetic, cocktail, greedy soup)
reduces to one list of coefficients over the inputs (docs/methods.md#merging); this module
applies such a list. A non-linear rule (``TensorRule``: slerp) combines each tensor itself
(``combine_tensors``), on the same stream, with the same dtype handling. The engine reads
one tensor of each input at a time, combines it in float32 (float64 for float64 inputs),
casts it to the output dtype and appends it to the output shard. A tensor of more than
``CHUNK_ELEMENTS`` elements (an embedding, an LM head) is read, combined and written a slice
of rows at a time, so peak memory is a few chunks, whatever the vocabulary, never a model;
every rule is elementwise per row (SLERP's angle, the one statistic of a whole tensor, is
measured in a first streamed pass), so the output is byte for byte the unsliced one.
Inputs may differ in float dtype (a bf16 base and an fp32 fine-tuned model): the output
takes the first model's dtype, or the one asked for. Integer tensors and buffers are copied from the config source, never combined. Output goes to a
temporary directory that is renamed when complete (``forgetless.atomic.atomic_dir``).
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import forgetless
from forgetless.atomic import atomic_dir, write_json
from forgetless.outputs import guard_output
from forgetless.merging.adapters import is_adapter, materialize_adapter
from forgetless.merging.base import TensorRule
from forgetless.dtypes import HEADER_NAMES, config_dtype, parse_dtype, short_name
from forgetless.merging.checkpoint import DTYPE_NAMES, DTYPES, FLOAT_DTYPES, Checkpoint, TensorInfo
from forgetless.merging.errors import MergeError
from forgetless.merging.checks import check_compatible
from forgetless.merging.st_format import check_pipeline, copy_pipeline, embedding_width, write_pipeline
from forgetless.merging.writer import DEFAULT_SHARD_BYTES, LENT_BUFFERS, Lent, parse_size, write_shards

RECORD_FILE = "forgetless-merge.json"
FLOAT32_MAX = torch.finfo(torch.float32).max
# Elements per slice of a large tensor: 1 Mi, 4 MiB in float32. A merge holds three such float32
# buffers plus each input's slice and the output's, so its peak stays a few tens of MB above the
# interpreter's whatever the model, and the passes over a slice (widen, scale, add, round, check)
# run in the CPU's cache: 4 Mi slices took 1.4-2x as long on a 2-core EPYC (issue 28; README's
# merge figures); much smaller ones cost time in per-slice overhead (reads, hand-overs to the writer).
CHUNK_ELEMENTS = 1 << 20
# Elements per block of a linear merge's arithmetic: 256 Ki, 1 MiB in float32. A slice is read and written
# whole (few reads and hand-overs to the writer), but widened, scaled, summed and rounded a block at a time, so
# the float32 sums stay in cache: on a 2-core EPYC these passes took 0.54-0.56 s per 0.5B parameters in blocks
# of 128-256 Ki against 0.86 s over whole 1 Mi slices (a merge's wall time gained less: 0.92x, reads and
# hand-overs unchanged). A multiple of 64, so every element meets the same vector or scalar code as unblocked.
BLOCK_ELEMENTS = 1 << 18
# torch threads while merging: the passes are memory-bound, and two threads on a shared 2-core
# machine wait on each other at every call (2-5x slower than one there, measured); restored after.
MERGE_THREADS = 1
READ_SLOT = "read"  # Scratch slots (READ_SLOT, k): input k's slice, each input in its own
LENT_SLOT = "lent"  # slots (LENT_SLOT, i), i < LENT_BUFFERS: merged slices lent to the writer, in turn
TOTAL_SLOT, TERM_SLOT = "total", "term"  # where combine sums, and widens a term
Rows = tuple[int, int] | None  # rows [start, stop) of a tensor's first dimension; None: the whole tensor
# Files other than weights taken from the config source: config, generation config, tokenizer.
COPIED_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "added_tokens.json", "tokenizer.model", "vocab.json", "merges.txt",
                "chat_template.jinja", "chat_template.json",
                # encoders' tokenizers: BERT's WordPiece vocabulary, XLM-RoBERTa's SentencePiece model
                "vocab.txt", "sentencepiece.bpe.model")


class Scratch:
    """Float buffers the engine reuses from one slice to the next.

    A fresh 16 MiB tensor costs a page fault per 4 KiB page on first touch (the allocator hands
    large blocks back to the system), several times the arithmetic done in it; a merge computes
    hundreds of slices of the same few sizes, so it keeps one buffer per slot and dtype, and the
    view of each shape asked for (a view costs microseconds, thousands of times a merge).
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[Hashable, torch.dtype], torch.Tensor] = {}
        self._views: dict[tuple[Hashable, torch.dtype, tuple[int, ...]], torch.Tensor] = {}

    def get(self, slot: Hashable, dtype: torch.dtype, shape: Sequence[int]) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` and ``dtype``, valid until ``slot`` is asked for again."""
        key = (slot, dtype, tuple(shape))
        view = self._views.get(key)
        if view is not None:
            return view
        numel = math.prod(shape)
        buffer = self._buffers.get((slot, dtype))
        if buffer is None or buffer.numel() < numel:
            buffer = self._buffers[(slot, dtype)] = torch.empty(numel, dtype=dtype)
            self._views = {k: v for k, v in self._views.items() if k[:2] != (slot, dtype)}  # the old buffer's
        view = self._views[key] = buffer[:numel].view(key[2])
        return view


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether every element is finite: ``aminmax`` in one pass (NaN and ±inf reach its min or max);
    ``torch.isfinite(...).all()`` costs 50-100 times more on a CPU, most of a merge's time."""
    if tensor.numel() == 0:
        return True
    low, high = torch.aminmax(tensor)
    return math.isfinite(float(low)) and math.isfinite(float(high))


def combine(read: Callable[[int], torch.Tensor], coefficients: Sequence[float],
            dtype: torch.dtype | None = None, scratch: Scratch | None = None,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_k c_k θ_k for one tensor, reading input ``k`` only when its coefficient is non-zero.

    Terms with c_k = 0 are skipped and a single term with c_k = 1 is returned as read (cast
    to ``dtype``), so interpolation at α = 0 and α = 1 reproduces an input bit for bit in its
    own dtype, and exactly as that dtype rounds it in another (0·x would turn −0.0 into +0.0
    and inf into nan). Otherwise the sum is taken in float32 (float64 if an input is) and
    rounded once, to ``dtype``: c_0 θ_0 rounded to float32, then each c_k θ_k added in turn.

    Args:
        read: loads input ``k``'s tensor (any shape ``S``, any float dtype); every input is read before
            the sum starts, so what it returns for one input must outlive the reads of the others.
        coefficients: c_k, one per input.
        dtype: dtype of the result; None: the dtype of the first input read.
        scratch: buffers to compute in (the engine's); the result may then live in one of them,
            valid until the next call with the same ``scratch``. None: fresh tensors.
        out: a contiguous tensor of shape ``S`` in ``dtype`` to round the result into (the engine's
            buffer lent to the writer, ``writer.Lent``); None: see ``scratch``. With ``scratch`` too,
            a float32 sum is computed ``BLOCK_ELEMENTS`` at a time (the same bytes).

    Returns:
        A tensor of shape ``S`` in ``dtype``: ``out`` when given.
    """
    terms = [(k, float(c)) for k, c in enumerate(coefficients) if c != 0]
    if not terms:
        first = read(0)
        return out.zero_() if out is not None else torch.zeros_like(first, dtype=dtype or first.dtype)
    if len(terms) == 1 and terms[0][1] == 1.0:
        tensor = read(terms[0][0])
        return out.copy_(tensor) if out is not None else tensor.to(dtype or tensor.dtype)
    tensors = [(read(k), c) for k, c in terms]
    dtype = dtype or tensors[0][0].dtype
    if scratch is not None and out is not None and dtype != torch.float64 \
            and all(t.dtype != torch.float64 for t, _ in tensors):
        return _sum_blocks(tensors, out, scratch)
    first, c = tensors[0]
    compute = torch.float64 if first.dtype == torch.float64 or dtype == torch.float64 else torch.float32
    if scratch is None:
        total = first.to(compute) * c
    else:  # the same two roundings as above (widen exactly, multiply), in a reused buffer
        total = scratch.get(TOTAL_SLOT, compute, first.shape)
        total.copy_(first)
        total.mul_(c)
    for term, c in tensors[1:]:
        if term.dtype == torch.float64 and total.dtype != torch.float64:
            total = total.to(torch.float64)
        if term.dtype != total.dtype and scratch is not None:
            term = scratch.get(TERM_SLOT, total.dtype, term.shape).copy_(term)
        total.add_(term.to(total.dtype), alpha=c)
    return out.copy_(total) if out is not None else total.to(dtype)


def _sum_blocks(tensors: list[tuple[torch.Tensor, float]], out: torch.Tensor, scratch: Scratch) -> torch.Tensor:
    """``combine``'s float32 sum of ``(θ_k, c_k)`` (shape ``S``, float32 or narrower) rounded into ``out`` (shape
    ``S``), ``BLOCK_ELEMENTS`` at a time: each element takes the same widen, multiply, add and round as in one
    pass over the whole tensor, in a float32 block that stays in the CPU's cache."""
    flat_out = out.view(-1)
    flat = [(t.reshape(-1), c) for t, c in tensors]
    n = flat_out.numel()
    block = min(n, BLOCK_ELEMENTS)
    total = scratch.get(TOTAL_SLOT, torch.float32, (block,))
    term = scratch.get(TERM_SLOT, torch.float32, (block,))
    for start in range(0, n, block):
        stop = min(start + block, n)
        t = total if stop - start == block else total[: stop - start]
        first, c = flat[0]
        t.copy_(first[start:stop])
        t.mul_(c)
        for values, c in flat[1:]:
            part = values[start:stop]
            if part.dtype != torch.float32:
                part = (term if stop - start == block else term[: stop - start]).copy_(part)
            t.add_(part, alpha=c)
        flat_out[start:stop].copy_(t)
    return out


def row_slices(shape: Sequence[int], chunk_elements: int) -> list[Rows]:
    """How to cut a tensor of ``shape`` into slices of whole rows of at most ``chunk_elements``
    elements (one row if a row alone is larger); ``[None]``: read it whole (it is no larger)."""
    numel = math.prod(shape)
    if not shape or numel <= chunk_elements:
        return [None]
    per = max(1, chunk_elements // max(1, numel // shape[0]))
    return [(start, min(start + per, shape[0])) for start in range(0, shape[0], per)]


def combine_tensors(read: Callable[[int, Rows], torch.Tensor], n_models: int, rule: TensorRule, name: str,
                    dtype: torch.dtype | None = None, slices: Sequence[Rows] = (None,)) -> Iterator[torch.Tensor]:
    """``rule``'s merge of one tensor, slice by slice: every input read, widened, combined, checked, rounded once.

    The inputs are widened to float32 (float64 if an input or ``dtype`` is), as ``combine``
    sums, and the result is rounded once to ``dtype``; a rule that returns an input unchanged
    therefore reproduces it bit for bit, as ``combine`` does for a single coefficient of 1.
    A rule that is not ``row_separable`` gets the whole tensor whatever ``slices`` says.

    Args:
        read: loads rows ``Rows`` of input ``k``'s tensor (shape ``S`` or ``(rows, *S[1:])``, any float dtype).
        n_models: how many inputs there are.
        rule: the per-tensor rule.
        name: the tensor's name, passed to the rule and used in messages.
        dtype: dtype of the result; None: the first input's dtype.
        slices: consecutive row ranges covering the tensor (``row_slices``).

    Yields:
        The merged slices in order, shape ``(rows, *S[1:])`` (``S`` for ``None``), in ``dtype``.

    Raises:
        MergeError: the rule returned another shape, or non-finite values from finite inputs (after
            the last slice, judged over the whole tensor, as unsliced).
    """
    if not rule.row_separable:
        slices = (None,)

    def widened(rows: Rows) -> tuple[list[torch.Tensor], torch.dtype]:
        tensors = [read(k, rows) for k in range(n_models)]
        out = dtype or tensors[0].dtype
        wide = out == torch.float64 or any(t.dtype == torch.float64 for t in tensors)
        compute = torch.float64 if wide else torch.float32
        return [t.to(compute) for t in tensors], out

    # The rule's statistics of the whole tensor: a first pass over the slices (lazy, so a rule that needs
    # none reads nothing); a tensor read whole is read once and kept for the combination.
    whole: tuple[list[torch.Tensor], torch.dtype] | None = None
    if slices[0] is None:
        whole = widened(None)
        statistics = rule.tensor_statistics(name, [whole[0]]) if rule.row_separable else None
    else:
        statistics = rule.tensor_statistics(name, (widened(rows)[0] for rows in slices))
    made_non_finite, inputs_finite = False, True
    for rows in slices:
        tensors, out = whole if whole is not None else widened(rows)
        whole = None
        merged = rule.combine_slice(name, tensors, statistics) if rule.row_separable \
            else rule.combine_tensor(name, tensors)
        if merged.shape != tensors[0].shape:
            raise MergeError(f"rule {rule.name} returned shape {tuple(merged.shape)} for tensor {name} of shape "
                             f"{tuple(tensors[0].shape)}")
        # Inputs may hold inf on purpose (masks); only a non-finite value the rule itself made is refused.
        made_non_finite = made_non_finite or not all_finite(merged)
        inputs_finite = inputs_finite and all(all_finite(t) for t in tensors)
        yield merged.to(out)
    if made_non_finite and inputs_finite:
        raise MergeError(f"rule {rule.name} made non-finite values in tensor {name} from finite inputs")


def _non_finite_fix(dtype: torch.dtype) -> str:
    """What to change when a merged tensor is not finite."""
    if dtype in (torch.float16, torch.bfloat16):
        return "write a wider dtype (--dtype fp32), or use smaller coefficients, or check the inputs hold finite weights"
    return "use smaller coefficients, or check the inputs hold finite weights"


def _majority_dtype(tensors: dict[str, TensorInfo]) -> torch.dtype | None:
    """The float dtype most elements of ``tensors`` are in (None if none is float)."""
    counts: dict[str, int] = {}
    for info in tensors.values():
        if info.dtype in FLOAT_DTYPES:
            counts[info.dtype] = counts.get(info.dtype, 0) + info.nbytes // DTYPES[info.dtype].itemsize
    return HEADER_NAMES[max(counts, key=lambda d: counts[d])] if counts else None


def _set_config_dtype(config: Path, dtype: torch.dtype | None) -> None:
    """Make the copied config.json's ``dtype`` say what the output holds (``from_pretrained``
    with ``dtype="auto"`` reads it)."""
    if dtype is None or not config.is_file():
        return
    values = json.loads(config.read_text())
    if config_dtype(values) == dtype:
        return
    values["dtype"] = str(dtype).removeprefix("torch.")
    values.pop("torch_dtype", None)
    config.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def buffer_names(config_dir: Path) -> set[str]:
    """Names of the persistent buffers of the model in ``config_dir``, from an empty
    (meta-device) instance of its architecture; empty if the config cannot be built."""
    try:
        from transformers import AutoModelForCausalLM

        # imported here: the merge command starts without transformers (models imports it when it loads)
        from forgetless.models import load_config

        config = load_config(config_dir)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        return {name for name, _ in model.named_buffers()}
    except Exception:  # unknown or remote-code architectures: fall back to the dtype rule alone
        return set()


def resolve_inputs(models: Sequence[str | Path], stack: ExitStack, adapter_base: str | None = None,
                   trust_remote_code: bool = False) -> list[Checkpoint]:
    """Open every input as a ``Checkpoint``; LoRA adapter directories are merged into their base first."""
    checkpoints = []
    for spec in models:
        path = Path(spec)  # testbed: specs are resolved by the entry points
        if is_adapter(path):
            path = materialize_adapter(path, stack, adapter_base, trust_remote_code)
        checkpoints.append(Checkpoint(path))
    return checkpoints


def validate_coefficients(coefficients: Sequence[float], n_models: int) -> list[float]:
    """One finite coefficient per input, not all zero."""
    values = [float(c) for c in coefficients]
    if len(values) != n_models:
        raise MergeError(f"{len(values)} coefficients for {n_models} models; give one per model")
    bad = [c for c in values if not math.isfinite(c)]
    if bad:
        raise MergeError(f"coefficient {bad[0]} is not a finite number")
    # Tensors are combined in float32: torch refuses a larger scale with a RuntimeError ("cannot be converted to type
    # float without overflow"), and even a representable one this large turns every weight it touches into inf.
    huge = [c for c in values if abs(c) > FLOAT32_MAX]
    if huge:
        raise MergeError(f"coefficient {huge[0]:g} overflows float32 (largest {FLOAT32_MAX:.3g}), in which tensors are "
                         "combined; expected a coefficient of a usable size")
    if all(c == 0 for c in values):
        raise MergeError("all coefficients are zero; the merge would be an all-zero model")
    return values


def merge_checkpoints(
    models: Sequence[str | Path],
    coefficients: Sequence[float],
    output: str | Path,
    config_from: int = 0,
    shard_size: int | str = DEFAULT_SHARD_BYTES,
    overwrite: bool = False,
    adapter_base: str | None = None,
    record: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    progress: bool = True,
    dtype: str | torch.dtype | None = None,
    sentence_transformers_from: int | None = None,
    sentence_transformers_pooling: str | None = None,
    tensor_rule: TensorRule | None = None,
    chunk_elements: int | None = None,
) -> Path:
    """Write θ = Σ_k c_k θ_k of ``models`` (or ``tensor_rule``'s combination) to ``output``,
    streaming one tensor at a time.

    Args:
        models: model directories (single-file or sharded safetensors), ``testbed:PRESET``,
            or LoRA adapter directories (merged into their base first).
        coefficients: c_k, one per model (rules in ``forgetless.merging`` compute them).
        output: the merged model directory; written atomically.
        config_from: index of the model whose config, generation config, tokenizer,
            integer tensors and buffers the output takes.
        shard_size: largest output shard, bytes or e.g. ``"2GB"``.
        overwrite: replace an existing ``output``.
        adapter_base: base model for adapter inputs (default: the one their config names).
        record: extra facts (rule, parameters, computed weights) saved in ``forgetless-merge.json``.
        dtype: float dtype of the output (``"bf16"``, ``"fp32"``, ``"fp16"``, a torch dtype);
            None or ``"auto"``: each float tensor in the dtype the first model stores it in.
        sentence_transformers_from: index of the model whose sentence-transformers pipeline
            (modules.json, pooling and other module directories; ``forgetless.merging.st_format``)
            the output takes; None: ``config_from``'s. Nothing is copied from a model without one.
        sentence_transformers_pooling: ``cls`` or ``mean``: when that model has no pipeline, write
            one (encoder, this pooling, Normalize) so that ``SentenceTransformer`` embeds the output
            as the rule scored it; None: write none.
        tensor_rule: a rule that combines each float tensor itself (``TensorRule``); the
            coefficients are then checked and recorded but not summed. None: the linear sum.
        chunk_elements: a tensor larger than this many elements is merged a slice of rows at a
            time (None: ``CHUNK_ELEMENTS``); the output is the same whatever it is.

    Returns:
        ``output``, loadable with ``AutoModelForCausalLM.from_pretrained``.

    Raises:
        MergeError: inputs differ in architecture, tensor names, shapes, tokenizer or the
            dtype of an integer tensor, a shard is missing, the coefficients make no
            sense, or the sentence-transformers pipeline has a module with weights of its own;
            nothing is written.
        FileExistsError: ``output`` exists and ``overwrite`` is off.
        OutputError: ``output`` is, holds or lies inside an input model, or is not forgetless's to overwrite.
    """
    output = Path(output)
    guard_output(output, {"input model": [str(m) for m in models]}, overwrite)
    if not models:
        raise MergeError("no input models")
    values = validate_coefficients(coefficients, len(models))
    if not 0 <= config_from < len(models):
        raise MergeError(f"config_from={config_from}: expected an index between 0 and {len(models) - 1}")
    pipeline_from = config_from if sentence_transformers_from is None else sentence_transformers_from
    if sentence_transformers_pooling not in (None, "cls", "mean"):
        raise MergeError(f"sentence_transformers_pooling={sentence_transformers_pooling!r}: expected cls or mean")
    if not 0 <= pipeline_from < len(models):
        raise MergeError(f"sentence_transformers_from={pipeline_from}: expected an index between 0 and "
                         f"{len(models) - 1}")
    max_bytes = parse_size(shard_size)
    out_dtype = parse_dtype(dtype) if isinstance(dtype, str) and dtype != "auto" else (
        dtype if isinstance(dtype, torch.dtype) else None)
    with ExitStack() as stack:
        checkpoints = resolve_inputs(models, stack, adapter_base, trust_remote_code)
        check_compatible(checkpoints)
        for checkpoint in checkpoints:  # a merge reads each file thousands of times: opened once
            stack.enter_context(checkpoint.files_open())
        source = checkpoints[config_from]
        # The sentence-transformers pipeline's refusals come before any tensor is merged.
        pipeline_source = checkpoints[pipeline_from].path
        write_own_pipeline = not check_pipeline(pipeline_source) and sentence_transformers_pooling is not None
        width = embedding_width(source.config, source.path) if write_own_pipeline else 0
        # Parameters are named *.weight / *.bias in transformers models; only when a float
        # tensor is named otherwise can it be a persistent buffer, and only then is the
        # architecture instantiated (on the meta device) to ask, since importing the
        # model code costs more than merging a small model.
        unusual = [n for n, i in source.tensors.items()
                   if i.dtype in FLOAT_DTYPES and not n.endswith((".weight", ".bias"))]
        buffers = buffer_names(source.path) if unusual else set()
        copied = {name for name, info in source.tensors.items() if info.dtype not in FLOAT_DTYPES or name in buffers}
        first = checkpoints[0].tensors
        planned = {name: info if info.dtype not in FLOAT_DTYPES else
                   replace(info, dtype=DTYPE_NAMES[out_dtype] if out_dtype else first[name].dtype)
                   for name, info in source.tensors.items()}
        # Closed by the stack on an error too, so an error message starts on its own line.
        bar = stack.enter_context(tqdm(total=len(source.tensors), desc="merging", unit="tensor", leave=False,
                                       disable=not progress))

        chunk = CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
        scratch = Scratch()
        lent = itertools.count()  # slices lent to the writer so far

        def read(k: int, name: str, rows: Rows) -> torch.Tensor:
            """Rows of input ``k``'s tensor, read into input ``k``'s scratch slot (``READ_SLOT``, k): valid until
            the next read of input ``k``."""
            checkpoint = checkpoints[k]
            out = scratch.get((READ_SLOT, k), DTYPES[checkpoint.tensors[name].dtype], checkpoint.shape_of(name, rows))
            return checkpoint.read(name, rows, out=out)

        def produce(name: str) -> Iterator[torch.Tensor | Lent]:
            """The output tensor ``name``, a slice of rows at a time (``row_slices``)."""
            bar.update(1)
            target = DTYPES[planned[name].dtype]
            slices = row_slices(source.tensors[name].shape, chunk)
            if name in copied:
                for rows in slices:
                    yield read(config_from, name, rows).to(target)
                return
            if tensor_rule is not None:
                merged_slices: Iterator[torch.Tensor] = combine_tensors(
                    lambda k, rows: checkpoints[k].read(name, rows), len(checkpoints), tensor_rule, name, target,
                    slices)
            else:  # each slice rounded into the next of LENT_BUFFERS buffers, written from there (no copy)
                merged_slices = (combine(lambda k: read(k, name, rows), values, target, scratch,
                                         out=scratch.get((LENT_SLOT, next(lent) % LENT_BUFFERS), target,
                                                         source.shape_of(name, rows)))
                                 for rows in slices)
            bad = numel = 0
            for merged in merged_slices:
                # Checked in the written dtype: a sum past fp16's 65504 is inf only once rounded, and a model
                # with inf or NaN weights must not be saved as a merge that succeeded. The error comes after
                # the last slice (its count is the whole tensor's), before the output directory is renamed.
                if not all_finite(merged):
                    bad += int((~torch.isfinite(merged)).sum())
                numel += merged.numel()
                yield Lent(merged) if tensor_rule is None else merged
            if bad:
                raise MergeError(f"tensor {name} of the merge holds {bad} non-finite value(s) (NaN or inf) of "
                                 f"{numel} in {short_name(target)}; nothing was written; "
                                 f"{_non_finite_fix(target)}")

        threads = torch.get_num_threads()
        with atomic_dir(output, overwrite=overwrite) as tmp:
            torch.set_num_threads(min(threads, MERGE_THREADS))
            try:
                shards = write_shards(tmp, planned, max_bytes, produce)
            finally:
                torch.set_num_threads(threads)
            for name in COPIED_FILES:
                if (source.path / name).is_file():
                    shutil.copy2(source.path / name, tmp / name)
            if write_own_pipeline:
                pipeline = write_pipeline(tmp, str(sentence_transformers_pooling), width)
                pipeline_from_text = f"written by forgetless ({sentence_transformers_pooling} pooling, normalized)"
            else:
                pipeline = copy_pipeline(pipeline_source, tmp)
                pipeline_from_text = str(models[pipeline_from])
            _set_config_dtype(tmp / "config.json", _majority_dtype(planned))
            write_json(tmp / RECORD_FILE, {
                "forgetless_version": forgetless.__version__,
                "models": [str(m) for m in models],
                "coefficients": values,
                "config_from": str(models[config_from]),
                "copied_tensors": sorted(copied),
                "dtype": short_name(written) if (written := _majority_dtype(planned)) else None,
                "dtype_requested": short_name(out_dtype) if out_dtype else "auto (the first model's)",
                "input_dtypes": {str(m): short_name(c_dtype) for m, c in zip(models, checkpoints)
                                 if (c_dtype := _majority_dtype(c.tensors)) is not None},
                "shards": [s.file for s in shards],
                **({"sentence_transformers_from": pipeline_from_text, "sentence_transformers_files": pipeline}
                   if pipeline else {}),
                # Only a per-tensor merge says so: a linear merge's record stays as it was.
                **({"combined": f"per tensor by rule {tensor_rule.name}; the coefficients are its linear "
                                "counterpart, not what was summed", **tensor_rule.tensor_summary()}
                   if tensor_rule is not None else {}),
                **(record or {}),
            })
    return output
