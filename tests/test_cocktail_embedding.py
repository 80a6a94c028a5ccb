"""LM-Cocktail for embedding models (the paper's encoder case): weights from lm-cocktail's
contrastive loss, recomputed here by hand; the merge through the streaming engine; an output
that sentence-transformers loads; one-line refusals of bad examples and poolings.

The models are 2-layer, 32-dim BERTs built from config over a WordPiece vocabulary written
here, saved with the files sentence-transformers reads (``modules.json``, ``1_Pooling``,
``sentence_bert_config.json``, ``config_sentence_transformers.json``)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertModel, BertTokenizerFast

from forgetless.cli import main
from forgetless.data.errors import DataError
from forgetless.merging import MergeError
from forgetless.merging.cocktail import Cocktail
from forgetless.merging.engine import merge_checkpoints
from forgetless.models import ModelLoadError, load_encoder
from tests.conftest import write_jsonl

WORDS = ("the a of is in what how do i to bake bread oven flour water yeast paris capital france city river "
         "seine cat dog sat on mat rain cloud sky blue weather today").split()
EXAMPLES = [  # FlagEmbedding's format; the third query has fewer negatives than the default 7
    {"query": "how do i bake bread", "pos": ["flour water yeast in the oven", "bake in the oven"],
     "neg": ["the cat sat on the mat", "paris is the capital of france", "rain cloud sky", "the dog",
             "blue sky today", "the river seine", "what is the weather", "a cat and a dog"]},
    {"query": "what is the capital of france", "pos": ["paris is the capital of france"],
     "neg": ["bake bread in the oven", "the cat sat", "rain in the city", "the dog sat on the mat",
             "flour and water", "blue cloud", "weather today", "yeast"]},
    {"query": "the weather today", "pos": ["rain cloud in the sky"], "neg": ["the river seine in paris", "bread"]},
]
TEMPERATURE = 5.0
TAU = 0.05  # lm-cocktail's contrastive temperature


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory: pytest.TempPathFactory) -> BertTokenizerFast:
    """A lower-casing WordPiece tokenizer over WORDS."""
    vocab = tmp_path_factory.mktemp("wordpiece") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS))]) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)


def make_bert(tokenizer: BertTokenizerFast, seed: int) -> BertModel:
    """A random BERT; initialised 25x wider than BERT's 0.02 so that different seeds rank the
    passages differently (at 0.02 every [CLS] state is nearly the same and so are the losses)."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                        initializer_range=0.5)
    return BertModel(config).eval()


def save_embedder(path: Path, model: BertModel, tokenizer: BertTokenizerFast, pooling: str | None,
                  style: str = "old") -> Path:
    """The encoder and tokenizer, plus (unless ``pooling`` is None) a sentence-transformers pipeline:
    encoder, pooling and Normalize, with the pooling config in BGE's (``old``) or
    sentence-transformers 6's (``new``) format."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "vocab.txt").write_text(Path(tokenizer.vocab_file).read_text())  # as BGE ships it, next to tokenizer.json
    if pooling is None:
        return path
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir()
    (path / "2_Normalize").mkdir()
    if style == "old":
        flags = {"pooling_mode_cls_token": pooling == "cls", "pooling_mode_mean_tokens": pooling == "mean",
                 "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}
        config = {"word_embedding_dimension": 32, **flags}
    else:
        config = {"embedding_dimension": 32, "pooling_mode": pooling, "include_prompt": True}
    (path / "1_Pooling" / "config.json").write_text(json.dumps(config))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    (path / "config_sentence_transformers.json").write_text(json.dumps({"similarity_fn_name": "cosine"}))
    return path


def embedders(root: Path, tokenizer: BertTokenizerFast, pooling: str | None, style: str = "old") -> list[Path]:
    """Base (seed 0), fine-tuned (seed 1) and a peer (seed 2), each in its own directory."""
    paths = []
    for seed, name in enumerate(("base", "finetuned", "peer")):
        (root / name).mkdir(parents=True)
        paths.append(save_embedder(root / name, make_bert(tokenizer, seed), tokenizer, pooling, style))
    return paths


@pytest.fixture(scope="module")
def cls_models(tmp_path_factory: pytest.TempPathFactory, wordpiece: BertTokenizerFast) -> list[Path]:
    return embedders(tmp_path_factory.mktemp("cls"), wordpiece, "cls")


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("examples") / "retrieval.jsonl", EXAMPLES)


def hand_embedding(model: BertModel, tokenizer: BertTokenizerFast, text: str, pooling: str) -> torch.Tensor:
    """One text alone (no padding): [CLS]'s state or the mean over its tokens, divided by its norm."""
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        states = model(input_ids=ids).last_hidden_state[0].double()  # [S, H]
    vector = states[0] if pooling == "cls" else states.mean(dim=0)
    return vector / vector.norm()


