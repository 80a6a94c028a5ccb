"""Result rows of a study: their kinds, the seed groups they form, and the method family each stands for.

A row is one evaluated model (a JSON object in ``results.jsonl``). Besides its
means it carries its per-item scores under ``items`` (``domain_correct`` on the
test set, ``validation_correct`` on the validation slice, ``general_nats`` and
``general_tokens`` per held-out document), so every paired interval the report
states can be recomputed from the results file alone. ``answer_extraction`` names the
rule its exact match was read with (``forgetless.evaluation.answer_extraction``); the
base row's constant-answer floor (``majority_answer``, ``items["floor_correct"]``) is
compared with the same rule.

Row ids are ``METHOD/lr=LR/seed=S`` for trained models, that id plus
``/interp=A`` or ``/ensemble=A`` for sweep points, ``cocktail/<parent id>`` for
LM-Cocktail; dropping the ``seed=S`` part gives the id of the seed group, the
unit every choice of the study is made on (a learning rate is chosen for all of
its seeds, not for its luckiest one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

Row = dict[str, Any]


class RowKind(str, Enum):
    """What a row measures; the string values are what ``results.jsonl`` stores.

    These are the kinds the study's own stages make and the report knows; a stage of
    one's own makes rows of a new kind with a ``str`` enum of its own (``make_row``).
    """

    BASE = "base"
    TRAINED = "trained"
    INTERPOLATION = "interpolation"  # WiSE-FT: weights (1 - alpha) * base + alpha * fine-tuned
    ENSEMBLE = "ensemble"  # output ensemble: probabilities mixed the same way
    COCKTAIL = "cocktail"

    def __str__(self) -> str:
        return self.value


# The families the seed claims name (docs: the claims table of the study report).
FAMILIES = ("sft", "talr", "flow", "dft", "l2sp", "lora", "cf-replay", "contextual-replay", "corpus-replay")


def family_of(train: dict[str, Any]) -> str | None:
    """The method family a study method stands for, from its TrainConfig keys; None when it mixes several.

    Only a method that changes one thing relative to plain SFT has a family: TALR
    with LoRA is neither "talr" nor "lora" for the claims (name it with ``family``
    in the study config when it should count as one).
    """
    objective = train.get("method", "nll")
    regularizers = {k for k, v in (train.get("regularizers") or {}).items() if v is not None}
    replay = train.get("replay")
    replay_data = replay if isinstance(replay, str) else (replay or {}).get("data")
    changes = [objective != "nll", bool(regularizers), bool(train.get("lora")), bool(replay)]
    if sum(changes) > 1:
        return None
    if objective != "nll":
        return objective if objective in FAMILIES else None
    if regularizers:
        return "l2sp" if regularizers == {"l2sp"} else None
    if train.get("lora"):
        return "lora"
    if replay:
        return {"context-free": "cf-replay", "contextual": "contextual-replay", "corpus": "corpus-replay"}.get(
            str(replay_data))
    return "sft"


def group_id(row_id: str) -> str:
    """The seed group of a row: its id without the ``seed=S`` part."""
    return re.sub(r"/seed=-?\d+", "", row_id)


@dataclass(frozen=True)
class Group:
    """The rows of one configuration over its seeds, with per-item scores averaged over the seeds.

    Averaging per item before bootstrapping over items keeps the interval paired
    (the same test examples and documents for both sides) while counting each
    seed's model once.
    """

    id: str
    rows: tuple[Row, ...]

    @property
    def first(self) -> Row:
        return self.rows[0]

    @property
    def kind(self) -> str:
        return str(self.first["kind"])

    @property
    def label(self) -> str:
        label = str(self.first["label"])
        return re.sub(r" s-?\d+$", "", label) + (f" ({len(self.rows)} seeds)" if len(self.rows) > 1 else "")

    def get(self, key: str, default: Any = None) -> Any:
        return self.first.get(key, default)

    def mean(self, key: str) -> float:
        """The mean over seeds of a numeric row field (``domain_accuracy``, ``forgetting``, ...)."""
        return float(np.mean([r[key] for r in self.rows]))

    def items(self, key: str) -> np.ndarray:
        """``[n]`` per-item scores averaged over the seeds (``domain_correct``, ``general_nats``, ...)."""
        return np.mean([np.asarray(r["items"][key], dtype=np.float64) for r in self.rows], axis=0)

    def has(self, key: str) -> bool:
        return all(key in (r.get("items") or {}) for r in self.rows)

    @property
    def validation_accuracy(self) -> float | None:
        """Mean validation exact match over the seeds; None when the rows carry none."""
        values = [r.get("validation_accuracy") for r in self.rows]
        return None if any(v is None for v in values) else float(np.mean(values))


def groups(rows: list[Row], *kinds: RowKind | str) -> list[Group]:
    """The seed groups of the rows of the given kinds (all kinds when none), in first-seen order."""
    wanted = {str(k) for k in kinds}
    order: dict[str, list[Row]] = {}
    for row in rows:
        if not wanted or str(row["kind"]) in wanted:
            order.setdefault(group_id(row["id"]), []).append(row)
    return [Group(gid, tuple(members)) for gid, members in order.items()]


def base_group(rows: list[Row]) -> Group:
    """The base model's group (one row)."""
    found = groups(rows, RowKind.BASE)
    if not found:
        raise ValueError("results: no base row; every study evaluates the base model first")
    return found[0]
