"""The embedded testbed: corpus split, tokenizer, and the domain task generators."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from forgetless.evaluation.exact_match import extract_answer
from forgetless.testbed.corpus import load_documents, split_documents
from forgetless.testbed.presets import PRESETS
from forgetless.testbed.tasks import FAMILIES, constant_answer_floor, generate_family


def test_corpus_split_is_by_whole_document_and_disjoint() -> None:
    documents = load_documents()
    assert len(documents) == 66 and documents[0].name == "Genesis"
    train, heldout = split_documents(documents)
    assert len(train) + len(heldout) == 66 and len(heldout) >= 6
    assert not {d.name for d in train} & {d.name for d in heldout}
    train_paragraphs = {p for d in train for p in d.paragraphs}
    assert not any(p in train_paragraphs for d in heldout for p in d.paragraphs)


def test_tokenizer_splits_digits_and_has_specials(tokenizer) -> None:
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("rate 128, 86/48", add_special_tokens=False)["input_ids"])
    # One digit a token; the space before a number rides on its first digit.
    assert tokens[-9:] == ["Ġ1", "2", "8", ",", "Ġ8", "6", "/", "4", "8"]
    assert tokenizer.bos_token and tokenizer.eos_token and tokenizer.pad_token
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered == "<|bos|>User: hi\nAssistant:"


def test_tasks_are_deterministic_and_splits_disjoint() -> None:
    sizes = {"train": 300, "validation": 50, "test": 50}
    for family in FAMILIES.values():
        a = generate_family(family, sizes, seed=0)
        assert a == generate_family(family, sizes, seed=0)
        assert a != generate_family(family, sizes, seed=1)
        prompts = [{r["prompt"] for r in a[s]} for s in sizes]
        assert all(len(p) == sizes[s] for p, s in zip(prompts, sizes))
        assert not (prompts[0] & prompts[1] or prompts[0] & prompts[2] or prompts[1] & prompts[2])
        for row in a["train"]:
            assert extract_answer(row["completion"]) == row["answer"]


def test_held_out_splits_do_not_depend_on_the_training_size() -> None:
    family = FAMILIES["medcalc_cot"]
    small = generate_family(family, {"train": 10, "validation": 20, "test": 20}, seed=0)
    large = generate_family(family, {"train": 500, "validation": 20, "test": 20}, seed=0)
    assert small["test"] == large["test"] and small["validation"] == large["validation"]


def test_cot_and_label_styles_ask_the_same_questions() -> None:
    sizes = {"train": 20, "validation": 5, "test": 5}
    cot = generate_family(FAMILIES["medcalc_cot"], sizes, seed=3)
    label = generate_family(FAMILIES["medcalc_label"], sizes, seed=3)
    assert [r["prompt"] for r in cot["test"]] == [r["prompt"] for r in label["test"]]
    assert all(r["completion"] == f" Answer: {r['answer']}" for r in label["test"])
    assert all("\nAnswer: " in r["completion"] and r["completion"].count("=") >= 2 for r in cot["test"])


def _recompute(prompt: str) -> int:
    """Score a medcalc prompt independently of the generator, from its text."""
    num = lambda key: int(re.search(key + r" (\d+)", prompt).group(1))  # noqa: E731
    if prompt.startswith("qSOFA"):
        return (num("rate") >= 22) + (num("SBP") <= 100) + (num("GCS") < 15)
    sbp, dbp = map(int, re.search(r"BP (\d+)/(\d+)", prompt).groups())
    return ("confusion yes" in prompt) + (num("urea") > 7) + (num("rate") >= 30) + (sbp < 90 or dbp <= 60) + (num("age") >= 65)


def test_medcalc_answers_match_an_independent_computation() -> None:
    rows = generate_family(FAMILIES["medcalc_cot"], {"train": 600, "validation": 1, "test": 1}, seed=0)["train"]
    assert {r["prompt"].split(":")[0] for r in rows} == {"qSOFA", "CURB-65"}
    for row in rows:
        assert int(row["answer"]) == _recompute(row["prompt"]), row


def _gcs_points() -> dict[str, int]:
    """Every GCS finding's points, from the scale itself (Teasdale & Jennett), not from the generator."""
    table = {
        "eyes": {4: "spontaneous|open|eyes open", 3: "to voice|to speech|to command",
                 2: "to pain|to pressure|to pinch", 1: "none|closed|no opening"},
        "verbal": {5: "oriented|normal|converses", 4: "confused|disoriented|confused speech",
                   3: "words|inappropriate words|random words", 2: "sounds|moans|groans", 1: "none|silent|no speech"},
        "motor": {6: "obeys|follows commands|obeys commands", 5: "localizes|localizes pain|purposeful",
                  4: "withdraws|withdrawal|pulls away", 3: "flexion|decorticate|abnormal flexion",
                  2: "extension|decerebrate|extensor", 1: "flaccid|no movement|no motor"},
    }
    return {f"{part} {word}": points for part, rows in table.items() for points, words in rows.items()
            for word in words.split("|")}