def hand_loss(path: Path, tokenizer_path: Path, pooling: str, num_negatives: int = 7) -> float:
    """lm-cocktail's contrastive loss written out: batches of 2 queries in file order, each query's
    group its first positive and first ``num_negatives`` negatives, the batch's other passages
    in-batch negatives; -log softmax of cos/0.05 at the query's positive; mean per batch, then over batches."""
    model = BertModel.from_pretrained(path).eval()
    tokenizer = BertTokenizerFast.from_pretrained(tokenizer_path)
    batch_losses = []
    for start in range(0, len(EXAMPLES), 2):
        batch = EXAMPLES[start : start + 2]
        passages, positives = [], []
        for example in batch:
            positives.append(len(passages))
            passages += [example["pos"][0], *example["neg"][:num_negatives]]
        p = [hand_embedding(model, tokenizer, text, pooling) for text in passages]
        losses = []
        for example, positive in zip(batch, positives):
            q = hand_embedding(model, tokenizer, example["query"], pooling)
            scores = [float(q @ v) / TAU for v in p]
            log_z = math.log(sum(math.exp(s) for s in scores))
            losses.append(log_z - scores[positive])
        batch_losses.append(sum(losses) / len(losses))
    return sum(batch_losses) / len(batch_losses)


def softmax_by_hand(losses: list[float], temperature: float) -> list[float]:
    exps = [math.exp(-loss / temperature) for loss in losses]
    return [e / sum(exps) for e in exps]


def test_weights_are_the_softmax_of_hand_computed_contrastive_losses(cls_models, examples):
    result = Cocktail(model_kind="embedding", examples=examples, finetuned=1, alpha=0.3).coefficients(cls_models)
    base, peer = (hand_loss(cls_models[k], cls_models[0], "cls") for k in (0, 2))
    losses = result.info["losses"]
    assert losses[1] is None and [losses[0], losses[2]] == pytest.approx([base, peer], rel=1e-5)
    w = softmax_by_hand([base, peer], TEMPERATURE)
    assert result.values == pytest.approx([0.7 * w[0], 0.3, 0.7 * w[1]], rel=1e-5)
    assert result.info["model_kind"] == "embedding" and result.info["pooling"] == "cls"
    assert result.info["loss"] == "contrastive" and result.info["num_negatives"] == 7
    assert result.sentence_transformers_from == 1  # the output takes the fine-tuned model's pipeline
    # The random models tell the pairs apart differently, so the weights are far from uniform.
    assert abs(w[0] - w[1]) > 0.01


@pytest.mark.parametrize("style", ["old", "new"])
def test_mean_pooling_is_read_from_either_pooling_config_format(tmp_path, wordpiece, examples, style):
    models = embedders(tmp_path, wordpiece, "mean", style)
    result = Cocktail(model_kind="embedding", examples=examples, variant="without-finetuning",
                      num_negatives=3).coefficients(models)
    losses = [hand_loss(m, models[0], "mean", num_negatives=3) for m in models]
    assert result.info["pooling"] == "mean"
    assert result.info["losses"] == pytest.approx(losses, rel=1e-5)
    assert result.values == pytest.approx(softmax_by_hand(losses, TEMPERATURE), rel=1e-5)


