"""Context-free sampling throughput: forgetless's batched sampler vs ``model.generate`` one sequence at a time.

Same model (the testbed *small* architecture: Llama d384, 6 layers, vocab 8192,
random init, seed 0), same settings (from BOS, temperature 1, top_p 1, no top-k,
``--max-new-tokens`` tokens), measured in one run. The baseline is what a user would
otherwise write: a loop of ``model.generate(do_sample=True)`` calls, one sequence
each. ``model.generate`` on a batch of the same size is printed too, as a second
reference. Throughput is generated tokens per second (EOS counted, padding not).

    python bench/generate_throughput.py [--batch-size 32] [--max-new-tokens 128] [--sequential 8] [--threads 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from forgetless.replay.generate import SamplingSettings, sample_sequences
from forgetless.testbed.presets import get_preset

BOS, EOS, PAD = 1, 2, 0


def small_model() -> LlamaForCausalLM:
    """The testbed small preset's architecture, randomly initialized (seed 0)."""
    p = get_preset("small")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=p.vocab_size, hidden_size=p.hidden_size, intermediate_size=p.intermediate_size,
                         num_hidden_layers=p.num_layers, num_attention_heads=p.num_heads,
                         num_key_value_heads=p.num_heads, max_position_embeddings=1024, hidden_act=p.hidden_act,
                         tie_word_embeddings=True, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    return LlamaForCausalLM(config).eval()


def generated_tokens(rows: torch.Tensor) -> int:
    """Tokens up to and including the first EOS of each row of ``[B, L]`` generated ids."""
    total = 0
    for row in rows.tolist():
        total += row.index(EOS) + 1 if EOS in row else len(row)
    return total


@torch.no_grad()
def hf_generate(model: LlamaForCausalLM, batch: int, max_new_tokens: int) -> int:
    """One ``model.generate`` call on ``batch`` BOS prompts; returns the generated tokens."""
    ids = torch.full((batch, 1), BOS, dtype=torch.long)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                         top_p=1.0, top_k=0, max_new_tokens=max_new_tokens, eos_token_id=EOS, pad_token_id=PAD)
    return generated_tokens(out[:, 1:])


def main() -> None:
    """Measure and print tokens/s of each engine and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--sequential", type=int, default=8, help="sequences sampled one at a time for the baseline")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds, alternating the engines; the best of each is kept")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = small_model()
    settings = SamplingSettings(num_samples=args.batch_size, max_new_tokens=args.max_new_tokens,
                                batch_size=args.batch_size, seed=0)
    torch.manual_seed(0)
    hf_generate(model, 2, 4)  # warm-up of both paths
    sample_sequences(model, [[BOS]] * 2, SamplingSettings(num_samples=2, max_new_tokens=4), EOS, PAD, progress=False)

    # Alternate the engines and keep each one's best round: the machine is shared, and
    # the best round is the least disturbed measurement of each.
    sequential = ours = hf_batched = 0.0
    for _ in range(args.repeats):
        start = time.perf_counter()
        tokens = sum(hf_generate(model, 1, args.max_new_tokens) for _ in range(args.sequential))
        sequential = max(sequential, tokens / (time.perf_counter() - start))

        start = time.perf_counter()
        samples = sample_sequences(model, [[BOS]] * args.batch_size, settings, EOS, PAD, progress=False)
        ours = max(ours, sum(len(s.token_ids) for s in samples) / (time.perf_counter() - start))

        start = time.perf_counter()
        hf_batched = max(hf_batched, hf_generate(model, args.batch_size, args.max_new_tokens) / (time.perf_counter() - start))

    print(f"model: testbed small architecture (d384, L6, vocab 8192, random init); threads {torch.get_num_threads()}; "
          f"{args.max_new_tokens} new tokens per sequence; best of {args.repeats} alternating rounds")
    print(f"model.generate, one sequence at a time ({args.sequential} seqs): {sequential:8.1f} tokens/s")
    print(f"model.generate, batch {args.batch_size}:                   {hf_batched:8.1f} tokens/s")
    print(f"forgetless sample_sequences, batch {args.batch_size}:      {ours:8.1f} tokens/s")
    print(f"ratio forgetless batched / one-at-a-time generate: {ours / sequential:.2f}x")
    print(f"ratio forgetless batched / batched generate:       {ours / hf_batched:.2f}x")


if __name__ == "__main__":
    main()