def test_gcs_answers_match_the_scale_and_no_total_is_overrepresented() -> None:
    points = _gcs_points()
    splits = generate_family(FAMILIES["gcs_cot"], {"train": 1300, "validation": 130, "test": 200}, seed=0)
    for rows in splits.values():
        for row in rows:
            findings = row["prompt"].removeprefix("GCS: ").rstrip(".\n").split(", ")[1:]
            assert int(row["answer"]) == sum(points[f] for f in findings), row
        counts = Counter(row["answer"] for row in rows)
        assert set(counts) == {str(t) for t in range(3, 16)}
        assert max(counts.values()) == -(-len(rows) // 13)  # no total more often than an even share allows
    # The constant-answer floor: 16 of 200 test problems, the least 13 totals allow.
    assert max(Counter(r["answer"] for r in splits["test"]).values()) / 200 == 0.08


# Poisoning agent -> (drug class, antidote), from toxicology references (Goldfrank's), not from the generator.
_ANTIDOTE_OF = {
    "heroin": ("opioid", "naloxone"), "diazepam": ("benzodiazepine", "flumazenil"),
    "paracetamol": ("acetaminophen", "acetylcysteine"), "malathion": ("organophosphate", "atropine"),
    "diphenhydramine": ("anticholinergic", "physostigmine"), "digoxin": ("cardiac glycoside", "digoxin Fab"),
    "methanol": ("toxic alcohol", "fomepizole"), "cyanide": ("cyanide", "hydroxocobalamin"),
    "propranolol": ("beta blocker", "glucagon"), "verapamil": ("calcium channel blocker", "calcium"),
    "ferrous sulfate": ("iron", "deferoxamine"), "warfarin": ("coumarin", "vitamin K"),
    "heparin": ("heparin", "protamine"), "amitriptyline": ("tricyclic", "sodium bicarbonate"),
    "glipizide": ("sulfonylurea", "octreotide"), "dapsone": ("methemoglobin inducer", "methylene blue"),
}


def test_antidote_follows_the_agent_and_no_constant_scores_over_ten_percent() -> None:
    """The splits the tiny testbed writes: right answers, disjoint splits, a floor of 13 in 200."""
    sizes = PRESETS["tiny"].task_sizes
    splits = generate_family(FAMILIES["antidote_cot"], sizes, seed=PRESETS["tiny"].seed)
    for split, rows in splits.items():
        assert len(rows) == sizes[split]
        for row in rows:
            findings = row["prompt"].removeprefix("Poisoning: ").removesuffix(". Antidote?\n").split(", ")
            agents = [f for f in findings if f in _ANTIDOTE_OF]
            assert len(findings) == 4 and len(agents) == 1, row  # who, weight, time, and one agent
            drug_class, antidote = _ANTIDOTE_OF[agents[0]]
            # The reasoning line names the class, a word the prompt does not hold for 14 of 16 agents.
            assert row["completion"] == f" {drug_class}.\nAnswer: {antidote}" and row["answer"] == antidote
        counts = Counter(row["answer"] for row in rows)
        assert len(counts) == 16 and max(counts.values()) == -(-len(rows) // 16)
    prompts = {split: {row["prompt"] for row in rows} for split, rows in splits.items()}
    assert not (prompts["train"] & prompts["validation"] or prompts["train"] & prompts["test"]
                or prompts["validation"] & prompts["test"])
    assert constant_answer_floor(splits["test"])[1] == 13 / 200 <= 0.10


def test_peer_answers_are_right() -> None:
    sizes = {"train": 50, "validation": 1, "test": 1}
    for row in generate_family(FAMILIES["sorting"], sizes, seed=0)["train"]:
        numbers = [int(x) for x in re.findall(r"\d+", row["prompt"])]
        assert row["answer"] == " ".join(map(str, sorted(numbers)))
    for row in generate_family(FAMILIES["recall"], sizes, seed=0)["train"]:
        key = re.search(r"value of (\w+)\?", row["prompt"]).group(1)
        assert row["answer"] == re.search(key + r"=(\d+)", row["prompt"]).group(1)


def test_presets_are_ordered_by_size() -> None:
    tiny, small = PRESETS["tiny"], PRESETS["small"]
    assert tiny.vocab_size == small.vocab_size == 8192
    assert small.hidden_size * small.num_layers > tiny.hidden_size * tiny.num_layers
    assert random.Random(0).random() == random.Random(0).random()


def test_the_tiny_recipe_is_pinned_with_its_precision() -> None:
    """`testbed:tiny` names the same model on every machine: its recipe, precision included, is fixed.

    The hash below is the recipe's; if this fails, the recipe changed, which builds a
    new testbed everywhere and invalidates every cached study: update it on purpose.
    """
    from dataclasses import replace

    from forgetless.testbed.presets import get_preset

    tiny = get_preset("tiny")
    assert tiny.precision == "fp32" and tiny.recipe()["precision"] == "fp32"
    # c8f81974f306: testbed version 7 (the tokenizer declares that it adds BOS, issue 33);
    # version 6 (antidote_cot added) was facd6e750c19, version 5 0bfa554e3b69.
    assert tiny.recipe_hash() == "c8f81974f306"
    assert replace(tiny, precision="bf16").recipe_hash() != tiny.recipe_hash()


def test_pretraining_runs_in_the_recipes_precision(monkeypatch) -> None:  # noqa: ANN001
    """The build hands the recipe's precision to the trainer, never `auto`."""
    from forgetless.testbed import build

    seen = {}

    def fake_make_trainer(cfg, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen["precision"] = cfg.precision
        raise RuntimeError("stop")

    monkeypatch.setattr(build, "make_trainer", fake_make_trainer)
    monkeypatch.setattr(build, "load_examples", lambda *a, **k: [])
    monkeypatch.setattr(build, "build_base_model", lambda preset, tok: torch.nn.Linear(1, 1))
    with pytest.raises(RuntimeError, match="stop"):
        build._pretrain(build.get_preset("tiny"), None, Path("corpus.jsonl"), Path("work"))
    assert seen["precision"] == "fp32"


def test_a_task_file_resolves_without_building_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real model's study reads the testbed's data: it is written alone, identical to the build's."""
    from forgetless.testbed.presets import get_preset
    from forgetless.testbed.specs import resolve_spec
    from forgetless.testbed.tasks import FAMILIES, generate_family

    monkeypatch.setenv("FORGETLESS_CACHE", str(tmp_path))
    path = Path(resolve_spec("testbed:tiny/tasks/antidote_cot/train.jsonl"))
    preset = get_preset("tiny")
    want = generate_family(FAMILIES["antidote_cot"], preset.task_sizes, preset.seed)["train"]
    assert [json.loads(line) for line in path.read_text().splitlines()] == want
    assert not list(tmp_path.glob("testbed/*"))  # nothing built
    assert resolve_spec("testbed:tiny/tasks/sorting/test.jsonl").startswith(str(path.parents[2]))
