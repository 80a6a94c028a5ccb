"""Agreement: forgetless's LM-Cocktail losses, weights and merged model against lm-cocktail 0.0.4.

On the same tiny checkpoints (a base, a fine-tuned model, two peers, float32) and the
same five target examples, it computes:

1. the reference's per-model losses (its own ``preprocess_data_for_llm`` + ``llm_loss``,
   the two functions ``compute_weights`` runs for decoders) and weights
   (``compute_weights`` itself), over the paper's candidates: the base and the peers;
2. forgetless's, with ``loss="lm-cocktail"`` (the reference's convention) and with
   forgetless's default ``loss="tokens"`` (pooled per token over BOS + text + EOS: a
   different number, shown to say why the option exists);
3. the merged model both ways: the reference's two calls (``mix_models_with_data`` over
   base and peers, then ``mix_models`` with the fine-tuned model at α) against
   ``Cocktail(...)`` + ``merge_checkpoints``.

It runs twice: with the testbed's tokenizer (no BOS added, PAD its own token) and with
one that adds BOS and pads with EOS (as Llama-style tokenizers set up by forgetless do),
since the reference's label mask and attention mask depend on both. Prints the largest
absolute difference of each quantity; exits 1 if a loss or weight differs by more than
1e-5.

Setup:  bash bench/merge_setup.sh            (bench/.venv-merge with lm-cocktail 0.0.4)
Run:    bench/.venv-merge/bin/python bench/cocktail_agreement.py [--workdir /tmp/forgetless-cocktail-agreement]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this worktree's forgetless, not another install's
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

TOLERANCE = 1e-5
EXAMPLES = [
    {"input": "Sum 3 and 4.\n", "output": "Answer: 7"},
    {"input": "Sum 12 and 30.\n", "output": "Answer: 42"},
    {"input": "Sum 5 and 5.\n", "output": "Answer: 10"},
    {"input": "Sum 21 and 1.\n", "output": "Answer: 22"},
    {"input": "Sum 8 and 9, and explain the carry.\n", "output": "Answer: 17, carrying one to the tens."},
]
GENERAL = ["In the beginning was the word, and the word was with the model.",
           "The quick brown fox jumps over the lazy dog 0123456789 times.",
           "User: hello\nAssistant: hi there\nSystem: be brief"]
PEER_TEXT = ["Sort 3 1 2: 1 2 3", "Sort 9 4 7: 4 7 9", "Recall the word: apple. The word was apple."]


def build_tokenizer(out: Path, bos_and_eos_pad: bool) -> object:
    """The testbed's byte-level BPE; optionally with BOS added by ``encode`` and PAD = EOS."""
    from tokenizers import processors

    from forgetless.testbed.tokenizer import train_tokenizer

    corpus = GENERAL * 20 + PEER_TEXT * 20 + [e["input"] + " " + e["output"] for e in EXAMPLES] * 20
    tokenizer = train_tokenizer(corpus, vocab_size=400)
    if bos_and_eos_pad:
        backend = tokenizer.backend_tokenizer
        bos = tokenizer.bos_token
        backend.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                          special_tokens=[(bos, tokenizer.bos_token_id)]),
        ])
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(out)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(out))


def train_briefly(model: torch.nn.Module, tokenizer: object, texts: list[str], steps: int, seed: int) -> None:
    """A few Adam steps on ``texts`` so the models' losses differ as real specialists' do."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        text = texts[step % len(texts)]
        ids = torch.tensor([[*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]])
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def build_models(workdir: Path, bos_and_eos_pad: bool) -> dict[str, Path]:
    """base, finetuned (on the target examples), peer-sort, peer-recall: float32 Llamas, tied embeddings."""
    from transformers import LlamaConfig, LlamaForCausalLM

    workdir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(workdir / "tokenizer", bos_and_eos_pad)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    base = LlamaForCausalLM(config)
    train_briefly(base, tokenizer, GENERAL, 30, seed=0)
    plans = {"base": ([], 0), "finetuned": ([e["input"] + " " + e["output"] for e in EXAMPLES], 60),
             "peer-sort": (PEER_TEXT[:2], 40), "peer-recall": (PEER_TEXT[2:], 40)}
    paths = {}
    for name, (texts, steps) in plans.items():
        model = LlamaForCausalLM(config)
        model.load_state_dict(base.state_dict())
        if steps:
            train_briefly(model, tokenizer, texts, steps, seed=len(name))
        path = workdir / name
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths[name] = path
    return paths


def reference_losses_and_weights(candidates: list[Path], temperature: float) -> tuple[list[float], list[float]]:
    """lm-cocktail 0.0.4: per-model losses (the functions compute_weights calls) and compute_weights' weights."""
    from LM_Cocktail.utils import compute_weights, get_model_param_list, llm_loss, load_model, preprocess_data_for_llm
    from transformers import AutoTokenizer

    model = load_model(str(candidates[0]), model_type="decoder")
    tokenizer = AutoTokenizer.from_pretrained(str(candidates[0]), trust_remote_code=True)
    params = get_model_param_list([str(p) for p in candidates], model_type="decoder")
    data = preprocess_data_for_llm(EXAMPLES, tokenizer, device=torch.device("cpu"))  # batch 2, length 2048: defaults
    losses = []
    with torch.no_grad():
        for state in params:
            model.load_state_dict(state)
            losses.append(llm_loss(model, data))
    weights = compute_weights(model, tokenizer, params, "decoder", EXAMPLES, temperature=temperature)
    return losses, weights


