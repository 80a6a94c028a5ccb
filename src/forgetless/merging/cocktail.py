"""LM-Cocktail (Xiao et al., arXiv 2311.13534): weights from loss on a few target examples.

The paper's recipe (and lm-cocktail 0.0.4's two calls, ``mix_models_with_data`` then
``mix_models``) has two steps. The *other* models i (the base and peer-domain
specialists) are weighted by w = softmax(−L/T), L_i being model i's loss on about five
examples of the target domain and T a temperature (5); the fine-tuned model then enters
only through α:

    θ = α θ_ft + (1 − α) Σ_i w_i θ_i                       (variant ``paper``, the default)

Named variants:

- ``mono-specialist``: no peers, no examples: θ = α θ_ft + (1 − α) θ_base (the paper's
  LM-Cocktail_mono; numerically the WiSE-FT interpolation).
- ``without-finetuning``: only few-shot examples and existing models, no fine-tuned
  model at all: θ = Σ_i w_i θ_i over every given model, no α.
- ``candidates="all"`` (forgetless's earlier form, *not* the paper's): the fine-tuned
  model also enters the softmax, θ = α θ_ft + (1 − α) Σ_k w_k θ_k over every model.
  Having by far the lowest target loss, it takes most of the softmax and then α on top.

How L is averaged is set by ``loss`` (``forgetless.merging.cocktail_loss``): forgetless's
pooled per-token code length, or lm-cocktail's per-batch convention.

``model_kind="embedding"`` is the paper's encoder case (merged BGE models, evaluated on
MTEB): the models are encoders (``AutoModel``), L is lm-cocktail's contrastive loss on
(query, positive, negatives) examples (``forgetless.merging.embedding_loss``) with the
models' own sentence-transformers pooling, and the output carries the fine-tuned model's
sentence-transformers files (``forgetless.merging.st_format``). The weights, α and the
variants are the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from forgetless.merging.base import Coefficients, MergeRule, RuleContext, RuleParams
from forgetless.merging.errors import MergeError
from forgetless.merging.interpolate import check_alpha
from forgetless.merging.st_format import DEFAULT_NUM_NEGATIVES, resolve_pooling

Variant = Literal["paper", "mono-specialist", "without-finetuning"]
Candidates = Literal["others", "all"]
# The two conventions of ``forgetless.merging.cocktail_loss``; named here so that building
# the ``merge`` parser does not import that module (it needs transformers).
LossConvention = Literal["tokens", "lm-cocktail"]
ModelKind = Literal["causal", "embedding"]
PoolingParam = Literal["cls", "mean"]
DEFAULT_ALPHA = 0.5
DEFAULT_TEMPERATURE = 5.0  # the paper's and lm-cocktail's
DEFAULT_NUM_EXAMPLES = 5  # "about five examples" in the paper


def cocktail_weights(losses: list[float], temperature: float) -> list[float]:
    """softmax(−L/T) over candidates: lower loss on the target examples, larger weight.

    Args:
        losses: L_k, the loss of each candidate on the target examples, shape [K].
        temperature: T > 0; large T flattens the weights toward uniform.
    """
    if not math.isfinite(temperature) or temperature <= 0:
        raise MergeError(f"temperature={temperature}: expected a positive number (LM-Cocktail uses 5)")
    import torch  # imported here: the registry imports this module for `forgetless --help`, which needs no torch

    return torch.softmax(-torch.tensor(losses, dtype=torch.float64) / temperature, dim=0).tolist()


def mix_coefficients(n_models: int, candidates: list[int], weights: list[float], finetuned: int | None,
                     alpha: float) -> list[float]:
    """c_k of θ = α θ_ft + (1 − α) Σ_i w_i θ_i, one per model.

    A model that is neither a candidate nor the fine-tuned one gets exactly 0; at α = 1
    every candidate's term is exactly 0 and the fine-tuned one's exactly 1, so the
    engine returns the fine-tuned tensors bit for bit.

    Args:
        n_models: how many models are merged.
        candidates: indices of the models in the softmax, shape [K].
        weights: w_i of those candidates, shape [K].
        finetuned: index of the fine-tuned model, or None (no α term).
        alpha: share of the fine-tuned model (ignored when ``finetuned`` is None).
    """
    share = 1.0 if finetuned is None else 1.0 - alpha
    values = [0.0] * n_models
    for index, weight in zip(candidates, weights):
        values[index] = share * weight
    if finetuned is not None:
        values[finetuned] += alpha
    return values


def model_losses(models: list[Path], examples: Path, num_examples: int, loss: LossConvention = "tokens",
                 trust_remote_code: bool = False) -> list[float]:
    """L_k: each model's loss on the first ``num_examples`` target examples, loading one
    model at a time, with the tokenizer of the first model (as lm-cocktail does)."""
    # imported here: the merge flags are built from this module, without transformers
    from forgetless.merging.cocktail_loss import example_pairs, reference_batches, reference_loss
    from forgetless.data.texts import read_texts
    from forgetless.merging.scoring import load_for_scoring, mean_loss
    from forgetless.models import load_tokenizer

    tokenizer = load_tokenizer(str(models[0]), trust_remote_code)
    if loss == "lm-cocktail":
        batches = reference_batches(tokenizer, example_pairs(examples, num_examples))
    else:
        texts = read_texts(examples, "example")[:num_examples]
    losses = []
    for path in models:
        model = load_for_scoring(path, trust_remote_code)
        losses.append(reference_loss(model, batches) if loss == "lm-cocktail" else mean_loss(model, tokenizer, texts))
        del model
    return losses


def embedding_model_losses(models: list[Path], examples: Path, num_examples: int, pooling: str,
                           num_negatives: int, trust_remote_code: bool = False) -> list[float]:
    """L_k of encoders: lm-cocktail's contrastive loss (``forgetless.merging.embedding_loss``)."""
    # imported here: the merge flags are built from this module, without transformers
    from forgetless.merging.embedding_loss import embedding_losses

    return embedding_losses(models, examples, num_examples, pooling, num_negatives, trust_remote_code)


