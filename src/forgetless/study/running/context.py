"""What every stage of a study shares: the context, its progress line, and the one place models load.

A stage (``forgetless.study.running.stages``) reads the study's config, paths and
tokenizer from a ``Context`` and loads every model through ``load_study_model``, so
the study's load policy (float32, safetensors only, no remote code unless asked)
lives here and nowhere else in ``forgetless.study``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from forgetless.models import load_causal_lm
from forgetless.models import load_tokenizer as models_tokenizer
from forgetless.prompting import uses_chat
from forgetless.special_tokens import adds_bos
from forgetless.study.config import StudyConfig
from forgetless.study.rows import Row
from forgetless.testbed.specs import resolve_spec


def resolve_data(spec: str) -> str:
    """A data file of the study: ``testbed:PRESET/relative/path`` resolved into the built testbed
    (the study is an entry point: it resolves its config's specs itself); paths pass through."""
    return resolve_spec(spec)


def resolve_base(spec: str) -> str:
    """The directory (or hub id) of a study's ``base_model`` (``testbed:PRESET[@DTYPE]`` resolved)."""
    return resolve_spec(spec)


def load_study_model(path: str, trust_remote_code: bool = False) -> PreTrainedModel:
    """A study model in float32, through the one load policy (safetensors only)."""
    return load_causal_lm(path, torch.float32, trust_remote_code)


def load_tokenizer(path: str, add_bos: str = "auto", chat_template: str = "auto",
                   trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer of a study model (padding set when it has none, the study's BOS convention and prompt
    format settled)."""
    return models_tokenizer(path, trust_remote_code, add_bos=add_bos, chat_template=chat_template)


def tokens_key(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """What the cells' keys say of the BOS convention and the prompt format: nothing while it is what forgetless
    always did (BOS first when the tokenizer has one), so the cells of studies written before the rule keep their
    keys; the convention otherwise, so a study resumed under the new rule recomputes the cells whose inputs
    changed."""
    add_bos = adds_bos(tokenizer)
    key: dict[str, Any] = {} if add_bos == (tokenizer.bos_token_id is not None) else {"add_bos": add_bos}
    return {**key, "chat_template": True} if uses_chat(tokenizer) else key


@dataclass
class Progress:
    """One line per stage with an overall ETA (train stages weigh more than evaluations)."""

    total: float
    print_fn: Callable[[str], None] = print
    done: float = 0.0
    start: float = field(default_factory=time.time)
    stage: int = 0

    def begin(self, what: str, weight: float, cached: bool) -> None:
        self.stage += 1
        elapsed = time.time() - self.start
        eta = f"ETA {elapsed / self.done * (self.total - self.done) / 60:.1f} min" if self.done else "ETA -"
        state = "cached" if cached else "running"
        share = self.done / self.total if self.total > 0 else 1.0  # cached stages can take the total to 0
        self.print_fn(f"[study {share:4.0%} | {elapsed / 60:5.1f} min | {eta}] {what} ({state})")

    def end(self, weight: float, cached: bool) -> None:
        # Cached stages cost nothing; counting them as done would distort the ETA.
        if cached:
            self.total -= weight
        else:
            self.done += weight


@dataclass
class Context:
    """What every stage of one study shares."""

    cfg: StudyConfig
    root: Path
    base_path: str
    tokenizer: PreTrainedTokenizerBase
    general_texts: list[str]
    test_path: str
    eval_spec: dict[str, Any]
    progress: Progress
    validation_path: str | None = None
    train_data: str | None = None  # the training data models see (train minus a carved validation split)
    general_path: str | None = None  # the held-out general corpus ``general_texts`` was read from
    kl_samples: list[Any] | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # about the data, for the base row (prepare_domain_data)
    rows: list[Row] = field(default_factory=list)  # the rows of the stages assembled so far
    diverged: list[dict[str, str]] = field(default_factory=list)  # runs whose loss or weights became NaN or inf
    measurements: dict[str, dict[str, Any]] = field(default_factory=dict)  # by row id: what each row was made from

    def load_model(self, path: str) -> PreTrainedModel:
        """A model of this study (the base, a trained model), as ``load_study_model`` loads it, running the
        model's own code only when the study says ``trust_remote_code: true``."""
        return load_study_model(path, self.cfg.trust_remote_code)