def reference_merge(paths: dict[str, Path], alpha: float, temperature: float, out: Path) -> Path:
    """The paper's recipe with lm-cocktail's two calls: mix base and peers by data, then mix with the fine-tuned."""
    from LM_Cocktail import mix_models, mix_models_with_data

    mixed = out.with_name(out.name + "-others")
    mix_models_with_data([str(paths["base"]), str(paths["peer-sort"]), str(paths["peer-recall"])], "decoder",
                         EXAMPLES, temperature=temperature, output_path=str(mixed))
    mix_models([str(paths["finetuned"]), str(mixed)], "decoder", weights=[alpha, 1 - alpha], output_path=str(out))
    return out


def max_param_difference(a: Path, b: Path) -> float:
    from forgetless.merging.checkpoint import Checkpoint

    ca, cb = Checkpoint(a), Checkpoint(b)
    names = sorted(set(ca.tensors) & set(cb.tensors))
    return max(float((ca.read(n).double() - cb.read(n).double()).abs().max()) for n in names)


def run_case(workdir: Path, bos_and_eos_pad: bool, alpha: float, temperature: float) -> dict[str, float]:
    from forgetless.merging.cocktail import Cocktail, model_losses
    from forgetless.merging.engine import merge_checkpoints

    paths = build_models(workdir, bos_and_eos_pad)
    examples = workdir / "examples.jsonl"
    examples.write_text("".join(json.dumps(e) + "\n" for e in EXAMPLES))
    order = [paths["base"], paths["finetuned"], paths["peer-sort"], paths["peer-recall"]]
    candidates = [order[0], order[2], order[3]]

    ref_losses, ref_weights = reference_losses_and_weights(candidates, temperature)
    ours = Cocktail(examples, finetuned=1, alpha=alpha, temperature=temperature, loss="lm-cocktail").coefficients(order)
    our_losses = [ours.info["losses"][k] for k in (0, 2, 3)]
    our_weights = [ours.info["cocktail_weights"][k] for k in (0, 2, 3)]
    # forgetless's own format for its default loss: prompt + completion, the same text as the reference's.
    pc = workdir / "examples-pc.jsonl"
    pc.write_text("".join(json.dumps({"prompt": e["input"], "completion": " " + e["output"]}) + "\n" for e in EXAMPLES))
    tokens = Cocktail(pc, finetuned=1, alpha=alpha, temperature=temperature).coefficients(order)
    token_losses = [tokens.info["losses"][k] for k in (0, 2, 3)]
    token_weights = [tokens.info["cocktail_weights"][k] for k in (0, 2, 3)]
    # The fine-tuned model's own loss, only to show it is the lowest (it is outside the paper's softmax).
    ft_loss = model_losses([order[1]], examples, 5, "lm-cocktail")[0]

    ref_out = reference_merge(paths, alpha, temperature, workdir / "lmcocktail-merged")
    our_out = merge_checkpoints(order, ours.values, workdir / "forgetless-merged", config_from=1, overwrite=True,
                                progress=False)
    diff = lambda a, b: max(abs(x - y) for x, y in zip(a, b))  # noqa: E731
    result = {
        "loss_max_abs_diff": diff(ref_losses, our_losses),
        "weight_max_abs_diff": diff(ref_weights, our_weights),
        "tokens_convention_loss_max_abs_diff": diff(ref_losses, token_losses),
        "tokens_convention_weight_max_abs_diff": diff(ref_weights, token_weights),
        "merged_param_max_abs_diff": max_param_difference(ref_out, our_out),
    }
    label = "BOS added, PAD = EOS" if bos_and_eos_pad else "no BOS, own PAD token"
    print(f"\n== tokenizer: {label}; candidates base, peer-sort, peer-recall; T = {temperature:g}, alpha = {alpha:g}")
    print(f"   fine-tuned model's own loss (outside the softmax): {ft_loss:.6f}")
    print(f"   {'model':<12} {'lm-cocktail L':>14} {'forgetless L':>14} {'lm-cocktail w':>14} {'forgetless w':>14}"
          f" {'tokens L':>10} {'tokens w':>10}")
    for i, name in enumerate(("base", "peer-sort", "peer-recall")):
        print(f"   {name:<12} {ref_losses[i]:>14.7f} {our_losses[i]:>14.7f} {ref_weights[i]:>14.7f} "
              f"{our_weights[i]:>14.7f} {token_losses[i]:>10.5f} {token_weights[i]:>10.5f}")
    for key, value in result.items():
        print(f"   {key:<40} {value:.3e}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/forgetless-cocktail-agreement")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=5.0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models; a second thread only adds spin-waiting on a shared machine
    import LM_Cocktail  # noqa: F401  (fails here, with a clear hint, outside the bench venv)

    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    results = {label: run_case(workdir / label, flag, args.alpha, args.temperature)
               for label, flag in (("no-bos", False), ("bos-eos-pad", True))}
    worst = max(max(r["loss_max_abs_diff"], r["weight_max_abs_diff"]) for r in results.values())
    print(f"\nlargest loss/weight difference against lm-cocktail 0.0.4 compute_weights: {worst:.3e} "
          f"({'within' if worst <= TOLERANCE else 'OVER'} {TOLERANCE:g})")
    if args.json:
        from forgetless.atomic import write_json

        write_json(args.json, {"tolerance": TOLERANCE, "cases": results, "max_abs_diff": worst})
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
