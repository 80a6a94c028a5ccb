"""Write replay data and its settings sidecar: what ``forgetless generate`` does, as a library function.

The study makes its replay and KL samples through ``generate_replay_data`` too, so the
files it trains on are exactly what a user gets from the command.
"""

from __future__ import annotations

import time
from typing import Any

import torch

import forgetless
from forgetless.atomic import write_json, write_jsonl
from forgetless.models import load_model
from forgetless.prompting import uses_chat
from forgetless.special_tokens import adds_bos
from forgetless.replay.contextual import contextual_completions, read_prompts
from forgetless.replay.corpus import corpus_slice
from forgetless.replay.generate import SamplingSettings, context_free_prompt, generate_context_free, sample_record
from forgetless.replay.kl_estimate import meta_path_for


def load_for_sampling(model_spec: str, trust_remote_code: bool = False, add_bos: str = "auto",
                      chat_template: str = "auto") -> tuple[Any, Any, str]:
    """The model (fp32, on the GPU when there is one), its tokenizer (BOS convention and prompt format settled)
    and its path."""
    model, tokenizer, path = load_model(model_spec, trust_remote_code, add_bos=add_bos, chat_template=chat_template)
    return (model.cuda() if torch.cuda.is_available() else model), tokenizer, path


def generate_replay_data(output: str, model: str | None = None, prompts: str | None = None,
                         corpus: str | None = None, num_samples: int | None = None, temperature: float = 1.0,
                         top_p: float = 1.0, max_new_tokens: int = 128, seed: int = 0, batch_size: int = 32,
                         prompt: str = "bos", max_chars: int = 512, corpus_order: str = "random",
                         trust_remote_code: bool = False, add_bos: str = "auto",
                         chat_template: str = "auto") -> dict[str, Any]:
    """Write replay data to ``output`` and its settings to the sidecar: what ``forgetless generate`` does.

    Context-free samples of ``model`` (no ``prompts``), its completions of ``prompts``
    (contextual), or a slice of ``corpus`` (no model). The defaults are the command's.

    Returns:
        The sidecar's record (kind, source, settings, record count, seconds).

    Raises:
        ValueError: no ``model`` without ``corpus``, or both ``prompts`` and ``corpus``.
    """
    if prompts and corpus:
        raise ValueError("prompts and corpus: give one source of replay data, not both")
    start = time.time()
    meta: dict[str, Any] = {"forgetless_version": forgetless.__version__}
    if corpus:
        count = num_samples or 1000
        records = corpus_slice(corpus, count, max_chars, seed, corpus_order)
        meta.update(kind="corpus", source=corpus, settings={"num_samples": count,
                    "max_chars": max_chars, "seed": seed, "order": corpus_order})
    else:
        if not model:
            raise ValueError("--model is required (except with --corpus)")
        lm, tokenizer, path = load_for_sampling(model, trust_remote_code, add_bos, chat_template)
        if prompts:
            chosen = read_prompts(prompts, num_samples, seed)
            settings = SamplingSettings(num_samples=len(chosen), temperature=temperature, top_p=top_p,
                                        max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size)
            records = contextual_completions(lm, tokenizer, chosen, settings)
            meta.update(kind="contextual", prompts=prompts, dropped_empty=len(chosen) - len(records))
        else:
            settings = SamplingSettings(num_samples=num_samples or 1000, temperature=temperature,
                                        top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                                        batch_size=batch_size, prompt=prompt)
            samples = generate_context_free(lm, tokenizer, settings)
            records = [sample_record(s, tokenizer, settings.prompt) for s in samples]
            prompt_ids = context_free_prompt(tokenizer, settings.prompt)
            meta.update(kind="context_free", prompt_ids=prompt_ids, prompt_text=tokenizer.decode(prompt_ids),
                        generated_tokens=sum(len(s.token_ids) for s in samples),
                        finished_fraction=sum(s.finished for s in samples) / len(samples))
        meta.update(model=path, settings=settings.to_dict(), add_bos=adds_bos(tokenizer),
                    chat_template=uses_chat(tokenizer))
    meta.update(records=len(records), seconds=time.time() - start)
    write_jsonl(output, records)
    write_json(meta_path_for(output), meta)
    return meta
