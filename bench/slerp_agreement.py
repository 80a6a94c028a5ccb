"""Agreement: ``forgetless merge --rule slerp`` against ``mergekit-yaml`` (merge_method slerp,
mergekit 0.1.5) on the same two checkpoints, the same t and the same base (the first model).

Two pairs of float32 Llamas (untied embeddings, a byte-level BPE tokenizer trained here):

- ``independent``: two random initialisations (seeds 0 and 1). Their matrices are nearly
  orthogonal (the spherical branch); their norm weights start as ones in both (colinear: lerp).
- ``finetuned``: the second model is the first plus noise, scaled per tensor so that the
  cosines between the two copies spread from 0.99 to 0.99999, across mergekit's 0.9995
  threshold (as a fine-tuned model sits near its base, where slerp mostly falls back to lerp).

For each pair and each t it prints, per tensor, the cosine, the branch forgetless took, the
largest absolute difference between the two tools' merged tensors and each tool's largest
difference from the formula evaluated in float64 throughout, then the wall time of each
command (one subprocess each, run after a warm-up read of the inputs) and their ratio. Exits 1
if a tensor differs by more than TOLERANCE (a tensor where the tools took different branches
would differ by far more). A cosine within 1e-6 of the threshold, where float32 and float64
sums may decide differently, is marked.

Setup:  bash bench/merge_setup.sh            (bench/.venv-merge with mergekit 0.1.5)
Run:    .venv/bin/python bench/slerp_agreement.py [--workdir /tmp/forgetless-slerp-agreement] [--hidden 512]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this worktree's forgetless, not another install's
BENCH_VENV = ROOT / "bench" / ".venv-merge"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

TOLERANCE = 1e-6  # float32 merged weights of scale ~0.02-1: a few ulps (mergekit sums in float32)
CORPUS = ["In the beginning was the word, and the word was with the model.",
          "The quick brown fox jumps over the lazy dog 0123456789 times.",
          "Sort 3 1 2: 1 2 3", "Sum 12 and 30.\nAnswer: 42"]


def build_pair(workdir: Path, hidden: int, layers: int, finetuned: bool) -> tuple[Path, Path]:
    """Two float32 Llama checkpoints with a shared tokenizer (see the module docstring for the two kinds)."""
    from safetensors.torch import load_file, save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from forgetless.testbed.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(CORPUS * 20, vocab_size=400)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 11 // 4,
                         num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                         num_key_value_heads=max(1, hidden // 64), max_position_embeddings=512,
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    paths = (workdir / "first", workdir / "second")
    for seed, path in enumerate(paths):
        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
    if finetuned:
        first = load_file(str(paths[0] / "model.safetensors"))
        generator = torch.Generator().manual_seed(1)
        names = sorted(first)
        second = {}
        for i, name in enumerate(names):
            tensor = first[name]
            # relative noise r gives cos ≈ 1/sqrt(1 + r²): r from 0.14 (cos 0.99) to 0.0045 (cos 0.99999)
            rel = 10 ** (math.log10(0.14) + (math.log10(0.0045) - math.log10(0.14)) * i / max(1, len(names) - 1))
            noise = torch.randn(tensor.shape, generator=generator)
            second[name] = tensor + noise * (rel * float(tensor.norm()) / float(noise.norm()))
        save_file(second, str(paths[1] / "model.safetensors"), metadata={"format": "pt"})
    return paths


def run(command: list[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of ``command`` (its output shown only if it fails)."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write((done.stdout + done.stderr)[-4000:])
        raise SystemExit(f"{command[0]} failed with exit code {done.returncode}")
    return wall


def exact(t: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The formula in float64 throughout (sums, angle, combination): the yardstick for both tools."""
    x, y = a.double(), b.double()
    d = max(-1.0, min(1.0, float((x.flatten() / x.norm()) @ (y.flatten() / y.norm()))))
    if abs(d) > 0.9995:
        return (1 - t) * x + t * y
    omega = math.acos(d)
    return (math.sin((1 - t) * omega) * x + math.sin(t * omega) * y) / math.sin(omega)


def compare(first: Path, second: Path, ours: Path, theirs: Path, t: float) -> list[dict[str, object]]:
    """Per float tensor: cosine, forgetless's branch, max |forgetless − mergekit|, and each one's
    max |difference| from the float64 formula."""
    from forgetless.merging.checkpoint import Checkpoint
    from forgetless.merging.slerp import DOT_THRESHOLD, cosine

    a, b, mine, other = (Checkpoint(p) for p in (first, second, ours, theirs))
    record = json.loads((ours / "forgetless-merge.json").read_text())
    lerp = set(record["lerp_fallback_tensors"])
    rows = []
    for name in sorted(a.tensors):
        d = cosine(a.read(name).float(), b.read(name).float())
        diff = float((mine.read(name).double() - other.read(name).double()).abs().max())
        reference = exact(t, a.read(name), b.read(name))
        rows.append({"tensor": name, "cosine": d, "branch": "lerp" if name in lerp else "slerp",
                     "max_abs_diff": diff, "near_threshold": abs(abs(d) - DOT_THRESHOLD) < 1e-6,
                     "forgetless_vs_float64": float((mine.read(name).double() - reference).abs().max()),
                     "mergekit_vs_float64": float((other.read(name).double() - reference).abs().max())})
    return rows


