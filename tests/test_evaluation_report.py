"""forgetless eval end to end: report schema, forgetting/gain, LoRA adapters, in-memory models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from forgetless.cli import main
from forgetless.data.errors import DataError
from forgetless.models import load_model
from forgetless.evaluation.report import METRICS, EvalSettings, evaluation_report
from tests.conftest import TEXT, make_model, write_jsonl


@pytest.fixture
def eval_files(tmp_path: Path) -> tuple[Path, Path]:
    # Numbered words keep every span distinct, so cloze distractors exist.
    texts = [" ".join(f"{word} {100 * d + i}" for i, word in enumerate(TEXT[d % 4].split() * 3)) for d in range(5)]
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": t} for t in texts])
    domain = write_jsonl(tmp_path / "domain.jsonl", [
        {"prompt": f"Sum {a} and {b}.\n", "completion": f" Answer: {a + b}"} for a in range(3) for b in range(2)])
    return general, domain


def test_cli_against_itself_reports_zero_forgetting(tiny_model_dir: Path, eval_files, tmp_path: Path) -> None:
    general, domain = eval_files
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(tiny_model_dir), "--base", str(tiny_model_dir), "--general", str(general),
                 "--domain", str(domain), "--cloze-items", "6", "--max-new-tokens", "4", "--resamples", "200",
                 "--no-progress", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["schema_version"] == 1
    for metric, (group, _) in METRICS.items():
        if metric.startswith("cf_"):
            continue  # needs --kl-samples
        key = "forgetting" if group == "general" else "gain"
        entry = report[key][metric]
        assert entry["delta"] == 0 and entry["ci"] == [0, 0], metric
        block = report[group]
        low, high = block[f"{metric}_ci"]
        assert low <= block[metric] <= high
    assert report["general"]["mc_n"] == 6 and report["domain"]["n"] == 6


def test_in_memory_pair_and_a_different_base(tokenizer, eval_files) -> None:
    general, domain = eval_files
    settings = EvalSettings(general=str(general), domain=str(domain), cloze_items=6, max_new_tokens=4,
                            resamples=200, progress=False)
    model, base = make_model(tokenizer, seed=1), make_model(tokenizer, seed=2)
    report = evaluation_report(model, tokenizer, settings, base=(base, tokenizer))
    delta = report["forgetting"]["nats_per_token"]["delta"]
    assert delta == pytest.approx(report["general"]["nats_per_token"] - report["base"]["general"]["nats_per_token"])
    low, high = report["forgetting"]["nats_per_token"]["ci"]
    assert low <= delta <= high and low < high


def test_lora_adapter_dir_evaluates_as_merged_model(tokenizer, tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    base, _, _ = load_model(str(tiny_model_dir))
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir)
    ids = torch.tensor([[tokenizer.bos_token_id, 40, 41, 42]])
    with torch.no_grad():
        expected = peft_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    loaded, loaded_tokenizer, _ = load_model(str(tmp_path / "adapter"))
    with torch.no_grad():
        got = loaded(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()


def test_bad_inputs_name_the_problem(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine"}, {"txt": "oops"}])
    assert main(["eval", "--model", str(tiny_model_dir), "--general", str(bad), "--no-progress"]) == 2
    assert "bad.jsonl, line 2, field 'text': expected a string" in capsys.readouterr().err
    choices = write_jsonl(tmp_path / "mc.jsonl", [{"context": "a", "choices": ["b", "c"], "label": 2}])
    assert main(["eval", "--model", str(tiny_model_dir), "--choices", str(choices), "--no-progress"]) == 2
    assert "mc.jsonl, line 1, field 'label'" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "missing"), "--general", str(bad), "--no-progress"]) == 2
    assert "no such model directory" in capsys.readouterr().err
    with pytest.raises(DataError):
        from forgetless.data.texts import read_texts

        read_texts(bad)
    assert load_model(str(tiny_model_dir))[0].training is False


def test_context_free_kl_matches_the_replay_estimate(tokenizer, tmp_path: Path) -> None:
    from forgetless.replay.kl_estimate import kl_estimate, load_samples, meta_path_for

    rng = torch.Generator().manual_seed(0)
    rows = [{"token_ids": torch.randint(5, len(tokenizer), (int(n),), generator=rng).tolist(), "finished": False}
            for n in torch.randint(1, 20, (12,), generator=rng)]
    samples_path = write_jsonl(tmp_path / "cf.jsonl", rows)
    meta_path_for(samples_path).write_text(json.dumps({"prompt_ids": [tokenizer.bos_token_id],
                                                       "settings": {"temperature": 1.0, "top_p": 1.0}}))
    model, base = make_model(tokenizer, seed=7), make_model(tokenizer, seed=8)
    settings = EvalSettings(kl_samples=str(samples_path), resamples=300, progress=False)
    report = evaluation_report(model, tokenizer, settings, base=(base, tokenizer))
    reference = kl_estimate(model, base, load_samples(samples_path))
    assert report["forgetting"]["cf_nll"]["delta"] == pytest.approx(reference.kl, abs=1e-4)
    assert report["forgetting"]["cf_nll_per_token"]["delta"] == pytest.approx(reference.kl_per_token, abs=1e-5)
    assert report["general"]["cf_n"] == 12
