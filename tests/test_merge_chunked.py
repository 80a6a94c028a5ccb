"""Merging large tensors a slice of rows at a time (``engine.CHUNK_ELEMENTS``, issue 28): the bytes
written are the unsliced merge's for every rule of ``forgetless merge``, in fp32 and from a bf16
input, and a rule that needs whole tensors still gets them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import forgetless.merging.engine as engine
from forgetless.cli import main
from forgetless.merging import MergeError, merge_checkpoints
from forgetless.merging.checkpoint import Checkpoint
from forgetless.merging.engine import Scratch, combine
from forgetless.merging.registry import RULES
from forgetless.merging.slerp import CHUNK, CosineSums, cosine
from tests.conftest import TEXT, write_jsonl
from tests.test_merge_tensor_rules import Largest

UNSLICED = 1 << 62  # no tensor is this large: every tensor read whole, as before slicing


def rule_argv(rule: str, models: Sequence[Path], data: Path) -> list[str]:
    """``forgetless merge`` arguments for ``rule`` over ``models`` (three; two-model rules take the first two)."""
    two = [str(m) for m in models[:2]]
    every = [str(m) for m in models]
    return {
        "interpolate": ["--alpha", "0.3", "--models", *two],
        "slerp": ["--t", "0.3", "--models", *two],
        "average": ["--weights", "1", "2", "4", "--models", *every],
        "task_arithmetic": ["--lambdas", "0.7", "0.4", "--models", *every],
        "greedy_soup": ["--validation", str(data), "--models", *every],
        "cocktail": ["--examples", str(data), "--models", *every],
    }[rule]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("chunk-data") / "d.jsonl", [{"text": t} for t in TEXT[:3]])


@pytest.mark.parametrize("inputs", ["fp32", "bf16"])
@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_writes_the_unsliced_bytes(rule: str, inputs: str, saved_models: list[Path],
                                              tiny_bf16_model_dir: Path, data: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # bf16 first: the output is bf16, the sums are over a bf16 and two fp32 inputs.
    models = saved_models if inputs == "fp32" else [tiny_bf16_model_dir, *saved_models[1:]]
    sliced_reads = []
    real_read = Checkpoint.read

    def spy(self: Checkpoint, name: str, rows: tuple[int, int] | None = None,
            out: torch.Tensor | None = None) -> torch.Tensor:
        if rows is not None:
            sliced_reads.append(name)
        return real_read(self, name, rows, out)

    monkeypatch.setattr(Checkpoint, "read", spy)
    written = {}
    # 1: every row alone (1-D tensors element by element); 70: two 32-wide rows at a time, 1-D ones whole; the sums
    # of the sliced merges a 64-element block at a time (the unsliced one's in one pass over each tensor).
    for chunk in (UNSLICED, 1, 70):
        monkeypatch.setattr(engine, "CHUNK_ELEMENTS", chunk)
        monkeypatch.setattr(engine, "BLOCK_ELEMENTS", UNSLICED if chunk == UNSLICED else 64)
        out = tmp_path / f"out-{chunk}"
        assert main(["merge", "--rule", rule, *rule_argv(rule, models, data), "--output", str(out)]) == 0
        written[chunk] = {f.name: f.read_bytes() for f in sorted(out.iterdir()) if f.is_file()}
        assert written[chunk]["model.safetensors"] == written[UNSLICED]["model.safetensors"], (rule, chunk)
        assert written[chunk]["forgetless-merge.json"] == written[UNSLICED]["forgetless-merge.json"], (rule, chunk)
    assert "model.embed_tokens.weight" in sliced_reads  # the slices were really taken
    dtype = Checkpoint(tmp_path / f"out-{UNSLICED}").tensors["model.embed_tokens.weight"].dtype
    assert dtype == ("F32" if inputs == "fp32" else "BF16")


def test_cosine_sums_fed_in_slices_of_rows_are_the_whole_tensors() -> None:
    """The chunks of the sums start at the tensor's first element whatever the slices, so d is equal, not close."""
    torch.manual_seed(0)
    a, b = torch.randn(3 * CHUNK // 1000 + 7, 1000), torch.randn(3 * CHUNK // 1000 + 7, 1000)
    whole = cosine(a, b)
    for rows in (1, 333, 1049, a.shape[0]):
        sums = CosineSums()
        for start in range(0, a.shape[0], rows):
            sums.add(a[start:start + rows], b[start:start + rows])
        assert sums.cosine() == whole, rows


def test_a_rule_that_is_not_row_separable_gets_whole_tensors(saved_models: list[Path], tmp_path: Path) -> None:
    rule = Largest()
    merge_checkpoints(saved_models, [1 / 3] * 3, tmp_path / "m", tensor_rule=rule, progress=False, chunk_elements=1)
    shapes = {name: info.shape for name, info in Checkpoint(saved_models[0]).tensors.items()}
    assert sorted(name for name, _, _ in rule.seen) == sorted(shapes)  # each tensor once, whole
    expected = torch.maximum(torch.maximum(*(Checkpoint(p).read("model.embed_tokens.weight")
                                             for p in saved_models[:2])),
                             Checkpoint(saved_models[2]).read("model.embed_tokens.weight"))
    assert torch.equal(Checkpoint(tmp_path / "m").read("model.embed_tokens.weight"), expected)


def test_a_non_finite_merge_counts_the_whole_tensor_and_writes_nothing(tmp_path: Path) -> None:
    """fp16 overflow in two separate slices: one error after the tensor, counting both, as unsliced."""
    big = torch.zeros(4, 3)
    big[0, 0] = big[3, 2] = 60000.0
    for name, scale in (("a", 1.0), ("b", 1.0)):
        (tmp_path / name).mkdir()
        save_file({"w.weight": big * scale}, str(tmp_path / name / "model.safetensors"))
    messages = []
    for chunk in (UNSLICED, 3):
        with pytest.raises(MergeError) as err:
            merge_checkpoints([tmp_path / "a", tmp_path / "b"], [1.0, 1.0], tmp_path / f"out{chunk}", dtype="fp16",
                              progress=False, chunk_elements=chunk)
        messages.append(str(err.value).replace(str(tmp_path), ""))
        assert not (tmp_path / f"out{chunk}").exists()
    assert messages[0] == messages[1] and "holds 2 non-finite value(s) (NaN or inf) of 12 in fp16" in messages[0]


def test_background_writer_keeps_order_and_raises_its_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices are written on another thread while the next is computed in the same buffer: the file holds
    every slice as it was when handed over, a failed write (a full disk) is raised, and an error of the
    merge itself is the one raised, not one of the writer's."""
    from safetensors.torch import load_file

    import forgetless.merging.writer as writer
    from forgetless.merging.checkpoint import TensorInfo

    monkeypatch.setattr(writer, "WRITE_DEPTH", 2)
    info = {"w": TensorInfo(Path("x"), "F32", (64, 3))}
    buffer = torch.empty(8, 3)

    def produce(name: str):  # one reused buffer, refilled for each slice, as the engine's Scratch does
        for start in range(0, 64, 8):
            buffer.copy_(torch.arange(start * 3, (start + 8) * 3, dtype=torch.float32).view(8, 3))
            yield buffer

    writer.write_shards(tmp_path, info, 1 << 30, produce)
    assert torch.equal(load_file(tmp_path / "model.safetensors")["w"], torch.arange(192.0).view(64, 3))

    class Full(Exception):
        pass

    real_open = open

    class FullDisk:
        def __init__(self, path: Path, mode: str) -> None:
            self.handle, self.left = real_open(path, mode), 500

        def write(self, data: bytes) -> int:
            self.left -= len(data)
            if self.left < 0:
                raise Full("no space left on device")
            return self.handle.write(data)

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

    monkeypatch.setattr(writer, "open", FullDisk, raising=False)
    with pytest.raises(Full):
        writer.write_shards(tmp_path, info, 1 << 30, produce)

    def fails(name: str):
        yield torch.zeros(8, 3)
        raise MergeError("the merge's own error")

    monkeypatch.setattr(writer, "open", real_open, raising=False)
    with pytest.raises(MergeError, match="own error"):
        writer.write_shards(tmp_path, info, 1 << 30, fails)


def test_lent_slices_are_written_from_where_they_lie_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices handed over as ``Lent`` are written without a copy while the producer fills the next of
    ``LENT_BUFFERS`` buffers: with a slow disk (every write waits), the file still holds every slice as handed
    over (one buffer fewer corrupts it: the producer overwrites a slice still queued)."""
    import time

    from safetensors.torch import load_file

    import forgetless.merging.writer as writer
    from forgetless.merging.checkpoint import TensorInfo

    monkeypatch.setattr(writer, "WRITE_DEPTH", 2)
    monkeypatch.setattr(writer, "LENT_BUFFERS", 3)
    info = {"w": TensorInfo(Path("x"), "F32", (64, 3))}
    ring = [torch.empty(8, 3) for _ in range(writer.LENT_BUFFERS)]
    real_open = open

    class SlowDisk:
        def __init__(self, path: Path, mode: str) -> None:
            self.handle = real_open(path, mode)

        def write(self, data: bytes) -> int:
            time.sleep(0.01)
            return self.handle.write(data)

        def __enter__(self) -> SlowDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

    def produce(name: str):
        for i, start in enumerate(range(0, 64, 8)):
            buffer = ring[i % len(ring)]
            buffer.copy_(torch.arange(start * 3, (start + 8) * 3, dtype=torch.float32).view(8, 3))
            yield writer.Lent(buffer)

    monkeypatch.setattr(writer, "open", SlowDisk, raising=False)
    writer.write_shards(tmp_path, info, 1 << 30, produce)
    assert torch.equal(load_file(tmp_path / "model.safetensors")["w"], torch.arange(192.0).view(64, 3))


def test_a_read_into_a_buffer_is_safetensors_own_read(tmp_path: Path) -> None:
    """``Checkpoint.read(..., out=)`` (one unbuffered read at the tensor's offset) gives safe_open's tensor bit for bit,
    whole and by rows, for every dtype and a 0-d tensor; a wrong buffer and a file cut short after opening are
    refused with what was expected."""
    generator = torch.Generator().manual_seed(0)
    tensors = {"a.weight": torch.randn(7, 5, generator=generator).to(torch.bfloat16),
               "b.weight": torch.randn(3, 4, 2, generator=generator),
               "c.weight": torch.randn(6, generator=generator).to(torch.float16),
               "d.weight": torch.randn(2, 3, generator=generator).double(),
               "ids": torch.arange(9, dtype=torch.int64).view(3, 3), "mask": torch.tensor([True, False, True]),
               "scale": torch.tensor(2.5)}
    (tmp_path / "m").mkdir()
    save_file(tensors, str(tmp_path / "m" / "model.safetensors"))
    checkpoint = Checkpoint(tmp_path / "m")
    for name, expected in tensors.items():
        for rows in [None] + ([(0, 1), (1, expected.shape[0])] if expected.dim() else []):
            out = torch.full(checkpoint.shape_of(name, rows), 7, dtype=expected.dtype)
            got = checkpoint.read(name, rows, out=out)
            assert got is out and torch.equal(got, expected if rows is None else expected[rows[0]:rows[1]])
            assert torch.equal(got, checkpoint.read(name, rows))  # safe_open's read
    with pytest.raises(ValueError, match=r"out is torch.float32 \(7, 5\), expected a contiguous BF16 \(7, 5\)"):
        checkpoint.read("a.weight", out=torch.empty(7, 5))
    file = tmp_path / "m" / "model.safetensors"
    file.write_bytes(file.read_bytes()[:checkpoint.tensors["scale"].offset])  # the last tensor's bytes gone
    with pytest.raises(MergeError, match="cut short after it was opened"):
        checkpoint.read("scale", out=torch.empty((), dtype=torch.float32))


@pytest.mark.parametrize("dtypes", [("bf16", "bf16", "bf16"), ("fp16", "fp32", "fp16"), ("fp32", "bf16", "fp32")])
def test_sums_taken_block_by_block_are_the_one_pass_sums(dtypes: tuple[str, str, str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's float32 sum, computed ``BLOCK_ELEMENTS`` at a time into its lent buffer, has the bits of
    ``combine``'s sum over whole tensors (fresh tensors, no scratch), for sizes below, at and past a block and
    uneven coefficients; signed zeros and infinities included."""
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    first, second, out_dtype = (torch_dtype[d] for d in dtypes)
    monkeypatch.setattr(engine, "BLOCK_ELEMENTS", 64)
    generator = torch.Generator().manual_seed(1)
    for n in (1, 63, 64, 65, 200, 1000):
        inputs = [(torch.randn(n, generator=generator) * 3).to(first), (torch.randn(n, generator=generator)).to(second),
                  torch.randn(n, generator=generator).to(first)]
        inputs[0][0], inputs[1][-1] = -0.0, float("inf")
        for coefficients in ([0.3, 0.7, 0.0], [0.37, -1.3, 0.11], [1.0, 1.0, 1.0]):
            expected = combine(lambda k: inputs[k], coefficients, out_dtype)
            out = torch.empty(n, dtype=out_dtype)
            got = combine(lambda k: inputs[k], coefficients, out_dtype, Scratch(), out=out)
            bits = torch.int16 if out_dtype != torch.float32 else torch.int32
            assert got is out and torch.equal(got.view(bits), expected.view(bits)), (n, coefficients)


def test_scratch_reuses_its_views_and_drops_them_when_a_buffer_grows() -> None:
    scratch = Scratch()
    small = scratch.get("slot", torch.float32, (2, 3))
    assert scratch.get("slot", torch.float32, (2, 3)) is small  # no new view for a shape asked for before
    assert scratch.get("slot", torch.float32, (4,)).data_ptr() == small.data_ptr()  # the same buffer
    large = scratch.get("slot", torch.float32, (100,))  # grows: a new buffer
    again = scratch.get("slot", torch.float32, (2, 3))
    assert again is not small and again.data_ptr() == large.data_ptr()
    assert scratch.get("other", torch.float32, (2, 3)).data_ptr() != again.data_ptr()


def test_files_kept_open_for_buffer_reads_are_opened_once_and_closed_after(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    tensors = {"a.weight": torch.arange(12.0).view(4, 3), "b.weight": torch.arange(5.0)}
    (tmp_path / "m").mkdir()
    save_file(tensors, str(tmp_path / "m" / "model.safetensors"))
    checkpoint = Checkpoint(tmp_path / "m")
    opened = []
    real_open = open

    def counting_open(file, *args, **kwargs):  # noqa: ANN001, ANN202 - open's own signature
        handle = real_open(file, *args, **kwargs)
        opened.append(handle)
        return handle

    import forgetless.merging.checkpoint as checkpoint_module
    monkeypatch.setattr(checkpoint_module, "open", counting_open, raising=False)
    with checkpoint.files_open():
        with checkpoint.files_open():  # nested: the outer block closes
            for rows in [(0, 1), (1, 3), (3, 4)]:
                out = torch.empty(checkpoint.shape_of("a.weight", rows))
                assert torch.equal(checkpoint.read("a.weight", rows, out=out), tensors["a.weight"][rows[0]:rows[1]])
        assert torch.equal(checkpoint.read("b.weight", out=torch.empty(5)), tensors["b.weight"])
        assert len(opened) == 1 and not opened[0].closed
    assert opened[0].closed
    checkpoint.read("b.weight", out=torch.empty(5))  # outside the block: opened and closed again
    assert len(opened) == 2 and opened[1].closed
