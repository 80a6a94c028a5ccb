"""Sampling from a model with no context, batched with the KV cache.

Context-free replay (Bansal and Sanghavi, "Context-Free Synthetic Data Mitigates
Forgetting", arXiv 2505.13811) trains on sequences drawn from the frozen base model
p_θ*(· | BOS). Plain NLL on them is an unbiased estimate of KL(p_θ* ‖ p_θ) up to a
constant when they are drawn at temperature 1 with no truncation of the
distribution (top_p = 1), which are the defaults here.

The sampler is a hand-written loop rather than ``model.generate`` for three
reasons: it draws from its own ``torch.Generator`` (a fixed seed gives the same
samples whatever else touched the global RNG), it returns the exact token ids
(the KL estimate must score the sampled ids, not a re-tokenization of their
text), and it stops a batch as soon as every row has emitted EOS.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from tqdm.auto import tqdm
from jinja2 import TemplateError
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from forgetless import special_tokens
from forgetless.kv_cache import reserved_cache
from forgetless.models import capabilities, output_cache
from forgetless.positions import fit_new_tokens

PromptMode = Literal["bos", "chat"]


@dataclass(frozen=True)
class SamplingSettings:
    """How sequences are drawn; written next to the samples so they can be reproduced.

    Attributes:
        num_samples: sequences to draw (N in the paper; **open**, no default there).
        temperature: softmax temperature (T); 1.0 keeps the KL estimate unbiased.
        top_p: nucleus mass kept (1.0 = the full distribution).
        max_new_tokens: tokens generated at most per sequence (L); a sequence that
            reaches it without EOS is marked unfinished.
        seed: seed of the sampler's own generator.
        batch_size: sequences sampled in parallel.
        prompt: ``bos`` (BOS alone) or ``chat`` (an empty user turn through the
            tokenizer's chat template, for chat and reasoning models).
    """

    num_samples: int = 1000
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0
    batch_size: int = 32
    prompt: PromptMode = "bos"

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {self.num_samples}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.prompt not in ("bos", "chat"):
            raise ValueError(f"prompt must be 'bos' or 'chat', got {self.prompt!r}")

    def to_dict(self) -> dict:
        """The settings as a plain dict (for the sidecar file)."""
        return asdict(self)


@dataclass
class Sample:
    """One sampled sequence.

    Attributes:
        prompt_ids: the ids it was conditioned on (e.g. ``[BOS]``).
        token_ids: the generated ids, ending with EOS when ``finished``.
        finished: whether the sequence stopped at EOS (else it hit ``max_new_tokens``).
    """

    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    finished: bool = False


def context_free_prompt(tokenizer: PreTrainedTokenizerBase, mode: PromptMode = "bos") -> list[int]:
    """The ids a context-free sample is conditioned on.

    Args:
        tokenizer: the model's tokenizer (its BOS convention settled: ``forgetless.special_tokens``).
        mode: ``bos``: the start of a sequence alone: BOS, as in the seed paper; for a
            tokenizer without a BOS token, EOS, the document separator of packed
            pretraining (lm-eval's ``prefix_token_id`` makes the same choice).
            ``chat``: an empty user turn rendered with the chat template and its
            generation prompt, what a chat model sees before it answers; the
            convention's BOS goes first unless the template writes its own.

    Raises:
        ValueError: neither BOS nor EOS (``bos``), or no chat template (``chat``).
    """
    if mode == "chat":
        if not tokenizer.chat_template:
            raise ValueError("prompt 'chat' needs a tokenizer with a chat template; use prompt 'bos'")
        try:
            text = tokenizer.apply_chat_template([{"role": "user", "content": ""}], tokenize=False,
                                                 add_generation_prompt=True)
        except TemplateError as err:  # the sandbox's SecurityError and a template's raise_exception are no ValueError
            raise ValueError(f"the chat template of {tokenizer.name_or_path} refused to render an empty user turn "
                             f"({type(err).__name__}: {err}); use prompt 'bos'") from None
        return special_tokens.encode(tokenizer, text)
    if tokenizer.bos_token_id is None and tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to sample from; use prompt 'chat'")
    return special_tokens.context_prefix(tokenizer)


def _next_tokens(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """Draw one token per row from ``logits [B, V]``; returns ``[B]``."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the most likely token always stays).
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def sample_batch(
    model: PreTrainedModel,
    prompts: list[list[int]],
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    generator: torch.Generator,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> list[Sample]:
    """Sample one continuation per prompt, all rows in parallel with the KV cache.

    Prompts of different lengths are left-padded; positions are counted from each
    row's first real token, so a padded row sees exactly what it would alone. A row
    that emits EOS is finished; the loop ends when all rows are.

    Args:
        model: a causal LM (eval mode is the caller's business).
        prompts: ``B`` lists of token ids.
        max_new_tokens: tokens generated at most per row.
        eos_token_id: the id that ends a sequence.
        pad_token_id: the id used for left padding and after EOS.
        generator: the random source (on the model's device).
        temperature: 0 for greedy, else the softmax temperature.
        top_p: nucleus mass kept.

    Returns:
        ``B`` samples, in the order of ``prompts``.
    """
    device = next(model.parameters()).device
    batch, width = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((batch, width), pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros((batch, width), dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, device=device)
        mask[row, width - len(prompt) :] = 1
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
    cache_arg = capabilities(model).cache_arg or "past_key_values"  # the sampler needs a causal LM with a cache
    # Room for the prompt and the whole budget: a step writes its token's keys and values in place
    # (forgetless.kv_cache), the same logits as DynamicCache's copy of the whole cache per step.
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                **{cache_arg: reserved_cache(width + max_new_tokens)})
    cache, logits = output_cache(out), out.logits[:, -1]
    next_position = positions[:, -1:] + 1
    generated = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    lengths = torch.full((batch,), max_new_tokens, dtype=torch.long, device=device)
    for step in range(max_new_tokens):
        token = _next_tokens(logits, temperature, top_p, generator)
        token = token.masked_fill(done, pad_token_id)
        generated[:, step] = token
        is_eos = (token == eos_token_id) & ~done
        lengths = torch.where(is_eos, torch.full_like(lengths, step + 1), lengths)
        done = done | is_eos
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype, device=device)], dim=1)
        out = model(
            input_ids=token[:, None], attention_mask=mask, position_ids=next_position,
            **{cache_arg: cache}, use_cache=True,
        )
        cache, logits = output_cache(out), out.logits[:, -1]
        next_position = next_position + 1
    rows = generated.tolist()
    return [
        Sample(prompt_ids=list(prompts[r]), token_ids=rows[r][: int(lengths[r])], finished=bool(done[r]))
        for r in range(batch)
    ]


