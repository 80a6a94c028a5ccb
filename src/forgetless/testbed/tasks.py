"""Synthetic domain tasks with exact-match answers, generated deterministically from a seed.

Families (each written as prompt/completion JSONL with train/validation/test splits):

- ``medcalc_cot`` and ``medcalc_label``: clinical calculators in the spirit of
  MedCalc-Bench, worked from the numbers and findings in the prompt: qSOFA and
  CURB-65 (points from thresholds on respiratory rate, blood pressure, the Glasgow
  Coma Scale, urea, age and confusion, then summed). The
  same questions in two supervision styles: chain-of-thought (each finding, its
  points and the running total) and label-only (the answer alone). The wording is
  terse on purpose: every token costs training time on a CPU.
- ``gcs_cot``: the Glasgow Coma Scale from the three findings of a neurological
  exam (eye opening 1-4, verbal response 1-5, motor response 1-6), with
  chain-of-thought. The total (3-15) is balanced in every split, so always giving
  one answer scores at most 1/13 rounded up (8% of 200): a model must read the
  findings to score. Each finding is a word to look up, not a number to copy, which
  the tiny model learns in a few hundred steps (``medcalc_cot`` needs about 1,000,
  and always answering "2" scores 40.5% there); the sum is what it is slow to learn
  (15.5% exact match in 300 steps).
- ``antidote_cot``: poisoning, with chain-of-thought: the agent named in the prompt,
  its drug class (the reasoning line), then the antidote (heroin: opioid, naloxone;
  verapamil: calcium channel blocker, calcium), among findings that do not decide
  it (sex, age, weight, hours since exposure) in random order. Sixteen antidotes,
  balanced in every split, so a constant answer scores at most 13 of 200 (6.5%).
  Both hops are lookups: the reasoning line needs no arithmetic and no copying (the
  tiny base never learned to copy; the class repeats the agent's name only for
  cyanide and heparin, where it is still one fixed word to recall). Measured (``bench/domain_task.py``, plain SFT
  at the demo's settings, one torch thread): see ``configs/quick.yaml``. The demo's
  domain.
- ``sorting``: sort a list of two-digit numbers ascending (a peer domain for merging).
- ``recall``: key-value lookup in a short record (a peer domain for merging).

Every completion ends with ``Answer: <answer>``; see ``forgetless.evaluation.exact_match``.
No prompt appears in two splits of a family.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

Sample = tuple[str, str, str]  # (prompt, chain-of-thought lines, answer)


def _worked(criteria: list[tuple[str, int]]) -> tuple[str, str]:
    """Chain of thought for a points score: each criterion as stated, its points, the running total.

    ``"age 91 +2=2, female +1=3, CHF no +0=3"``: every step copies a finding from
    the prompt and adds one small number to the total just written, so each step
    needs only local information, which is what a tiny model can learn quickly.
    """
    steps, total = [], 0
    for finding, points in criteria:
        total += points
        steps.append(f"{finding} +{points}={total}")
    return ", ".join(steps) + ".", str(total)


def _qsofa(rng: random.Random) -> Sample:
    rate, sbp, gcs = rng.randint(12, 35), rng.randint(80, 160), rng.randint(9, 15)
    cot, answer = _worked(
        [
            (f"rate {rate}", int(rate >= 22)),  # respiratory rate >= 22 / min
            (f"SBP {sbp}", int(sbp <= 100)),  # systolic blood pressure <= 100 mmHg
            (f"GCS {gcs}", int(gcs < 15)),  # altered mentation: Glasgow Coma Scale < 15
        ]
    )
    return f"qSOFA: rate {rate}, SBP {sbp}, GCS {gcs}.", cot, answer


def _curb65(rng: random.Random) -> Sample:
    confusion = rng.random() < 0.3
    urea = rng.randint(3, 14)
    rate = rng.randint(14, 40)
    sbp, dbp = rng.randint(75, 160), rng.randint(45, 95)
    age = rng.randint(20, 95)
    cot, answer = _worked(
        [
            (f"confusion {'yes' if confusion else 'no'}", int(confusion)),
            (f"urea {urea}", int(urea > 7)),  # urea > 7 mmol/L
            (f"rate {rate}", int(rate >= 30)),  # respiratory rate >= 30 / min
            (f"BP {sbp}/{dbp}", int(sbp < 90 or dbp <= 60)),  # systolic < 90 or diastolic <= 60 mmHg
            (f"age {age}", int(age >= 65)),
        ]
    )
    prompt = f"CURB-65: confusion {'yes' if confusion else 'no'}, urea {urea}, rate {rate}, BP {sbp}/{dbp}, age {age}."
    return prompt, cot, answer


def _medcalc(rng: random.Random) -> Sample:
    return rng.choice([_qsofa, _curb65])(rng)


# Glasgow Coma Scale (Teasdale & Jennett 1974): each component's findings by points,
# in three wordings each as charts write them, so prompts are many and a model must
# read the words rather than memorize a handful of exams.
_GCS_EYES = {4: ("spontaneous", "open", "eyes open"), 3: ("to voice", "to speech", "to command"),
             2: ("to pain", "to pressure", "to pinch"), 1: ("none", "closed", "no opening")}
_GCS_VERBAL = {5: ("oriented", "normal", "converses"), 4: ("confused", "disoriented", "confused speech"),
               3: ("words", "inappropriate words", "random words"), 2: ("sounds", "moans", "groans"),
               1: ("none", "silent", "no speech")}
_GCS_MOTOR = {6: ("obeys", "follows commands", "obeys commands"), 5: ("localizes", "localizes pain", "purposeful"),
              4: ("withdraws", "withdrawal", "pulls away"), 3: ("flexion", "decorticate", "abnormal flexion"),
              2: ("extension", "decerebrate", "extensor"), 1: ("flaccid", "no movement", "no motor")}
GCS_TOTALS = tuple(range(3, 16))


def _gcs(rng: random.Random) -> Sample:
    # The total is drawn first and uniformly, then findings that add up to it:
    # drawing findings uniformly would make totals near 9 five times likelier than 3 or 15.
    total = rng.choice(GCS_TOTALS)
    ways = [(e, v, total - e - v) for e in _GCS_EYES for v in _GCS_VERBAL if 1 <= total - e - v <= 6]
    eyes, verbal, motor = rng.choice(ways)
    words = rng.choice(_GCS_EYES[eyes]), rng.choice(_GCS_VERBAL[verbal]), rng.choice(_GCS_MOTOR[motor])
    age = rng.randint(18, 95)  # charted with the exam; it does not enter the score
    cot, answer = _worked([(f"eyes {words[0]}", eyes), (f"verbal {words[1]}", verbal), (f"motor {words[2]}", motor)])
    return f"GCS: age {age}, eyes {words[0]}, verbal {words[1]}, motor {words[2]}.", cot, answer


# Poisoning -> drug class -> antidote, as standard toxicology references give them
# (e.g. Goldfrank's Toxicologic Emergencies): {agent: (class, antidote)}. One agent per
# class: with four agents per class (64 names to map) the version-5 tiny base reached
# only 21% in 200 steps and 40% in 400, with two (32) 23% in 200, with one 60% in 200
# (bench/domain_task.py); the class, not the antidote, was what it got wrong.
_POISONS: dict[str, tuple[str, str]] = {
    "heroin": ("opioid", "naloxone"),
    "diazepam": ("benzodiazepine", "flumazenil"),
    "paracetamol": ("acetaminophen", "acetylcysteine"),
    "malathion": ("organophosphate", "atropine"),
    "diphenhydramine": ("anticholinergic", "physostigmine"),
    "digoxin": ("cardiac glycoside", "digoxin Fab"),
    "methanol": ("toxic alcohol", "fomepizole"),
    "cyanide": ("cyanide", "hydroxocobalamin"),
    "propranolol": ("beta blocker", "glucagon"),
    "verapamil": ("calcium channel blocker", "calcium"),
    "ferrous sulfate": ("iron", "deferoxamine"),
    "warfarin": ("coumarin", "vitamin K"),
    "heparin": ("heparin", "protamine"),
    "amitriptyline": ("tricyclic", "sodium bicarbonate"),
    "glipizide": ("sulfonylurea", "octreotide"),
    "dapsone": ("methemoglobin inducer", "methylene blue"),
}
ANTIDOTES = tuple(antidote for _, antidote in _POISONS.values())


def _antidote(rng: random.Random) -> Sample:
    agent = rng.choice(list(_POISONS))
    drug_class, antidote = _POISONS[agent]
    # Findings that do not decide the answer, in random order around the agent, so a
    # model must find the key phrase rather than read a fixed position.
    findings = [f"{rng.randint(1, 12)} h ago", f"{rng.randint(40, 110)} kg", agent]
    rng.shuffle(findings)
    who = f"{rng.choice(('man', 'woman'))} {rng.randint(16, 90)}"
    return f"Poisoning: {who}, {', '.join(findings)}. Antidote?", f"{drug_class}.", antidote


_KEYS = ("fig", "oak", "ash", "elm", "yew", "ivy", "rye", "bay", "asp", "cod", "eel", "jay", "owl", "ram", "yak", "gnu")


def _recall(rng: random.Random) -> Sample:
    keys = rng.sample(_KEYS, 5)
    values = [rng.randint(10, 99) for _ in keys]
    target = rng.randrange(len(keys))
    record = ", ".join(f"{k}={v}" for k, v in zip(keys, values))
    return f"Record: {record}. What is the value of {keys[target]}?", "", str(values[target])


def _sorting(rng: random.Random) -> Sample:
    numbers = [rng.randint(10, 99) for _ in range(rng.randint(4, 6))]
    listed = " ".join(map(str, numbers))
    return f"Sort ascending: {listed}.", "", " ".join(map(str, sorted(numbers)))


@dataclass(frozen=True)
class Family:
    """A task family: a sampler and a supervision style."""

    name: str
    sample: Callable[[random.Random], Sample]
    chain_of_thought: bool
    description: str
    # When set, every split holds each answer equally often (up to one), so the
    # constant-answer floor is as low as the answer space allows.
    balanced_answers: tuple[str, ...] | None = None


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("medcalc_cot", _medcalc, True, "clinical scores (qSOFA, CURB-65), chain-of-thought"),
        Family("medcalc_label", _medcalc, False, "the same clinical calculators, label-only answers"),
        Family("gcs_cot", _gcs, True, "Glasgow Coma Scale from exam findings, chain-of-thought, balanced totals",
               balanced_answers=tuple(map(str, GCS_TOTALS))),
        Family("antidote_cot", _antidote, True, "poisoning: agent -> drug class -> antidote, chain-of-thought",
               balanced_answers=ANTIDOTES),
        Family("sorting", _sorting, False, "sort a list of two-digit numbers (peer domain)"),
        Family("recall", _recall, False, "key-value lookup in a record (peer domain)"),
    )
}


def constant_answer_floor(rows: list[dict[str, str]]) -> tuple[str, float]:
    """The most frequent answer of ``rows`` and the share of rows it answers: what a constant answer scores."""
    answer, count = Counter(row["answer"] for row in rows).most_common(1)[0]
    return answer, count / len(rows)


def completion_text(cot: str, answer: str, chain_of_thought: bool) -> str:
    """The supervised completion: optional reasoning, then ``Answer: <answer>``."""
    return f" {cot}\nAnswer: {answer}" if chain_of_thought and cot else f" Answer: {answer}"


def generate_family(family: Family, sizes: dict[str, int], seed: int) -> dict[str, list[dict[str, str]]]:
    """Generate disjoint splits of one family.

    The medcalc families share their seed, so the chain-of-thought and label-only
    styles ask exactly the same questions.

    Args:
        family: the task family.
        sizes: examples per split, e.g. ``{"train": 4000, "validation": 200, "test": 200}``.
        seed: the random seed.

    Returns:
        ``{split: [{"prompt", "completion", "answer"}]}``; no prompt is in two splits.
    """
    stream = family.name.split("_")[0]
    rng = random.Random(f"{seed}-{stream}")
    seen: set[str] = set()
    splits: dict[str, list[dict[str, str]]] = {}
    # Held-out splits are drawn first so that a larger training set never changes them.
    for split in sorted(sizes, key=lambda s: s == "train"):
        rows: list[dict[str, str]] = []
        attempts = 0
        per_answer: dict[str, int] = {}
        cap = -(-sizes[split] // len(family.balanced_answers)) if family.balanced_answers else None
        while len(rows) < sizes[split]:
            attempts += 1
            if attempts > 50 * sizes[split] + 1000:
                raise ValueError(f"{family.name}: cannot draw {sizes[split]} distinct {split} examples")
            prompt, cot, answer = family.sample(rng)
            if prompt in seen or (cap is not None and per_answer.get(answer, 0) >= cap):
                continue
            seen.add(prompt)
            per_answer[answer] = per_answer.get(answer, 0) + 1
            rows.append(
                {
                    "prompt": prompt + "\n",
                    "completion": completion_text(cot, answer, family.chain_of_thought),
                    "answer": answer,
                }
            )
        splits[split] = rows
    return splits
