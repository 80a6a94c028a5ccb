"""Benchmark: a linear merge of real-shape checkpoints, ``forgetless merge`` against
``mergekit-yaml`` (linear, mergekit 0.1.5) and LM-Cocktail's ``mix_models`` (lm-cocktail
0.0.4), and against the disk floor (reading the inputs and writing the output once), all in
one run.

Shapes (``--shape``): ``qwen0.5b`` (default; issue 28): two checkpoints of Qwen2.5-0.5B's
architecture (494 M parameters, vocabulary 151,936, tied embeddings) stored in bf16, averaged;
``llama3x`` (the first benchmark): three random Llama checkpoints (d1024, ``--layers`` layers,
untied embeddings) in float32, 1/3 each. Random weights are written directly (no model is
initialised), so building is quick.

Each tool runs as its own subprocess; wall time is measured around it and peak memory is
that process's peak resident set (``os.wait4`` rusage ``ru_maxrss``). Inputs are read once
before the runs, so every tool sees the same warm page cache, and every output's cached pages are
dropped before each run (``evict``). Prints ratios (forgetless / other; against the floor's best
round); absolute figures go to notes, not assertions. ``--before SRC`` also runs the engine of
another checkout (``SRC`` = its ``src`` directory, e.g. main's) and compares the outputs byte for byte.

Setup:  bash bench/merge_setup.sh        (bench/.venv-merge with mergekit and lm-cocktail)
Run:    .venv/bin/python bench/merge_bench.py [--shape qwen0.5b] [--workdir /tmp/forgetless-merge-bench]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = ROOT / "bench" / ".venv-merge"
CHUNK = 16 * 1024 * 1024


# Qwen/Qwen2.5-0.5B's config.json, less its weights (as tests/test_real_shape.py).
QWEN25_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                  rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu")


def build_checkpoints(workdir: Path, shape: str, layers: int) -> list[Path]:
    """The inputs of ``shape`` (module docstring) with the testbed tokenizer; random normal weights (σ 0.02),
    norms at one, written straight to safetensors from the architecture's meta-device tensor list."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    from forgetless.models import load_tokenizer
    from forgetless.testbed.build import build_testbed

    tokenizer = load_tokenizer(str(build_testbed("tiny").base_model_dir))
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    if shape == "qwen0.5b":
        config, dtype, count = Qwen2Config(**QWEN25_05B, **ids), torch.bfloat16, 2
    else:
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=1024, intermediate_size=2816,
                             num_hidden_layers=layers, num_attention_heads=16, num_key_value_heads=16,
                             tie_word_embeddings=False, **ids)
        dtype, count = torch.float32, 3
    config.dtype = dtype
    config.architectures = ["Qwen2ForCausalLM" if shape == "qwen0.5b" else "LlamaForCausalLM"]  # mergekit reads it
    with torch.device("meta"):
        # Parameters, not the state dict: a tied LM head is the embedding, not a tensor of its own.
        shapes = {name: tuple(p.shape) for name, p in AutoModelForCausalLM.from_config(config).named_parameters()}
    paths = []
    for seed in range(count):
        path = workdir / f"{shape}-input-{seed}"
        paths.append(path)
        if (path / "model.safetensors").is_file():
            continue
        generator = torch.Generator().manual_seed(seed)
        tensors = {name: torch.ones(size, dtype=dtype) if name.endswith("norm.weight")
                   else (torch.randn(size, generator=generator) * 0.02).to(dtype) for name, size in shapes.items()}
        path.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
        config.save_pretrained(path)
        tokenizer.save_pretrained(path)
        del tensors
    return paths


def evict(directories: list[Path]) -> None:
    """Drop the page cache of every file under ``directories`` (written back first): a run then finds the
    memory the runs before it wrote in free again. Without this, each run of a round was slower than the one before
    it (1 GB more of written output cached; same code: 1.1-1.4 s first, 1.6-2.7 s third), which favoured
    whatever ran first (``--before`` runs last: it had looked 0.54x the engine it is 0.9x of)."""
    os.sync()
    if not hasattr(os, "posix_fadvise"):  # not on macOS: the runs then keep the bias described above
        return
    for directory in directories:
        for file in directory.rglob("*") if directory.is_dir() else []:
            if file.is_file():
                fd = os.open(file, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


OUTPUTS: list[Path] = []  # every tool's output directory: evicted from the page cache before each run


def run(name: str, command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``command``; return its wall seconds and peak RSS (MiB) from wait4's rusage, plus
    ``engine_s`` when the command prints a line ``ENGINE_SECONDS <s>``. The page cache's dirty pages are written
    back first and the outputs' cached pages dropped (untimed, ``evict``), so no run pays for the runs before it."""
    evict(OUTPUTS)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, **(env or {})})
    output = process.stdout.read() if process.stdout else b""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.stderr.write(output.decode(errors="replace")[-4000:])
        raise SystemExit(f"{name} failed with exit code {process.returncode}")
    result = {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024}
    for line in output.decode(errors="replace").splitlines():
        if line.startswith("ENGINE_SECONDS "):
            result["engine_s"] = float(line.split()[1])
    print(f"  {name:<12} wall {wall:7.2f} s   peak RSS {result['peak_rss_mib']:8.0f} MiB", flush=True)
    return result


