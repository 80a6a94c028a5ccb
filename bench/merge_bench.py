"""Benchmark: a linear merge of three identical-architecture checkpoints (≥ 300 MB each),
``forgetless merge`` against ``mergekit-yaml`` (linear, mergekit 0.1.5) and LM-Cocktail's
``mix_models`` (lm-cocktail 0.0.4), and against the disk floor (reading the inputs and
writing the output once), all in one run.

Each tool runs as its own subprocess; wall time is measured around it and peak memory is
that process's peak resident set (``os.wait4`` rusage ``ru_maxrss``). Inputs are read once
before the runs, so every tool sees the same warm page cache. Prints ratios (forgetless /
other); absolute figures go to notes, not assertions.

Setup:  bash bench/merge_setup.sh        (bench/.venv-merge with mergekit and lm-cocktail)
Run:    .venv/bin/python bench/merge_bench.py [--workdir /tmp/forgetless-merge-bench]
"""

from __future__ import annotations

import argparse
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


def build_checkpoints(workdir: Path, layers: int) -> list[Path]:
    """Three random Llama checkpoints (float32, untied embeddings) with the testbed tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from forgetless.testbed.build import build_testbed
    from forgetless.models import load_tokenizer

    tokenizer = load_tokenizer(str(build_testbed("tiny").base_model_dir))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=1024, intermediate_size=2816,
                         num_hidden_layers=layers, num_attention_heads=16, num_key_value_heads=16,
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    paths = []
    for seed in range(3):
        path = workdir / f"input-{seed}"
        paths.append(path)
        if (path / "model.safetensors").is_file():
            continue
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        del model
    return paths


def run(name: str, command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``command``; return its wall seconds and peak RSS (MiB) from wait4's rusage, plus
    ``engine_s`` when the command prints a line ``ENGINE_SECONDS <s>``."""
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