class CocktailParams(RuleParams):
    """``--rule cocktail``: every parameter has a default; ``examples`` is needed whenever more
    than one model is in the softmax (the rule says so when it is missing)."""

    # Ranges of alpha and temperature are checked by the rule, whose messages say what they mean.
    examples: str | None = Field(None, description="Target-domain examples (JSONL: text, or prompt+completion; "
                                                   "input+output or prompt+completion with --cocktail-loss "
                                                   "lm-cocktail; query+pos+neg with --model-kind embedding).")
    finetuned: int = Field(1, ge=0, description="Index in --models of the fine-tuned model.")
    alpha: float | None = Field(None, description=f"Share kept of the fine-tuned model (default {DEFAULT_ALPHA}).")
    num_examples: int = Field(DEFAULT_NUM_EXAMPLES, ge=1, description="How many target examples the losses use.")
    temperature: float = Field(DEFAULT_TEMPERATURE, description="Softmax temperature T of the weights softmax(-L/T).")
    variant: Variant = Field(
        "paper", description="paper = alpha*FT + (1-alpha)*sum_i w_i*model_i over the other models (base, peers), "
                             "w = softmax(-L/T); mono-specialist = alpha*FT + (1-alpha)*BASE (2 models, no examples); "
                             "without-finetuning = sum_i w_i*model_i over all --models, no alpha.")
    candidates: Candidates = Field(
        "others", description="Models in the softmax: others (the paper: all but the fine-tuned one) or all (the "
                              "fine-tuned one too; a variant, not the paper's method).")
    cocktail_loss: LossConvention = Field(
        "tokens", description="Loss L_k: tokens = mean NLL per token of text+EOS (BOS as the tokenizer adds it), "
                              "pooled; "
                              "lm-cocktail = lm-cocktail 0.0.4's (output tokens + EOS only, mean per batch of 2 "
                              "examples, then over batches).")
    model_kind: ModelKind = Field(
        "causal", description="causal = language models, losses from --cocktail-loss; embedding = encoders "
                              "(sentence-transformers models), loss = lm-cocktail's contrastive loss on "
                              "{query, pos, neg} examples, output loadable by SentenceTransformer.")
    pooling: PoolingParam | None = Field(
        None, description="--model-kind embedding: cls or mean pooling, for models without a sentence-transformers "
                          "1_Pooling/config.json (which otherwise decides).")
    num_negatives: int | None = Field(
        None, ge=1, description=f"--model-kind embedding: negatives per query, the first of each 'neg' list "
                                f"(default {DEFAULT_NUM_NEGATIVES}, lm-cocktail's).")