def floor_command(inputs: list[Path], output: Path, output_bytes: int) -> list[str]:
    """Read every input file once and write ``output_bytes`` once: what no merge can beat."""
    files = [str(f) for p in inputs for f in sorted(p.glob("*.safetensors"))]
    script = textwrap.dedent(f"""
        import os
        buf = bytearray({CHUNK})
        for name in {files!r}:
            with open(name, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
        left = {output_bytes}
        os.makedirs({str(output)!r}, exist_ok=True)
        with open(os.path.join({str(output)!r}, "model.safetensors"), "wb") as f:
            while left > 0:
                n = min(left, len(buf))
                f.write(memoryview(buf)[:n])
                left -= n
    """)
    return [sys.executable, "-c", script]


def compare_outputs(a: Path, b: Path) -> float:
    """Largest absolute difference between two merged checkpoints over the embedding, a layer and the LM head."""
    from forgetless.merging.checkpoint import Checkpoint

    ca, cb = Checkpoint(a), Checkpoint(b)
    names = [n for n in ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "lm_head.weight")
             if n in ca.tensors and n in cb.tensors]
    return max(float((ca.read(n).float() - cb.read(n).float()).abs().max()) for n in names)


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two merge outputs hold the same safetensors files, byte for byte."""
    files = sorted(f.name for f in a.glob("*.safetensors"))
    return files == sorted(f.name for f in b.glob("*.safetensors")) and all(
        filecmp.cmp(a / f, b / f, shallow=False) for f in files)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/forgetless-merge-bench")
    parser.add_argument("--shape", choices=("qwen0.5b", "llama3x"), default="qwen0.5b")
    parser.add_argument("--layers", type=int, default=6, help="llama3x's decoder layers (6: ~376 MB per checkpoint)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of the floor and forgetless runs, interleaved (medians against the floor's best round)")
    parser.add_argument("--before", help="another checkout's src directory: its engine runs too, and its output is "
                                         "compared with this one's byte for byte")
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compare", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build_checkpoints(Path(args.workdir), args.shape, args.layers)
        return 0
    if args.compare:
        print(json.dumps({other: compare_outputs(Path(args.compare[0]), Path(other)) for other in args.compare[1:]}))
        return 0
    python = BENCH_VENV / "bin" / "python"
    if not python.is_file():
        raise SystemExit(f"{python} not found: run `bash bench/merge_setup.sh` first")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # Building and comparing import torch; they run in child processes so this parent stays
    # small: a child's ru_maxrss starts from the size of the process it was forked from.
    subprocess.run([sys.executable, __file__, "--build", "--workdir", str(workdir), "--shape", args.shape,
                    "--layers", str(args.layers)], check=True)
    bf16 = args.shape == "qwen0.5b"
    inputs = [workdir / f"{args.shape}-input-{seed}" for seed in range(2 if bf16 else 3)]
    sizes = [sum(f.stat().st_size for f in p.glob("*.safetensors")) for p in inputs]
    weights = [1 / len(inputs)] * len(inputs)
    print(f"inputs: {len(inputs)} checkpoints ({args.shape}) of {', '.join(f'{s / 1e6:.0f}' for s in sizes)} MB "
          f"({'bf16' if bf16 else 'float32'}), linear weights {weights[0]:.3g} each; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    for path in inputs:  # warm the page cache the same way for every tool
        subprocess.run(["cat", *map(str, path.glob("*.safetensors"))], stdout=subprocess.DEVNULL, check=True)

    names = ("floor", "forgetless", "library", "before", "mergekit", "lmcocktail")
    outputs = {name: workdir / f"out-{name}" for name in names}
    OUTPUTS.extend(outputs.values())
    for out in outputs.values():
        shutil.rmtree(out, ignore_errors=True)
    mergekit_config = workdir / "mergekit-linear.yml"
    mergekit_config.write_text(json.dumps({
        "merge_method": "linear", "dtype": "bfloat16" if bf16 else "float32",
        "models": [{"model": str(p), "parameters": {"weight": w}} for p, w in zip(inputs, weights)],
    }))
    cocktail = (f"from LM_Cocktail import mix_models; "
                f"mix_models({[str(p) for p in inputs]!r}, model_type='decoder', weights={weights!r}, "
                f"output_path={str(outputs['lmcocktail'])!r})")
    forgetless_cmd = [sys.executable, "-m", "forgetless.cli", "merge", "--rule", "average",
                      "--models", *map(str, inputs), "--output", str(outputs["forgetless"])]

    def library(out: Path) -> list[str]:
        """The engine alone, without the CLI (which imports every subcommand's modules)."""
        return [sys.executable, "-c", f"import time; from forgetless.merging.engine import merge_checkpoints; "
                f"start = time.perf_counter(); merge_checkpoints({[str(p) for p in inputs]!r}, {weights!r}, "
                f"{str(out)!r}, progress=False, overwrite=True); print('ENGINE_SECONDS', time.perf_counter() - start)"]

    print("runs (same warm page cache; floor, forgetless and the engine interleaved over --repeats rounds):")
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in ("floor", "forgetless", "library", "before")}
    for _ in range(args.repeats):
        # Every output is removed untimed (the engine would otherwise delete the last round's 1 GB inside its own
        # time, with overwrite), and each run starts with no dirty pages (``run`` syncs first).
        for out in (outputs["floor"], outputs["forgetless"], outputs["library"], outputs["before"]):
            shutil.rmtree(out, ignore_errors=True)
        rounds["floor"].append(run("floor", floor_command(inputs, outputs["floor"], sizes[0])))
        rounds["forgetless"].append(run("forgetless", forgetless_cmd, {"TQDM_DISABLE": "1"}))
        rounds["library"].append(run("library", library(outputs["library"])))
        if args.before:
            rounds["before"].append(run("before", library(outputs["before"]), {"PYTHONPATH": args.before}))
    results = {name: {"wall_s": median([r["wall_s"] for r in runs]),
                      "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                      **({"engine_s": median([r["engine_s"] for r in runs])} if "engine_s" in runs[0] else {})}
               for name, runs in rounds.items() if runs}
    results["import_torch"] = run("import torch", [sys.executable, "-c", "import torch"])
    results["mergekit"] = run("mergekit", [str(BENCH_VENV / "bin" / "mergekit-yaml"), str(mergekit_config),
                                           str(outputs["mergekit"])])
    results["lmcocktail"] = run("lm-cocktail", [str(python), "-c", cocktail])
    compared = subprocess.run([sys.executable, __file__, "--compare", str(outputs["forgetless"]),
                               str(outputs["library"]), str(outputs["mergekit"]), str(outputs["lmcocktail"])],
                              check=True, capture_output=True, text=True)
    diffs = {Path(k).name.removeprefix("out-"): v
             for k, v in json.loads(compared.stdout.strip().splitlines()[-1]).items()}
    f = results["forgetless"]
    print("\nratios (forgetless / other; < 1 means forgetless is faster or smaller):")
    for other, label in (("mergekit", "mergekit-yaml linear"), ("lmcocktail", "lm-cocktail mix_models")):
        o = results[other]
        print(f"  vs {label:<24} wall {f['wall_s'] / o['wall_s']:.3f}   peak memory "
              f"{f['peak_rss_mib'] / o['peak_rss_mib']:.3f} ({f['peak_rss_mib']:.0f} vs {o['peak_rss_mib']:.0f} MiB)"
              f"   (max |difference| of merged weights {diffs[other]:.2e})")
    # The floor's best round: what no merge can beat. Its rounds swing more than the tools' (1.2 s to 4.6 s in one
    # run; a round that follows the deletion of the round before's outputs is the slow one), so its median would
    # flatter the engine.
    floor = min(r["wall_s"] for r in rounds["floor"])
    print(f"  (floor: best of {len(rounds['floor'])} rounds, {floor:.2f} s; ratios below are medians over it)")
    print(f"  vs read+write floor        wall {f['wall_s'] / floor:.2f}x (CLI: interpreter, every subcommand's "
          f"imports, merge); library call {results['library']['wall_s'] / floor:.2f}x (of which `import torch` "
          f"alone is {results['import_torch']['wall_s'] / floor:.2f}x); merge_checkpoints itself "
          f"{results['library']['engine_s'] / floor:.2f}x")
    identical = None
    if args.before:
        b = results["before"]
        identical = same_bytes(outputs["library"], outputs["before"])
        print(f"  vs --before's engine       merge_checkpoints {results['library']['engine_s'] / b['engine_s']:.2f}x"
              f"   peak memory {results['library']['peak_rss_mib']:.0f} vs {b['peak_rss_mib']:.0f} MiB"
              f"   outputs byte-identical: {identical}")
    targets = {
        "peak memory <= 600 MB (CLI)": f["peak_rss_mib"] * 2**20 <= 600e6,
        "peak memory <= 1/2 of mergekit": f["peak_rss_mib"] <= 0.5 * results["mergekit"]["peak_rss_mib"],
        "peak memory <= 1/4 of lm-cocktail": f["peak_rss_mib"] <= 0.25 * results["lmcocktail"]["peak_rss_mib"],
        "wall time <= mergekit": f["wall_s"] <= results["mergekit"]["wall_s"],
        "merge_checkpoints within 1.1x of the floor": results["library"]["engine_s"] <= 1.1 * floor,
        "wall time within 3x of the floor (CLI end to end)": f["wall_s"] <= 3 * floor,
        **({"byte-identical to --before": bool(identical)} if args.before else {}),
    }
    print("targets: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in targets.items()))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    (workdir / "results.json").write_text(json.dumps({"results": results, "rounds": rounds, "max_abs_diff": diffs,
                                                      "targets": targets, "input_bytes": sizes}, indent=2))
    for out in outputs.values():
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
