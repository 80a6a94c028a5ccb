"""LM-Cocktail's loss for embedding models: contrastive InfoNCE on (query, positive, negatives).

LM-Cocktail (Xiao et al., arXiv 2311.13534) merges BGE embedding models too, weighing each
by softmax(−L/T) of its loss L on a few target examples; for an encoder L is the
contrastive loss the models were trained with. lm-cocktail 0.0.4 (``compute_weights``
with ``model_type="encoder"``: ``preprocess_data_for_embedder`` + ``embedder_loss``)
computes it as follows, and so does this module:

- examples are FlagEmbedding's training format, ``{"query": str, "pos": [str, ...],
  "neg": [str, ...]}``; each query's group is its first positive and ``num_negatives``
  negatives (7);
- examples go in batches of 2 in file order; a batch embeds its B queries and its
  passages (every group, concatenated: P passages) with the first model's tokenizer,
  truncated at 2048 tokens (here also at the tokenizer's own limit, past which a BERT
  has no position embedding);
- an embedding is the pooled last hidden state, L2-normalised; scores are
  s = q pᵀ / τ with τ = 0.05 (FlagEmbedding's training temperature), shape [B, P];
  the loss of a batch is the mean over its queries of the cross-entropy of s against
  each query's own positive, the other queries' passages serving as in-batch negatives;
- L is the mean of the batch losses.

Two differences, both so that the weights are reproducible and fit the model:

- lm-cocktail draws the negatives with ``random.sample`` (unseeded, and it fails on a
  query with fewer than 7); here the first ``num_negatives`` are taken, in file order,
  and a query with fewer uses all it has (its positive's index in the batch is then
  the sum of the groups before it, which equals lm-cocktail's ``i * P / B`` when every
  group has the same size).
- lm-cocktail always pools the [CLS] token (BGE's pooling); here the pooling is the
  model's own (``1_Pooling/config.json``, see ``forgetless.merging.st_format``) or the
  ``--pooling`` given: ``cls`` (the first token's state) or ``mean`` (the mean of the
  states of the tokens the attention mask keeps, special tokens included, as
  sentence-transformers' mean pooling does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from forgetless.data.errors import DataError
from forgetless.data.records import read_records
from forgetless.merging.st_format import DEFAULT_NUM_NEGATIVES
from forgetless.models import load_encoder, load_tokenizer

# lm-cocktail 0.0.4's defaults of mix_models_with_data / compute_weights for encoders.
REFERENCE_BATCH_SIZE = 2
REFERENCE_MAX_LENGTH = 2048
# τ of the scores q·p/τ in lm-cocktail's embedder_loss: FlagEmbedding's training temperature.
CONTRASTIVE_TEMPERATURE = 0.05


@dataclass(frozen=True)
class ContrastiveExample:
    """One query, its first positive, and the negatives used."""

    query: str
    positive: str
    negatives: list[str]


def _strings(value: object) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(isinstance(v, str) for v in value)


def contrastive_examples(path: str | Path, limit: int | None = None,
                         num_negatives: int = DEFAULT_NUM_NEGATIVES) -> list[ContrastiveExample]:
    """The first ``limit`` records of a FlagEmbedding-format file, as ``ContrastiveExample``s.

    Raises:
        DataError: naming the file, line and field: a record without a string ``query``, or
            whose ``pos`` or ``neg`` is not a non-empty list of strings; or no record at all.
    """
    examples = []
    for record in read_records(path)[:limit]:
        fields = record.fields
        if not isinstance(fields.get("query"), str):
            raise DataError(path, record.where, "query", "expected a string (FlagEmbedding format: "
                                                         "{\"query\": str, \"pos\": [str], \"neg\": [str]})")
        for key, what in (("pos", "positive passages"), ("neg", "negative passages")):
            if not _strings(fields.get(key)):
                raise DataError(path, record.where, key, f"expected a non-empty list of strings ({what})")
        examples.append(ContrastiveExample(fields["query"], fields["pos"][0], fields["neg"][:num_negatives]))
    if not examples:
        raise DataError(path, None, None, "expected at least one example")
    return examples


@dataclass(frozen=True)
class ContrastiveBatch:
    """Tokenized queries [B, Sq] and passages [P, Sp], and each query's positive's index in the passages [B]."""

    queries: dict[str, torch.Tensor]
    passages: dict[str, torch.Tensor]
    targets: torch.Tensor


def contrastive_batches(tokenizer: PreTrainedTokenizerBase, examples: list[ContrastiveExample],
                        batch_size: int = REFERENCE_BATCH_SIZE,
                        max_length: int = REFERENCE_MAX_LENGTH) -> list[ContrastiveBatch]:
    """lm-cocktail's encoder batches: ``batch_size`` queries with their groups, in file order."""
    # A tokenizer without a known limit reports a huge model_max_length.
    max_length = min(max_length, int(tokenizer.model_max_length))
    batches = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        passages: list[str] = []
        targets = []
        for example in chunk:
            targets.append(len(passages))
            passages += [example.positive, *example.negatives]

        def encode(texts: list[str]) -> dict[str, torch.Tensor]:
            return dict(tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))

        batches.append(ContrastiveBatch(encode([e.query for e in chunk]), encode(passages), torch.tensor(targets)))
    return batches


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Sentence embeddings [B, H] from the last hidden states [B, S, H] and the attention mask [B, S].

    ``cls``: the first token's state (inputs are right-padded); ``mean``: the mean over the
    tokens the mask keeps, as sentence-transformers' ``Pooling`` computes it.
    """
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # [B, S, 1]
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    raise ValueError(f"pooling {pooling!r}: expected cls or mean")


def embed(model: PreTrainedModel, inputs: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
    """L2-normalised pooled embeddings [N, H] of tokenized texts (``input_ids`` [N, S] and friends)."""
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    hidden = model(**inputs, return_dict=True).last_hidden_state.float()  # [N, S, H]
    return torch.nn.functional.normalize(pool(hidden, inputs["attention_mask"], pooling), dim=-1)


@torch.no_grad()
def contrastive_loss(model: PreTrainedModel, batches: list[ContrastiveBatch], pooling: str,
                     temperature: float = CONTRASTIVE_TEMPERATURE) -> float:
    """Mean over batches of the InfoNCE loss (nats) of each batch's queries against its passages.

    Args:
        model: an encoder returning ``last_hidden_state`` [N, S, H].
        batches: from ``contrastive_batches``.
        pooling: ``cls`` or ``mean``.
        temperature: τ of the scores q·p/τ (lm-cocktail's 0.05).
    """
    total = 0.0
    for batch in batches:
        queries = embed(model, batch.queries, pooling)  # [B, H]
        passages = embed(model, batch.passages, pooling)  # [P, H]
        scores = queries @ passages.T / temperature  # [B, P]
        total += float(torch.nn.functional.cross_entropy(scores, batch.targets.to(scores.device)))
    return total / len(batches)


def embedding_losses(models: list[Path], examples: Path, num_examples: int, pooling: str,
                     num_negatives: int = DEFAULT_NUM_NEGATIVES, trust_remote_code: bool = False) -> list[float]:
    """L_k: each encoder's contrastive loss on the first ``num_examples`` examples, loading one
    model at a time (in float32), with the tokenizer of the first model (as lm-cocktail does)."""
    tokenizer = load_tokenizer(str(models[0]), trust_remote_code)
    batches = contrastive_batches(tokenizer, contrastive_examples(examples, num_examples, num_negatives))
    losses = []
    for path in models:
        model = load_encoder(path, torch.float32, trust_remote_code).eval()
        losses.append(contrastive_loss(model, batches, pooling))
        del model
    return losses
