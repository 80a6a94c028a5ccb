"""Log-likelihood scoring throughput: forgetless's ``score_pairs`` vs lm-eval's ``HFLM``.

Same model (the testbed *small* architecture: Llama d384, 6 layers, vocab 8192,
random init), same requests (the cloze task built from the tiny testbed's held-out
text: every (context, choice) pair, already tokenized, handed to both), same batch
size, measured in one run, alternating the two engines ``--repeats`` times. Prints
the throughput ratio and the largest score difference.

Needs the optional extra: ``bash bench/install_lmeval.sh`` (or ``pip install -e .[lmeval]``).

    python bench/eval_loglik.py [--items 200] [--batch-size 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from forgetless.evaluation.cloze import build_cloze, choice_requests
from forgetless.data.texts import read_texts
from forgetless.evaluation.scoring import score_pairs
from forgetless.testbed.build import build_testbed
from forgetless.testbed.presets import get_preset
from forgetless.models import load_tokenizer


def small_model(vocab: int, bos: int, eos: int, pad: int) -> LlamaForCausalLM:
    """The testbed small preset's architecture, randomly initialized (seed 0)."""
    p = get_preset("small")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=p.hidden_size, intermediate_size=p.intermediate_size,
                         num_hidden_layers=p.num_layers, num_attention_heads=p.num_heads,
                         num_key_value_heads=p.num_heads, max_position_embeddings=1024, hidden_act=p.hidden_act,
                         tie_word_embeddings=True, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    return LlamaForCausalLM(config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200, help="cloze items (4 requests each)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lm_eval.models.huggingface import HFLM

    testbed = build_testbed("tiny")
    tokenizer = load_tokenizer(str(testbed.root / "tokenizer"))
    model = small_model(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    items = build_cloze(read_texts(testbed.general_heldout), n_items=args.items)
    pairs = choice_requests(tokenizer, items)
    tokens = sum(len(c) + len(x) for c, x in pairs)
    hflm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size, device="cpu", logits_cache=True)
    requests = [(("", ""), list(c), list(x)) for c, x in pairs]
    print(f"{len(pairs)} requests, {tokens} tokens, batch {args.batch_size}, {torch.get_num_threads()} threads")
    ours_s, theirs_s, flat_s = [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        theirs = hflm._loglikelihood_tokens(requests, disable_tqdm=True)
        theirs_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        ours = score_pairs(model, pairs, batch_size=args.batch_size, progress=False)
        ours_s.append(time.perf_counter() - start)
        # The same engine without running shared contexts once: what the logits-only-where-scored
        # part alone buys.
        start = time.perf_counter()
        flat = score_pairs(model, pairs, batch_size=args.batch_size, progress=False, share_prefix=False)
        flat_s.append(time.perf_counter() - start)
    diff = max(abs(o.logprob - t[0]) for o, t in zip(ours, theirs))
    flat_diff = max(abs(o.logprob - t[0]) for o, t in zip(flat, theirs))
    greedy_agree = all(o.greedy == t[1] for o, t in zip(ours, theirs))
    best_ours, best_theirs = min(ours_s), min(theirs_s)
    print(f"lm-eval HFLM : {best_theirs:7.2f} s  {tokens / best_theirs:8.0f} tokens/s  (runs: {theirs_s})")
    print(f"forgetless   : {best_ours:7.2f} s  {tokens / best_ours:8.0f} tokens/s  (runs: {ours_s})")
    print(f"forgetless, no prefix sharing: {min(flat_s):7.2f} s  (runs: {flat_s})")
    print(f"ratio (HFLM time / forgetless time): {best_theirs / best_ours:.2f}x; "
          f"without prefix sharing: {best_theirs / min(flat_s):.2f}x")
    print(f"max |logprob difference|: {diff:.2e} (same to 1e-4: {diff <= 1e-4}), without sharing {flat_diff:.2e}; "
          f"greedy flags agree: {greedy_agree}")


if __name__ == "__main__":
    main()
