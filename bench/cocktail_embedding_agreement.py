"""Agreement: forgetless's LM-Cocktail for embedding models against lm-cocktail 0.0.4's encoder path.

On the same tiny BERT encoders (three seeds, float32, each saved with a sentence-transformers
pipeline that pools [CLS] and normalises, as BGE's does) and the same five (query, positive,
negatives) examples, it computes:

1. the reference's per-model contrastive losses (its own ``preprocess_data_for_embedder`` +
   ``embedder_loss``, the two functions ``compute_weights`` runs for ``model_type="encoder"``)
   and its weights (``compute_weights`` itself, T = 5);
2. forgetless's, ``Cocktail(model_kind="embedding", variant="without-finetuning")`` over the
   same models (lm-cocktail's ``mix_models_with_data`` weighs every model it is given);
3. the merged encoder both ways: ``mix_models_with_data`` against ``merge_checkpoints`` with
   forgetless's coefficients (largest absolute parameter difference).

Every example has exactly 7 negatives, lm-cocktail's ``neg_number``: its ``random.sample``
then only reorders a query's negatives, which changes neither the loss nor the weights, so
the two must agree although forgetless takes the first negatives in file order. Exits 1 if a
loss or weight differs by more than 1e-5.

Setup:  bash bench/merge_setup.sh      (bench/.venv-merge with lm-cocktail 0.0.4 and sentence-transformers)
Run:    bench/.venv-merge/bin/python bench/cocktail_embedding_agreement.py [--workdir DIR] [--json FILE]
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
TEMPERATURE = 5.0
PASSAGES = ["flour water yeast in the oven", "paris is the capital of france", "rain cloud in the sky",
            "the cat sat on the mat", "the river seine in the city", "blue sky today", "bake bread in the oven",
            "a dog and a cat", "what is the weather today", "the capital city of a river"]
QUERIES = [("how do i bake bread", 0), ("what is the capital of france", 1), ("the weather today", 2),
           ("where did the cat sit", 3), ("which river is in paris", 4)]
# Exactly 7 negatives per query: the reference's random.sample(neg, 7) is then a reordering.
EXAMPLES = [{"query": q, "pos": [PASSAGES[i]], "neg": [p for j, p in enumerate(PASSAGES) if j != i][:7]}
            for q, i in QUERIES]


def build_models(workdir: Path) -> list[Path]:
    """Three 2-layer, 32-dim BERTs over a WordPiece vocabulary of the examples' words, saved
    with a [CLS] + Normalize sentence-transformers pipeline."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w for text in PASSAGES + [q for q, _ in QUERIES] for w in text.split()})
    vocab = workdir / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    paths = []
    for seed in range(3):
        torch.manual_seed(seed)
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=64, initializer_range=0.5)
        path = workdir / f"encoder-{seed}"
        BertModel(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                   {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
        (path / "modules.json").write_text(json.dumps(modules))
        (path / "1_Pooling").mkdir()
        (path / "2_Normalize").mkdir()
        (path / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
        paths.append(path)
    return paths


def reference(paths: list[Path], out: Path) -> tuple[list[float], list[float]]:
    """lm-cocktail 0.0.4's losses and weights over ``paths``, and its merged encoder in ``out``."""
    from LM_Cocktail import mix_models_with_data
    from LM_Cocktail.utils import (compute_weights, embedder_loss, get_model_param_list, load_model,
                                   preprocess_data_for_embedder)
    from transformers import AutoTokenizer

    names = [str(p) for p in paths]
    tokenizer = AutoTokenizer.from_pretrained(names[0])
    batches = preprocess_data_for_embedder(EXAMPLES, tokenizer, torch.device("cpu"), batch_size=2,
                                           max_input_length=2048, neg_number=7)
    losses = []
    for name in names:
        model = load_model(name, model_type="encoder", trust_remote_code=False).eval()
        losses.append(float(embedder_loss(model, batches)))
    base = load_model(names[0], model_type="encoder", trust_remote_code=False)
    weights = compute_weights(base, tokenizer, get_model_param_list(names, model_type="encoder"), "encoder",
                              EXAMPLES, temperature=TEMPERATURE, batch_size=2, max_input_length=2048, neg_number=7)
    mix_models_with_data(names, "encoder", EXAMPLES, temperature=TEMPERATURE, output_path=str(out))
    return losses, [float(w) for w in weights]


def max_param_difference(a: Path, b: Path) -> float:
    from transformers import AutoModel

    first, second = AutoModel.from_pretrained(a).state_dict(), AutoModel.from_pretrained(b).state_dict()
    return max(float((first[k].double() - second[k].double()).abs().max()) for k in first)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/forgetless-cocktail-embedding-agreement")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    try:
        import LM_Cocktail  # noqa: F401
    except ImportError:
        print("lm-cocktail is not installed here; run bash bench/merge_setup.sh and use bench/.venv-merge/bin/python",
              file=sys.stderr)
        return 2
    from forgetless.merging.cocktail import Cocktail
    from forgetless.merging.engine import merge_checkpoints

    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    paths = build_models(workdir)
    examples = workdir / "examples.jsonl"
    examples.write_text("".join(json.dumps(e) + "\n" for e in EXAMPLES))

    ref_losses, ref_weights = reference(paths, workdir / "reference-merge")
    ours = Cocktail(model_kind="embedding", variant="without-finetuning", examples=examples,
                    temperature=TEMPERATURE).coefficients(paths)
    merge_checkpoints(paths, ours.values, workdir / "forgetless-merge", progress=False)
    figures = {
        "reference_losses": ref_losses, "forgetless_losses": ours.info["losses"],
        "reference_weights": ref_weights, "forgetless_weights": ours.values,
        "max_loss_difference": max(abs(a - b) for a, b in zip(ref_losses, ours.info["losses"])),
        "max_weight_difference": max(abs(a - b) for a, b in zip(ref_weights, ours.values)),
        "max_merged_parameter_difference": max_param_difference(workdir / "reference-merge",
                                                                workdir / "forgetless-merge"),
    }
    for key, value in figures.items():
        print(f"{key:>34}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    agree = figures["max_loss_difference"] <= TOLERANCE and figures["max_weight_difference"] <= TOLERANCE
    print("agreement within 1e-5" if agree else "DISAGREEMENT beyond 1e-5")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
