"""A forgetting measure that needs no benchmark: the Monte Carlo estimate of KL(p_θ* ‖ p_θ).

From arXiv 2505.13811 (docs/methods.md#kl-estimate): for x drawn from the base model
p_θ* with no context at temperature 1,

    KL(p_θ* ‖ p_θ) = E_x[log p_θ*(x) − log p_θ(x)] = E_x[NLL_θ(x) − NLL_θ*(x)],

so the mean per-sequence NLL difference on held-out context-free samples is an
unbiased estimate. Samples cut at ``max_new_tokens`` (no EOS) are scored as
prefixes; the estimate is then the KL between the two models' distributions of
sequences truncated at that length, a lower bound of the full KL.

The differences are paired (the same x under both models), so the confidence
interval is the paired percentile bootstrap over samples that every difference
from the base gets (``forgetless.bootstrap``; ``forgetless.evaluation.measure`` says why), the same
as ``forgetless eval``'s ``cf_nll`` forgetting. A per-token figure (the summed
difference over the summed tokens, a ratio estimate) is reported alongside, its
interval bootstrapped as a ratio on the same resamples.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from forgetless.data.errors import DataError
from forgetless.data.formats import IGNORE
from forgetless.data.records import read_records
from forgetless.data.text import decode_utf8
from forgetless.bootstrap import DEFAULT_RESAMPLES, bootstrap_difference
from forgetless.replay.generate import Sample
from forgetless.losses import token_nll


@dataclass(frozen=True)
class KLEstimate:
    """KL(p_base ‖ p_model) estimated from samples of the base model.

    Attributes:
        kl: nats per sequence (the estimate of the sequence-level KL).
        ci_low, ci_high: its 95% paired bootstrap interval.
        kl_per_token: nats per generated token (summed difference / summed tokens).
        ci_low_per_token, ci_high_per_token: its 95% paired bootstrap interval.
        nll_model, nll_base: mean NLL per sequence under each model.
        n: number of sequences; tokens: generated tokens scored.
    """

    kl: float
    ci_low: float
    ci_high: float
    kl_per_token: float
    ci_low_per_token: float
    ci_high_per_token: float
    nll_model: float
    nll_base: float
    n: int
    tokens: int

    def to_dict(self) -> dict[str, float]:
        """As a plain dict (for JSON and logs)."""
        return asdict(self)


@torch.no_grad()
def sequence_nll(model: PreTrainedModel, samples: list[Sample], batch_size: int = 32, progress: bool = False) -> torch.Tensor:
    """Per-sequence NLL of the generated ids given their prompts.

    Args:
        model: a causal LM.
        samples: each with ``prompt_ids`` and ``token_ids`` (the scored part).
        batch_size: sequences per forward pass.

    Returns:
        ``[N]`` float64: ``-sum_t log p(token_t | prompt, tokens_<t)`` per sample.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(samples)), key=lambda i: len(samples[i].prompt_ids) + len(samples[i].token_ids))
    result = torch.zeros(len(samples), dtype=torch.float64)
    for start in tqdm(range(0, len(order), batch_size), desc="scoring", unit="batch", disable=not progress, leave=False):
        rows = order[start : start + batch_size]
        seqs = [samples[i].prompt_ids + samples[i].token_ids for i in rows]
        width = max(len(s) for s in seqs)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            p, seq = len(samples[i].prompt_ids), seqs[r]
            ids[r, : len(seq)] = torch.tensor(seq)
            labels[r, p : len(seq)] = torch.tensor(samples[i].token_ids, dtype=torch.long)
            mask[r, : len(seq)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        loss, _ = token_nll(logits, labels.to(device))
        result[torch.tensor(rows)] = loss.sum(dim=1).double().cpu()
    model.train(was_training)
    return result


def estimate_from_nll(
    nll_model: torch.Tensor, nll_base: torch.Tensor, tokens: torch.Tensor, resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> KLEstimate:
    """The KL estimate and its intervals from paired per-sequence NLLs.

    Args:
        nll_model: ``[N]`` NLL of each base sample under the model being judged.
        nll_base: ``[N]`` NLL of the same samples under the base model.
        tokens: ``[N]`` scored tokens per sample.
        resamples: bootstrap resamples; seed: their seed (the result is deterministic).
    """
    n = int(nll_model.numel())
    if n < 2:
        raise ValueError(f"the KL estimate needs at least 2 samples, got {n}")
    model, base = nll_model.double().tolist(), nll_base.double().tolist()
    counts = tokens.double().tolist()
    per_sequence = bootstrap_difference((model, None), (base, None), resamples=resamples, seed=seed)
    per_token = bootstrap_difference((model, counts), (base, counts), resamples=resamples, seed=seed)
    return KLEstimate(
        kl=per_sequence.estimate, ci_low=per_sequence.low, ci_high=per_sequence.high,
        kl_per_token=per_token.estimate, ci_low_per_token=per_token.low, ci_high_per_token=per_token.high,
        nll_model=float(nll_model.double().mean()), nll_base=float(nll_base.double().mean()),
        n=n, tokens=int(tokens.sum()),
    )


def kl_estimate(
    model: PreTrainedModel,
    base: PreTrainedModel,
    samples: list[Sample],
    batch_size: int = 32,
    base_nll: torch.Tensor | None = None,
    progress: bool = False,
) -> KLEstimate:
    """Estimate KL(p_base ‖ p_model) on held-out samples drawn from ``base`` at temperature 1.

    Args:
        model: the fine-tuned model.
        base: the base model the samples were drawn from (unused if ``base_nll`` is given).
        samples: held-out context-free samples (``generate_context_free`` at T=1, top_p=1),
            not the ones trained on.
        batch_size: sequences per forward pass.
        base_nll: ``[N]`` precomputed base NLLs of ``samples`` (training computes them once).

    Returns:
        The estimate, per sequence and per token, with 95% intervals.
    """
    if base_nll is None:
        base_nll = sequence_nll(base, samples, batch_size, progress)
    nll = sequence_nll(model, samples, batch_size, progress)
    tokens = torch.tensor([len(s.token_ids) for s in samples])
    return estimate_from_nll(nll, base_nll, tokens)


def load_samples(path: str | Path, limit: int | None = None) -> list[Sample]:
    """Read samples written by ``forgetless generate`` (records with ``token_ids``).

    The prompt ids come from the sidecar ``PATH.meta.json``.

    Raises:
        DataError: the sidecar is missing, or a record has no list of ``token_ids``.
    """
    path = Path(path)
    meta_path = meta_path_for(path)
    if meta_path.exists() and not meta_path.is_file():  # a FIFO or device would be read without end
        raise DataError(meta_path, None, None, "is not a regular file (a FIFO, device or socket); expected the "
                        "sidecar written by `forgetless generate`")
    if not meta_path.is_file():
        raise DataError(meta_path, None, None, "missing; expected the sidecar written by `forgetless generate`")
    try:
        meta = json.loads(decode_utf8(meta_path.read_bytes(), meta_path))
    except json.JSONDecodeError as err:
        raise DataError(meta_path, f"line {err.lineno}", None, f"expected a JSON object, got invalid JSON ({err.msg})") from None
    except RecursionError:
        raise DataError(meta_path, None, None, "expected a JSON object, got JSON nested too deeply to read") from None
    if not isinstance(meta, dict):
        raise DataError(meta_path, None, None, f"expected a JSON object, got {type(meta).__name__}")
    prompt_ids = meta.get("prompt_ids")
    if not isinstance(prompt_ids, list) or not all(isinstance(t, int) for t in prompt_ids):
        raise DataError(meta_path, None, "prompt_ids", "expected a list of token ids")
    samples = []
    for record in read_records(path)[:limit]:
        ids = record.fields.get("token_ids")
        if not isinstance(ids, list) or not all(isinstance(t, int) for t in ids):
            raise DataError(path, record.where, "token_ids", "expected a list of token ids (written by `forgetless generate`)")
        samples.append(Sample(prompt_ids=list(prompt_ids), token_ids=ids, finished=bool(record.fields.get("finished"))))
    temperature, top_p = meta.get("settings", {}).get("temperature"), meta.get("settings", {}).get("top_p")
    if temperature != 1.0 or top_p != 1.0:
        # Not an error: the number is still a divergence, just not the unbiased KL estimate.
        warnings.warn(f"{path}: samples drawn at temperature={temperature}, top_p={top_p}; the KL estimate is "
                      "unbiased only for temperature 1 and top_p 1", stacklevel=2)
    return samples


def meta_path_for(path: str | Path) -> Path:
    """The sidecar of a samples file: ``OUT.jsonl`` -> ``OUT.meta.json``."""
    path = Path(path)
    return path.with_name((path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name) + ".meta.json")