def sample_sequences(
    model: PreTrainedModel,
    prompts: list[list[int]],
    settings: SamplingSettings,
    eos_token_id: int,
    pad_token_id: int,
    progress: bool = True,
) -> list[Sample]:
    """Sample one continuation for each prompt, in batches of ``settings.batch_size``.

    The result depends only on the prompts, the model and ``settings`` (seed
    included), not on the global RNG. Batches are cut in prompt order, so the same
    seed with a different batch size gives different (equally valid) samples.
    """
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    samples: list[Sample] = []
    bar = tqdm(total=len(prompts), desc="sampling", unit="seq", disable=not progress, leave=False)
    for start in range(0, len(prompts), settings.batch_size):
        chunk = prompts[start : start + settings.batch_size]
        # Within the model's positions: a 128-position GPT-2 cannot sample 128 tokens after BOS.
        max_new_tokens = fit_new_tokens(model, max(len(p) for p in chunk), settings.max_new_tokens)
        samples.extend(
            sample_batch(model, chunk, max_new_tokens, eos_token_id, pad_token_id, generator,
                         settings.temperature, settings.top_p)
        )
        bar.update(len(chunk))
    bar.close()
    return samples


def generate_context_free(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: SamplingSettings, progress: bool = True
) -> list[Sample]:
    """Draw ``settings.num_samples`` sequences from the model with no context.

    Returns:
        Samples conditioned on ``context_free_prompt(tokenizer, settings.prompt)``.
    """
    prompt = context_free_prompt(tokenizer, settings.prompt)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return sample_sequences(model, [prompt] * settings.num_samples, settings, tokenizer.eos_token_id, pad, progress)


def sample_record(sample: Sample, tokenizer: PreTrainedTokenizerBase, prompt: PromptMode = "bos") -> dict:
    """A context-free sample as a ``text``-format record.

    ``text`` is what training encodes (the convention's BOS, text, EOS). For ``chat`` samples it
    includes the rendered empty user turn, so training sees the sample where the
    model produced it. ``token_ids`` are the exact sampled ids (the KL estimate
    scores these) and ``finished`` says whether the sample ended at EOS; replay
    mixing does not teach EOS after an unfinished sample.
    """
    body = [t for t in sample.token_ids if t != tokenizer.eos_token_id]
    if prompt == "chat":
        # Training adds the convention's BOS back; a BOS the template wrote itself stays in the text
        # (SmolLM2's template opens with <|im_start|>, its BOS token, while its convention adds none).
        prefix = special_tokens.bos_prefix(tokenizer)
        ids = sample.prompt_ids[len(prefix):] if prefix and sample.prompt_ids[:1] == prefix else sample.prompt_ids
        text = tokenizer.decode(ids + body, skip_special_tokens=False)
    else:
        text = tokenizer.decode(body, skip_special_tokens=True)
    return {"text": text, "token_ids": sample.token_ids, "finished": sample.finished}