@dataclass
class Cocktail(MergeRule):
    """LM-Cocktail coefficients over ``models``: the base, the fine-tuned model (at index
    ``finetuned``) and peers, in any order.

    Args:
        examples: target-domain examples (JSONL); needed whenever more than one model is in the softmax.
        finetuned: index of the fine-tuned model (unused by ``without-finetuning``).
        temperature: T of softmax(−L/T).
        alpha: share of the fine-tuned model, in [0, 1] (default 0.5); refused by ``without-finetuning``.
        num_examples: how many examples (from the top of the file) the losses use.
        variant: ``paper``, ``mono-specialist`` or ``without-finetuning`` (module docstring).
        candidates: ``others`` (the paper: every model but the fine-tuned one) or ``all``
            (the fine-tuned one too; a variant, not the method).
        loss: ``tokens`` or ``lm-cocktail`` (``forgetless.merging.cocktail_loss``); causal models only.
        model_kind: ``causal`` or ``embedding`` (encoders; the contrastive loss, module docstring).
        pooling: ``cls`` or ``mean``, for embedding models without a pooling config (which otherwise decides).
        num_negatives: negatives per query of the contrastive loss (default 7); embedding models only.
        losses_fn: computes the candidates' losses from their paths instead (tests, the study).
        trust_remote_code: let the loss models run code from their directories (``--trust-remote-code``).
    """

    examples: Path | None = None
    finetuned: int = 1
    temperature: float = DEFAULT_TEMPERATURE
    alpha: float | None = None
    num_examples: int = DEFAULT_NUM_EXAMPLES
    variant: Variant = "paper"
    candidates: Candidates = "others"
    loss: LossConvention = "tokens"
    model_kind: ModelKind = "causal"
    pooling: PoolingParam | None = None
    num_negatives: int | None = None
    losses_fn: Callable[[list[Path]], list[float]] | None = field(default=None, repr=False)
    trust_remote_code: bool = False
    name = "cocktail"
    params_model = CocktailParams

    @classmethod
    def from_params(cls, params: CocktailParams, context: RuleContext) -> Cocktail:  # type: ignore[override]
        """The rule with the flags' names mapped to its own (``cocktail_loss`` is ``loss``)."""
        # --examples is asked for only when more than one model is in the softmax (mono-specialist
        # and a paper merge of base + fine-tuned need none), so an empty value means none.
        return cls(examples=Path(params.examples) if params.examples else None, finetuned=params.finetuned,
                   temperature=params.temperature, alpha=params.alpha, num_examples=params.num_examples,
                   variant=params.variant, candidates=params.candidates, loss=params.cocktail_loss,
                   model_kind=params.model_kind, pooling=params.pooling, num_negatives=params.num_negatives,
                   trust_remote_code=context.trust_remote_code)

    def _check(self, n_models: int) -> tuple[int | None, float, list[int]]:
        """(fine-tuned index or None, α, candidate indices), or a one-line MergeError."""
        if self.variant not in ("paper", "mono-specialist", "without-finetuning"):
            raise MergeError(f"variant={self.variant!r}: expected paper, mono-specialist or without-finetuning")
        if self.candidates not in ("others", "all"):
            raise MergeError(f"candidates={self.candidates!r}: expected others (the paper) or all")
        if self.loss not in ("tokens", "lm-cocktail"):
            raise MergeError(f"loss={self.loss!r}: expected tokens or lm-cocktail")
        if self.model_kind not in ("causal", "embedding"):
            raise MergeError(f"model_kind={self.model_kind!r}: expected causal or embedding")
        if self.model_kind == "embedding" and self.loss != "tokens":
            raise MergeError(f"cocktail_loss={self.loss} is a language-model loss; with model_kind embedding the "
                             "loss is lm-cocktail's contrastive loss")
        if self.model_kind == "causal" and (self.pooling is not None or self.num_negatives is not None):
            raise MergeError("pooling and num_negatives apply to model_kind embedding only")
        if self.pooling not in (None, "cls", "mean"):
            raise MergeError(f"pooling={self.pooling!r}: expected cls or mean")
        if self.num_negatives is not None and self.num_negatives < 1:
            raise MergeError(f"num_negatives={self.num_negatives}: expected at least 1")
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise MergeError(f"temperature={self.temperature}: expected a positive number (LM-Cocktail uses 5)")
        if self.num_examples < 1:
            raise MergeError(f"num_examples={self.num_examples}: expected at least 1")
        if self.variant == "without-finetuning":
            if self.alpha is not None:
                raise MergeError("cocktail without-finetuning has no fine-tuned model: alpha does not apply")
            if n_models < 2:
                raise MergeError(f"cocktail without-finetuning needs at least 2 models to mix, got {n_models}")
            return None, 0.0, list(range(n_models))
        alpha = check_alpha(DEFAULT_ALPHA if self.alpha is None else self.alpha)
        if self.variant == "mono-specialist":
            if n_models != 2:
                raise MergeError(f"cocktail mono-specialist takes exactly 2 models (base, fine-tuned), got {n_models}")
            if self.candidates == "all":
                raise MergeError("cocktail mono-specialist mixes the fine-tuned model with the base alone: "
                                 "candidates=all does not apply")
        elif n_models < 2:
            raise MergeError(f"cocktail needs at least 2 models (base, fine-tuned, peers), got {n_models}")
        if not 0 <= self.finetuned < n_models:
            raise MergeError(f"finetuned={self.finetuned}: expected the index of a model, 0 to {n_models - 1}")
        others = [k for k in range(n_models) if k != self.finetuned or self.candidates == "all"]
        return self.finetuned, alpha, others

    def coefficients(self, models: list[Path]) -> Coefficients:
        finetuned, alpha, candidates = self._check(len(models))
        chosen = [models[k] for k in candidates]
        losses: list[float] | None = None
        embedding: dict[str, Any] = {}
        if self.model_kind == "embedding":
            # Every input's pooling, the fine-tuned one's too (the output takes its pipeline), even
            # when no loss is computed: the output must embed as the inputs do.
            embedding = {"model_kind": "embedding", "loss": "contrastive",
                         "pooling": resolve_pooling(models, self.pooling),
                         "num_negatives": self.num_negatives or DEFAULT_NUM_NEGATIVES}
        if len(candidates) == 1:
            weights = [1.0]  # softmax over one model: no loss to compute, no examples needed
        else:
            if self.losses_fn is not None:
                losses = [float(x) for x in self.losses_fn(chosen)]
            elif self.examples is None:
                raise MergeError(f"cocktail weighting {len(candidates)} models needs examples: a few "
                                 "target-domain examples to compute their losses on")
            elif self.model_kind == "embedding":
                losses = embedding_model_losses(chosen, Path(self.examples), self.num_examples, embedding["pooling"],
                                                embedding["num_negatives"], self.trust_remote_code)
            else:
                losses = model_losses(chosen, Path(self.examples), self.num_examples, self.loss,
                                      self.trust_remote_code)
            if len(losses) != len(candidates):
                raise MergeError(f"{len(losses)} losses for {len(candidates)} candidate models")
            weights = cocktail_weights(losses, self.temperature)
        values = mix_coefficients(len(models), candidates, weights, finetuned, alpha)
        per_model_loss: list[float | None] = [None] * len(models)
        per_model_weight: list[float | None] = [None] * len(models)
        for i, k in enumerate(candidates):
            per_model_weight[k] = weights[i]
            per_model_loss[k] = losses[i] if losses is not None else None
        return Coefficients(values, {
            "variant": self.variant, "candidates": candidates, "losses": per_model_loss,
            "cocktail_weights": per_model_weight, "temperature": self.temperature, "loss": self.loss,
            "alpha": None if finetuned is None else alpha, "finetuned": finetuned, **embedding,
        }, sentence_transformers_from=finetuned if self.model_kind == "embedding" else None,
            sentence_transformers_pooling=embedding.get("pooling"))