def test_models_without_a_pooling_config_take_the_pooling_parameter(tmp_path, wordpiece, examples):
    models = embedders(tmp_path, wordpiece, None)
    with pytest.raises(MergeError, match="pass --pooling cls or --pooling mean"):
        Cocktail(model_kind="embedding", examples=examples).coefficients(models)
    result = Cocktail(model_kind="embedding", examples=examples, pooling="mean",
                      candidates="all").coefficients(models)
    losses = [hand_loss(m, models[0], "mean") for m in models]
    assert result.info["losses"] == pytest.approx(losses, rel=1e-5)


def test_one_hot_merge_returns_the_finetuned_encoder_bit_for_bit(cls_models, examples, tmp_path, capsys):
    out = tmp_path / "merged"
    code = main(["merge", "--rule", "cocktail", "--model-kind", "embedding", "--models", *map(str, cls_models),
                 "--examples", str(examples), "--alpha", "1", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "forgetless-merge.json").read_text())
    assert record["coefficients"] == [0.0, 1.0, 0.0]
    merged, finetuned = load_file(out / "model.safetensors"), load_file(cls_models[1] / "model.safetensors")
    assert merged.keys() == finetuned.keys()
    for name, tensor in finetuned.items():
        assert merged[name].dtype == tensor.dtype and torch.equal(merged[name].view(torch.uint8),
                                                                  tensor.view(torch.uint8)), name


def test_merged_model_loads_in_sentence_transformers_with_the_finetuned_pipeline(cls_models, examples, tmp_path,
                                                                                 capsys):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    out = tmp_path / "merged"
    assert main(["merge", "--rule", "cocktail", "--model-kind", "embedding", "--models", *map(str, cls_models),
                 "--examples", str(examples), "--alpha", "0.5", "--output", str(out)]) == 0, capsys.readouterr().err
    record = json.loads((out / "forgetless-merge.json").read_text())
    c = record["coefficients"]
    assert record["sentence_transformers_from"] == str(cls_models[1]) and record["pooling"] == "cls"
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                 "1_Pooling/config.json", "vocab.txt", "tokenizer.json"):
        assert (out / name).read_bytes() == (cls_models[1] / name).read_bytes(), name
    # The weights are the mix Σ c_k θ_k, tensor by tensor.
    inputs = [load_file(m / "model.safetensors") for m in cls_models]
    merged = load_file(out / "model.safetensors")
    for name in merged:
        expected = sum(ck * t[name].double() for ck, t in zip(c, inputs))
        assert torch.allclose(merged[name].double(), expected, atol=1e-6), name
    # sentence-transformers embeds as the pipeline says: [CLS], then L2-normalised.
    model = sentence_transformers.SentenceTransformer(str(out), device="cpu")
    texts = ["how do i bake bread", "paris is the capital of france"]
    encoded = model.encode(texts, convert_to_tensor=True)
    bert = BertModel.from_pretrained(out).eval()
    tokenizer = BertTokenizerFast.from_pretrained(out)
    expected = torch.stack([hand_embedding(bert, tokenizer, t, "cls") for t in texts]).float()
    assert encoded.shape == (2, 32)
    assert torch.allclose(encoded.cpu(), expected, atol=1e-5)


def test_models_without_a_pipeline_get_one_written_that_embeds_as_the_loss_did(tmp_path, wordpiece, examples,
                                                                               capsys):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    models = embedders(tmp_path / "plain", wordpiece, None)
    out = tmp_path / "merged"
    assert main(["merge", "--rule", "cocktail", "--model-kind", "embedding", "--pooling", "mean",
                 "--models", *map(str, models), "--examples", str(examples), "--output", str(out)]) == 0, \
        capsys.readouterr().err
    record = json.loads((out / "forgetless-merge.json").read_text())
    assert record["sentence_transformers_files"] == ["modules.json", "1_Pooling", "2_Normalize"]
    assert record["sentence_transformers_from"].startswith("written by forgetless (mean pooling")
    model = sentence_transformers.SentenceTransformer(str(out), device="cpu")
    texts = ["the weather today", "flour water yeast in the oven"]
    bert, tokenizer = BertModel.from_pretrained(out).eval(), BertTokenizerFast.from_pretrained(out)
    expected = torch.stack([hand_embedding(bert, tokenizer, t, "mean") for t in texts]).float()
    assert torch.allclose(model.encode(texts, convert_to_tensor=True).cpu(), expected, atol=1e-5)