def compare_outputs(a: Path, b: Path, names: list[str]) -> float:
    """Largest absolute difference between two merged checkpoints over ``names``."""
    from forgetless.merging.checkpoint import Checkpoint

    ca, cb = Checkpoint(a), Checkpoint(b)
    return max(float((ca.read(n).float() - cb.read(n).float()).abs().max()) for n in names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/forgetless-merge-bench")
    parser.add_argument("--layers", type=int, default=6, help="decoder layers (6: ~376 MB per checkpoint in float32)")
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compare", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build_checkpoints(Path(args.workdir), args.layers)
        return 0
    if args.compare:
        names = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "lm_head.weight"]
        print(json.dumps({other: compare_outputs(Path(args.compare[0]), Path(other), names) for other in args.compare[1:]}))
        return 0
    python = BENCH_VENV / "bin" / "python"
    if not python.is_file():
        raise SystemExit(f"{python} not found: run `bash bench/merge_setup.sh` first")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # Building and comparing import torch; they run in child processes so this parent stays
    # small: a child's ru_maxrss starts from the size of the process it was forked from.
    inputs = [workdir / f"input-{seed}" for seed in range(3)]
    subprocess.run([sys.executable, __file__, "--build", "--workdir", str(workdir), "--layers", str(args.layers)],
                   check=True)
    sizes = [sum(f.stat().st_size for f in p.glob("*.safetensors")) for p in inputs]
    print(f"inputs: 3 checkpoints of {', '.join(f'{s / 1e6:.0f}' for s in sizes)} MB (float32), linear weights 1/3 each")
    for path in inputs:  # warm the page cache the same way for every tool
        subprocess.run(["cat", *map(str, path.glob("*.safetensors"))], stdout=subprocess.DEVNULL, check=True)

    outputs = {name: workdir / f"out-{name}" for name in ("floor", "forgetless", "library", "mergekit", "lmcocktail")}
    for out in outputs.values():
        shutil.rmtree(out, ignore_errors=True)
    weights = [1 / 3] * 3
    mergekit_config = workdir / "mergekit-linear.yml"
    mergekit_config.write_text(json.dumps({
        "merge_method": "linear", "dtype": "float32",
        "models": [{"model": str(p), "parameters": {"weight": w}} for p, w in zip(inputs, weights)],
    }))
    cocktail = (f"from LM_Cocktail import mix_models; "
                f"mix_models({[str(p) for p in inputs]!r}, model_type='decoder', weights={weights!r}, "
                f"output_path={str(outputs['lmcocktail'])!r})")
    forgetless_cmd = [sys.executable, "-m", "forgetless.cli", "merge", "--rule", "average",
                      "--models", *map(str, inputs), "--output", str(outputs["forgetless"])]
    # The engine alone, without the CLI (which imports every subcommand's modules).
    library = (f"import time; from forgetless.merging.engine import merge_checkpoints; start = time.perf_counter(); "
               f"merge_checkpoints({[str(p) for p in inputs]!r}, {weights!r}, {str(outputs['library'])!r}, progress=False); "
               f"print('ENGINE_SECONDS', time.perf_counter() - start)")

    print("runs (one each, same warm page cache):")
    results = {
        "floor": run("floor", floor_command(inputs, outputs["floor"], sizes[0])),
        "forgetless": run("forgetless", forgetless_cmd, {"TQDM_DISABLE": "1"}),
        "library": run("library", [sys.executable, "-c", library]),
        "import_torch": run("import torch", [sys.executable, "-c", "import torch"]),
        "mergekit": run("mergekit", [str(BENCH_VENV / "bin" / "mergekit-yaml"), str(mergekit_config),
                                     str(outputs["mergekit"])]),
        "lmcocktail": run("lm-cocktail", [str(python), "-c", cocktail]),
    }
    compared = subprocess.run([sys.executable, __file__, "--compare", str(outputs["forgetless"]),
                               str(outputs["library"]), str(outputs["mergekit"]), str(outputs["lmcocktail"])],
                              check=True, capture_output=True, text=True)
    diffs = {Path(k).name.removeprefix("out-"): v for k, v in json.loads(compared.stdout.strip().splitlines()[-1]).items()}
    f = results["forgetless"]
    print("\nratios (forgetless / other; < 1 means forgetless is faster or smaller):")
    for other, label in (("mergekit", "mergekit-yaml linear"), ("lmcocktail", "lm-cocktail mix_models")):
        o = results[other]
        print(f"  vs {label:<24} wall {f['wall_s'] / o['wall_s']:.3f}   peak memory {f['peak_rss_mib'] / o['peak_rss_mib']:.3f}"
              f"   (max |difference| of merged weights {diffs[other]:.2e})")
    floor = results["floor"]["wall_s"]
    print(f"  vs read+write floor        wall {f['wall_s'] / floor:.2f}x (CLI: interpreter, every subcommand's imports, merge); "
          f"library call {results['library']['wall_s'] / floor:.2f}x (of which `import torch` alone is "
          f"{results['import_torch']['wall_s'] / floor:.2f}x); merge_checkpoints itself {results['library']['engine_s'] / floor:.2f}x")
    targets = {
        "peak memory <= 1/2 of mergekit": f["peak_rss_mib"] <= 0.5 * results["mergekit"]["peak_rss_mib"],
        "peak memory <= 1/4 of lm-cocktail": f["peak_rss_mib"] <= 0.25 * results["lmcocktail"]["peak_rss_mib"],
        "wall time <= mergekit": f["wall_s"] <= results["mergekit"]["wall_s"],
        "wall time within 3x of the floor (CLI end to end)": f["wall_s"] <= 3 * results["floor"]["wall_s"],
        "wall time within 3x of the floor (merge_checkpoints)": results["library"]["engine_s"] <= 3 * results["floor"]["wall_s"],
    }
    print("targets: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in targets.items()))
    (workdir / "results.json").write_text(json.dumps({"results": results, "max_abs_diff": diffs,
                                                      "targets": targets, "input_bytes": sizes}, indent=2))
    for out in outputs.values():
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
