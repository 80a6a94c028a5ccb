"""A study's replay cells train without the replay KL log (the evaluation cells measure it): same weights, same key."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from safetensors.torch import load_file

from forgetless.training.config import TrainConfig
from forgetless.study.config import load_study
from forgetless.study.running.replay_cells import without_kl_log
from forgetless.study.running.runner import run_study
from forgetless.training.run import train
from tests.conftest import write_jsonl


def _config(model: Path, data: Path, output: Path, replay: dict) -> TrainConfig:
    return TrainConfig(model=str(model), data=str(data), output=str(output), learning_rate=1e-2, max_steps=3,
                       batch_size=4, logging_steps=1, lr_scheduler="constant", replay=json.dumps(replay))


def test_the_log_goes_off_only_where_the_method_left_it_at_its_defaults(tmp_path: Path) -> None:
    replay = {"data": "r.jsonl", "ratio": 0.5}
    cfg = _config(tmp_path, tmp_path / "d.jsonl", tmp_path / "o", replay)
    quiet = without_kl_log(cfg)
    assert quiet.replay is not None and quiet.replay.kl_eval_samples == 0
    assert quiet.replay.model_dump(exclude={"kl_eval_samples"}) == cfg.replay.model_dump(exclude={"kl_eval_samples"})
    assert cfg.replay.kl_eval_samples == 64  # the caller's config is not modified
    for asked in ({"kl_eval_samples": 16}, {"kl_eval_steps": 10}, {"kl_eval_data": "held.jsonl"}):
        explicit = _config(tmp_path, tmp_path / "d.jsonl", tmp_path / "o", {**replay, **asked})
        assert without_kl_log(explicit) == explicit
    plain = TrainConfig(model="m", data="d.jsonl", output="o")
    assert without_kl_log(plain) is plain


def test_training_without_the_log_gives_the_same_model(tiny_model_dir: Path, pc_data: Path, tmp_path: Path) -> None:
    replay_file = write_jsonl(tmp_path / "replay.jsonl", [{"text": f"the word was {i}", "finished": True}
                                                          for i in range(6)])
    # The default log: 64 samples drawn from the base before the first step, scored at the end.
    logged_cfg = _config(tiny_model_dir, pc_data, tmp_path / "logged", {"data": str(replay_file), "ratio": 0.5})
    logged = train(logged_cfg)
    quiet = train(without_kl_log(logged_cfg).model_copy(update={"output": str(tmp_path / "quiet")}))
    history = {name: json.loads((out / "forgetless.json").read_text())["log_history"]
               for name, out in (("logged", logged), ("quiet", quiet))}
    assert any("replay/kl" in h for h in history["logged"]) and not any("replay/kl" in h for h in history["quiet"])
    losses = {name: [h["loss"] for h in log if "loss" in h] for name, log in history.items()}
    assert len(losses["logged"]) == 3 and losses["logged"] == losses["quiet"]
    before, after = load_file(logged / "model.safetensors"), load_file(quiet / "model.safetensors")
    assert before.keys() == after.keys()
    assert all(before[k].equal(after[k]) for k in before)


def test_a_studys_replay_cell_keeps_its_key_and_logs_nothing(tmp_path: Path, tiny_model_dir: Path,
                                                             pc_data: Path) -> None:
    test = write_jsonl(tmp_path / "test.jsonl",
                       [{"prompt": f"Sum {a} and 1.\n", "answer": str(a + 1)} for a in range(6)])
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": f"The word was with the model {i}."} for i in range(5)])
    study = {
        "name": "kl-log", "output": str(tmp_path / "study"), "base_model": str(tiny_model_dir),
        "data": {"train": str(pc_data), "test": str(test), "general": str(general)},
        "training": {"max_steps": 2, "batch_size": 4, "save_steps": 2, "logging_steps": 1},
        "methods": [{"name": "cf-replay", "learning_rates": [1e-3],
                     "train": {"replay": {"data": "context-free", "ratio": 0.5}}}],
        "sweeps": {"interpolation": [], "ensemble": []}, "eval": {"bootstrap": 20},
        "context_free": {"replay_samples": 4, "kl_samples": 4, "max_new_tokens": 8}, "budget": 0.5,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    root = run_study(load_study(path), print_fn=lambda _: None)
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    replayed = next(r for r in rows if r["label"].startswith("cf-replay"))
    assert replayed["kl_estimate"] is not None  # the study's own estimate, from its evaluation cell
    model = Path(replayed["path"])
    record = json.loads((model / "forgetless.json").read_text())
    assert record["config"]["replay"]["kl_eval_samples"] == 0
    assert not any("replay/kl" in h for h in record["log_history"])
    # The cell is keyed by the method as configured (the log's default), so cells trained before stay valid.
    spec = json.loads((model.parent / "spec.json").read_text())
    assert spec["train"]["replay"]["kl_eval_samples"] == 64