@pytest.mark.parametrize(("record", "field", "expected"), [
    ({"pos": ["bread"], "neg": ["cat"]}, "query", "expected a string"),
    ({"query": "bread", "pos": [], "neg": ["cat"]}, "pos", "expected a non-empty list of strings"),
    ({"query": "bread", "pos": ["oven"], "neg": "cat"}, "neg", "expected a non-empty list of strings"),
])
def test_bad_examples_are_refused_naming_file_line_and_field(cls_models, tmp_path, capsys, record, field,
                                                             expected):
    bad = write_jsonl(tmp_path / "bad.jsonl", [EXAMPLES[0], record])
    with pytest.raises(DataError) as err:
        Cocktail(model_kind="embedding", examples=bad).coefficients(cls_models)
    assert str(err.value).startswith(f"{bad}, line 2, field '{field}': {expected}")
    out = tmp_path / "merged"
    assert main(["merge", "--rule", "cocktail", "--model-kind", "embedding", "--models", *map(str, cls_models),
                 "--examples", str(bad), "--output", str(out)]) == 2
    message = capsys.readouterr().err
    assert message.strip().count("\n") == 0 and f"line 2, field '{field}'" in message
    assert not out.exists()


def test_refusals_of_poolings_and_parameters(tmp_path, wordpiece, cls_models, examples):
    mean = embedders(tmp_path / "mean", wordpiece, "mean")
    with pytest.raises(MergeError, match="pooling differs: .* pools with cls, .* with mean"):
        Cocktail(model_kind="embedding", examples=examples).coefficients([cls_models[0], mean[1], cls_models[2]])
    with pytest.raises(MergeError, match="--pooling mean contradicts"):
        Cocktail(model_kind="embedding", examples=examples, pooling="mean").coefficients(cls_models)
    with pytest.raises(MergeError, match="apply to model_kind embedding only"):
        Cocktail(pooling="cls").coefficients(cls_models)
    with pytest.raises(MergeError, match="cocktail_loss=lm-cocktail is a language-model loss"):
        Cocktail(model_kind="embedding", loss="lm-cocktail", examples=examples).coefficients(cls_models)
    (mean[0] / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "max"}))
    with pytest.raises(MergeError, match="supports cls or mean"):
        Cocktail(model_kind="embedding", examples=examples, variant="without-finetuning").coefficients(mean[:1] * 2)


def test_a_pipeline_module_with_weights_of_its_own_is_refused_before_writing(tmp_path, wordpiece):
    models = embedders(tmp_path, wordpiece, "cls")
    modules = json.loads((models[1] / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (models[1] / "modules.json").write_text(json.dumps(modules))
    (models[1] / "2_Dense").mkdir()
    (models[1] / "2_Dense" / "model.safetensors").write_bytes(b"")
    out = tmp_path / "merged"
    with pytest.raises(MergeError, match="2_Dense: the sentence-transformers module .*Dense holds weights"):
        merge_checkpoints(models, [0.5, 0.5, 0.0], out, sentence_transformers_from=1, progress=False)
    assert not out.exists()


def test_load_encoder_loads_safetensors_and_refuses_pickles_and_unresolved_specs(cls_models, tmp_path):
    encoder = load_encoder(cls_models[1], torch.float32)
    reference = load_file(cls_models[1] / "model.safetensors")
    state = encoder.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in reference.items())
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy2(cls_models[1] / "config.json", pickled / "config.json")
    torch.save(reference, pickled / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"holds only pickled weights \(pytorch_model.bin\)") as err:
        load_encoder(pickled)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelLoadError, match="a testbed spec; resolve it first"):
        load_encoder("testbed:tiny")
    with pytest.raises(ModelLoadError, match=f"{tmp_path / 'missing'}: cannot load"):
        load_encoder(tmp_path / "missing")
