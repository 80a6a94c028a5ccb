"""A tiny model fitted to continue given prompts with given targets: generations that exercise answer extraction."""

from __future__ import annotations

import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from forgetless.data.formats import encode_prompt
from tests.conftest import make_model


def fit_continuations(tokenizer: PreTrainedTokenizerFast, prompts: list[str], targets: list[str],
                      steps: int = 150) -> LlamaForCausalLM:
    """The fixture's tiny Llama after ``steps`` full-batch Adam steps on ``BOS + prompt -> target + EOS``
    (about a second for a dozen pairs): its greedy completion of each prompt is then its target."""
    model = make_model(tokenizer, seed=0)
    eos = [tokenizer.eos_token_id]
    pairs = [(encode_prompt(tokenizer, p), tokenizer(t, add_special_tokens=False)["input_ids"] + eos)
             for p, t in zip(prompts, targets)]
    length = max(len(a) + len(b) for a, b in pairs)
    ids = torch.full((len(pairs), length), tokenizer.pad_token_id)
    labels, mask = torch.full_like(ids, -100), torch.zeros_like(ids)
    for i, (prompt, target) in enumerate(pairs):
        ids[i, : len(prompt) + len(target)] = torch.tensor(prompt + target)
        labels[i, len(prompt) : len(prompt) + len(target)] = torch.tensor(target)
        mask[i, : len(prompt) + len(target)] = 1
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