def run_case(workdir: Path, label: str, hidden: int, layers: int, t: float) -> dict[str, object]:
    first, second = build_pair(workdir, hidden, layers, finetuned=label == "finetuned")
    for path in (first, second):  # the same warm page cache for both tools
        subprocess.run(["cat", *map(str, path.glob("*.safetensors"))], stdout=subprocess.DEVNULL, check=True)
    ours, theirs = workdir / "forgetless", workdir / "mergekit"
    config = workdir / "mergekit-slerp.yml"
    config.write_text(json.dumps({  # JSON is YAML; mergekit's own slerp example, without layer slices
        "merge_method": "slerp", "base_model": str(first), "dtype": "float32",
        "models": [{"model": str(first)}, {"model": str(second)}], "parameters": {"t": t},
    }))
    walls = {
        "forgetless": run([sys.executable, "-m", "forgetless.cli", "merge", "--rule", "slerp", "--t", str(t),
                           "--models", str(first), str(second), "--output", str(ours), "--overwrite"],
                          {"TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT / "src")}),
        "mergekit": run([str(BENCH_VENV / "bin" / "mergekit-yaml"), str(config), str(theirs), "--quiet"]),
    }
    rows = compare(first, second, ours, theirs, t)
    size = sum(f.stat().st_size for f in first.glob("*.safetensors"))
    print(f"\n== {label}, t = {t:g}: {len(rows)} tensors, {size / 1e6:.1f} MB per checkpoint (float32)")
    print(f"   {'tensor':<48} {'cosine':>10} {'branch':>6} {'max |diff|':>11} {'ours-f64':>10} {'mk-f64':>10}")
    for row in rows:
        print(f"   {row['tensor']:<48} {row['cosine']:>10.6f} {row['branch']:>6} {row['max_abs_diff']:>11.3e}"
              f" {row['forgetless_vs_float64']:>10.2e} {row['mergekit_vs_float64']:>10.2e}"
              + ("  (at the threshold)" if row["near_threshold"] else ""))
    worst = max(float(r["max_abs_diff"]) for r in rows)  # type: ignore[arg-type]
    ours_f64 = max(float(r["forgetless_vs_float64"]) for r in rows)  # type: ignore[arg-type]
    theirs_f64 = max(float(r["mergekit_vs_float64"]) for r in rows)  # type: ignore[arg-type]
    print(f"   from the float64 formula: forgetless {ours_f64:.3e}, mergekit {theirs_f64:.3e}")
    print(f"   largest |difference| {worst:.3e}; wall forgetless {walls['forgetless']:.2f} s, "
          f"mergekit {walls['mergekit']:.2f} s, ratio {walls['forgetless'] / walls['mergekit']:.3f}")
    shutil.rmtree(ours, ignore_errors=True)
    shutil.rmtree(theirs, ignore_errors=True)
    return {"max_abs_diff": worst, "walls": walls, "rows": rows, "bytes_per_checkpoint": size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/forgetless-slerp-agreement")
    parser.add_argument("--hidden", type=int, default=512, help="hidden size (512: ~60 MB per checkpoint)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--t", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if not (BENCH_VENV / "bin" / "mergekit-yaml").is_file():
        raise SystemExit(f"{BENCH_VENV}/bin/mergekit-yaml not found: run `bash bench/merge_setup.sh` first")
    torch.set_num_threads(1)
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    results = {f"{label}@t={t:g}": run_case(workdir / f"{label}-{t:g}", label, args.hidden, args.layers, t)
               for label in ("independent", "finetuned") for t in args.t}
    worst = max(float(r["max_abs_diff"]) for r in results.values())  # type: ignore[arg-type]
    ratios = [r["walls"]["forgetless"] / r["walls"]["mergekit"] for r in results.values()]  # type: ignore[index]
    print(f"\nlargest |difference| against mergekit 0.1.5 slerp: {worst:.3e} "
          f"({'within' if worst <= TOLERANCE else 'OVER'} {TOLERANCE:g}); wall-time ratio forgetless/mergekit "
          f"{min(ratios):.3f}-{max(ratios):.3f} (whole commands, interpreter start included)")
    if args.json:
        from forgetless.atomic import write_json

        write_json(args.json, {"tolerance": TOLERANCE, "cases": results, "max_abs_diff": worst})
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
