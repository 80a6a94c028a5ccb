"""The study config: one YAML that names the base model, the data, the methods and the sweeps.

A study trains one model per method x learning rate x seed, evaluates every model
(and every interpolation / ensemble point) on the same general and domain data, and
writes a report. Everything here is validated before any work starts; errors name
the key (``methods.2.learning_rates``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from forgetless.config import build_config, load_yaml
from forgetless.training.config import TrainConfig
from forgetless.data.spec import DataSpec
from forgetless.evaluation.answer_extraction import EXPECTED, check_spec
from forgetless.prompting import ChatSetting
from forgetless.special_tokens import AddBosSetting
from forgetless.study.rows import FAMILIES
from forgetless.study.tuning.halving import check_search, corner_configs
from forgetless.study.tuning.space import SearchConfig, SearchSpace

# Keys a method entry may set for its runs: everything in TrainConfig except what
# the study itself decides (where data comes from, where models go, the lr and seed).
_STUDY_OWNED = {"model", "data", "output", "learning_rate", "learning_rates", "seed", "overwrite"}
# lm_eval.include_path's name for the general-ability probes the study writes (forgetless.testbed.probes).
PROBES_INCLUDE = "probes"


class LmEvalConfig(BaseModel):
    """lm-eval tasks that measure general ability on every model (``general: {text: ..., lm_eval: {...}}``).

    Each task's per-document scores are compared with the base's item by item, so its
    forgetting gets a paired interval like the held-out loss's (``forgetless.evaluation.lmeval_items``).
    Needs the optional extra ``pip install 'forgetless[lmeval]'``.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tasks: list[str] = Field(min_length=1, description="lm-eval task or group names (mmlu, arc_challenge, "
                                                       "hellaswag, ifeval, gsm8k; forgetless_cloze on the testbed).")
    include_path: str | None = Field(None, description="A folder of extra task YAMLs; testbed:PRESET writes the "
                                                       "testbed's (forgetless_cloze and one per task family); "
                                                       "probes writes the general-ability probes (forgetless_probes, "
                                                       "forgetless_probe_<name>; docs/probes.md).")
    limit: int | None = Field(None, gt=0, description="Documents per task (the first N; lm-eval's --limit).")
    num_fewshot: int | None = Field(None, ge=0, description="Few-shot examples per prompt (the task's default if unset).")
    batch_size: int = Field(32, gt=0, description="Requests per forward pass.")
    apply_chat_template: bool = Field(
        False, description="Render each request as a chat (lm-eval's --apply_chat_template); general-ability "
        "tasks written as text continuations (the probes, the cloze) stay text.")


class DataConfig(BaseModel):
    """The domain data (prompt/completion with answers) and the general evaluation text.

    Each is a data spec (``forgetless.data.spec``): a path, ``hf:NAME[:CONFIG]:SPLIT``, or a
    mapping ``{source: ..., fields: {...}, template: {...}, replace: {...}}`` that maps a
    dataset's columns to forgetless's fields. ``general`` may also be
    ``{text: SPEC, lm_eval: {tasks: [...], ...}}``: held-out text plus benchmark tasks.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _general_with_tasks(cls, values: Any) -> Any:
        general = values.get("general") if isinstance(values, dict) else None
        if isinstance(general, dict) and ("text" in general or "lm_eval" in general) and "source" not in general:
            unknown = sorted(set(general) - {"text", "lm_eval"})
            if unknown or "text" not in general:
                raise ValueError(f"general: expected {{text: SPEC, lm_eval: {{...}}}}; "
                                 f"{'unknown keys ' + str(unknown) if unknown else 'text is missing'}")
            values = {**values, "general": general["text"], "general_lm_eval": general.get("lm_eval")}
        return values

    train: DataSpec = Field(description="Domain training data (any format `forgetless train` reads).")
    validation: DataSpec | None = Field(
        None,
        description="Domain validation set (prompt with answer): the study chooses on it (the model to ship within the "
        "budget, each method's learning rate, each sweep's alpha) and takes LM-Cocktail's target examples from it; "
        "the test set only reports. Absent: a split is carved from train (see eval.validation_limit).",
    )
    test: DataSpec = Field(description="Domain test set: prompt/completion with 'answer' or a completion ending 'Answer: X'.")
    general: DataSpec = Field(description="Held-out general text (JSONL with 'text'): forgetting is measured here.")
    general_lm_eval: LmEvalConfig | None = Field(
        None, description="lm-eval tasks measuring general ability too (written as general: {text: ..., lm_eval: ...}).")


class MethodConfig(BaseModel):
    """One row of the comparison: a training method with its parameters and learning rates."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(description="Label in the report, unique in the study (e.g. 'talr', 'sft-lr1e-3').")
    family: str | None = Field(
        None,
        description="Which method a seed claim should count this as (sft, talr, flow, dft, l2sp, lora, cf-replay, "
        "contextual-replay, corpus-replay); default: inferred from train when it changes one thing from plain SFT.",
    )
    learning_rates: list[float] = Field(
        default_factory=list, description="One run per learning rate (and per seed); `auto` searches the learning "
        "rate and the family's key parameter instead (docs/tuning.md).")
    search: SearchSpace | None = Field(
        None, description="Tune this method: the space the search stage searches (docs/tuning.md); "
        "`learning_rates: auto` is this with the defaults.")
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainConfig keys for this method (method, method_params, regularizers, lora, replay, ...).",
    )

    @model_validator(mode="before")
    @classmethod
    def _auto(cls, values: Any) -> Any:
        # `learning_rates: auto` is a search with the defaults (the study's range, the family's key parameter).
        if isinstance(values, dict) and values.get("learning_rates") == "auto":
            if values.get("search") is not None:
                raise ValueError("learning_rates: auto and a search block: give one of them")
            values = {**values, "learning_rates": [], "search": {}}
        return values

    @model_validator(mode="after")
    def _rates_or_search(self) -> MethodConfig:
        if self.search is None and not self.learning_rates:
            raise ValueError("learning_rates: expected at least one learning rate, or auto (or a search block)")
        if self.search is not None and self.learning_rates:
            raise ValueError("learning_rates and search: a tuned method searches its learning rate; give one of them")
        return self

    @property
    def tuned(self) -> bool:
        """Whether the search stage tunes this method (``learning_rates: auto`` or ``search:``)."""
        return self.search is not None

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str | None) -> str | None:
        if value is not None and value not in FAMILIES:
            raise ValueError(f"unknown family {value!r}; expected one of {list(FAMILIES)}")
        return value

    @field_validator("train")
    @classmethod
    def _no_study_owned(cls, value: dict[str, Any]) -> dict[str, Any]:
        owned = sorted(set(value) & _STUDY_OWNED)
        if owned:
            raise ValueError(f"{owned} are set by the study itself (base_model, data, learning_rates, seeds)")
        return value


class SweepConfig(BaseModel):
    """Post-hoc combinations of each fine-tuned model with the base."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    interpolation: list[float] = Field(
        default_factory=lambda: [0.25, 0.5, 0.75],
        description="WiSE-FT alphas strictly between 0 and 1 (0 is the base, 1 the fine-tuned model, both measured anyway).",
    )
    ensemble: list[float] = Field(default_factory=lambda: [0.5], description="Output-ensemble alphas (two forward passes).")
    methods: list[str] | None = Field(None, description="Sweep only these methods' models (default: all).")

    @field_validator("interpolation", "ensemble")
    @classmethod
    def _open_interval(cls, value: list[float]) -> list[float]:
        bad = [a for a in value if not 0.0 < a < 1.0]
        if bad:
            raise ValueError(f"alphas must lie strictly between 0 and 1, got {bad}")
        return sorted(set(value))


class PeerConfig(BaseModel):
    """A peer-domain model for LM-Cocktail: trained by the study on its own data."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    data: DataSpec = Field(description="Training data of the peer domain (a data spec, like data.train).")
    learning_rate: float = Field(gt=0)


class CocktailConfig(BaseModel):
    """LM-Cocktail (arXiv 2311.13534): α θ_ft + (1 − α) Σ_i w_i θ_i, w = softmax(−L/T) of the base's and
    the peers' loss on a few target examples; α runs over the WiSE-FT grid (``sweeps.interpolation``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    peers: list[PeerConfig] = Field(default_factory=list)
    num_examples: int = Field(
        5, gt=0, description="How many target examples set the weights: the first N of the domain validation set "
                             "(formerly `examples`, still read with a warning).")
    temperature: float = Field(5.0, gt=0)
    method: str | None = Field(None, description="Which method's model is the fine-tuned one (default: the first).")
    candidates: Literal["others", "all"] = Field(
        "others", description="Models in the softmax: others (the paper: base and peers) or all (the fine-tuned "
                              "model too; forgetless's earlier form, a variant).")
    loss: Literal["tokens", "lm-cocktail"] = Field(
        "tokens", description="How L is averaged: tokens (per token, pooled) or lm-cocktail (lm-cocktail 0.0.4's).")

    @model_validator(mode="before")
    @classmethod
    def _renamed_examples(cls, values: Any) -> Any:
        # The count was called `examples`, while `forgetless merge --examples` is a file of
        # examples; the old key keeps working, with a warning a user sees (FutureWarning).
        if isinstance(values, dict) and "examples" in values:
            if "num_examples" in values:
                raise ValueError("examples: the old name of num_examples; give only num_examples")
            warnings.warn("cocktail.examples is deprecated: it is the number of target examples, now "
                          "cocktail.num_examples", FutureWarning, stacklevel=2)
            values = {("num_examples" if k == "examples" else k): v for k, v in values.items()}
        return values

    @model_validator(mode="before")
    @classmethod
    def _alpha_is_swept(cls, values: Any) -> Any:
        if isinstance(values, dict) and "alpha" in values:
            raise ValueError("alpha: the study sweeps LM-Cocktail's alpha over sweeps.interpolation (like WiSE-FT); "
                             "remove cocktail.alpha")
        return values


class ContextFreeConfig(BaseModel):
    """Replay data made by the study, and context-free samples for the KL estimate of forgetting.

    A method's ``replay.data`` may name a source instead of a file (arXiv 2505.13811
    compares the three): ``context-free`` trains on ``replay_samples`` sequences drawn
    once from the base with no context; ``contextual``, on the base's own completions
    of ``replay_samples`` training prompts; ``corpus``, on ``replay_samples`` pieces of
    ``replay_corpus`` (general text, never the held-out set that measures forgetting).
    Every model's KL(p_base || p_model) is estimated on ``kl_samples`` other
    context-free sequences (a different seed), drawn at T = 1.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    replay_samples: int = Field(1000, gt=0, description="Sequences drawn for context-free replay.")
    kl_samples: int = Field(64, ge=0, description="Held-out sequences for the KL estimate (0 turns it off).")
    max_new_tokens: int = Field(64, gt=0, description="Length limit of every drawn sequence.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the replay samples (KL samples use 1).")
    replay_corpus: DataSpec | None = Field(
        None, description="General text (records with 'text') sliced for `replay.data: corpus`, e.g. "
        "testbed:tiny/general/pretrain.jsonl; must not be data.general."
    )


class EvalConfig(BaseModel):
    """How much of the evaluation data every model sees."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    domain_limit: int | None = Field(None, gt=0, description="Score only the first N domain test examples.")
    validation_limit: int = Field(
        100, gt=0,
        description="Score the first N validation examples (what the study chooses on); also the size of the split "
        "carved from train when data.validation is absent (at most a fifth of train).",
    )
    general_limit: int | None = Field(None, gt=0, description="Score only the first N general documents.")
    answer_extraction: str | None = Field(
        None, description=f"How answers are read from generations on the test and validation sets (and the "
        f"constant-answer floor): {EXPECTED.removeprefix('expected ')}; default: what the file's records declare "
        "in 'answer_extraction', else answer_marker (forgetless.evaluation.answer_extraction).")
    bootstrap: int = Field(1000, gt=0, description="Bootstrap resamples for confidence intervals.")
    curve_points: int = Field(
        4, ge=0, description="Points of each trained model's learning curve after step 0 (0 turns curves off)."
    )
    curve_examples: int = Field(32, gt=0, description="Validation examples scored at each learning-curve point.")
    curve_documents: int = Field(8, gt=0, description="General documents scored at each learning-curve point.")

    @field_validator("answer_extraction")
    @classmethod
    def _known_extraction(cls, value: str | None) -> str | None:
        return check_spec(value)


class FrontierConfig(BaseModel):
    """What the frontier plots against domain gain."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    general: str = Field("loss", description="The x-axis: loss (held-out general loss, nats/token) or the name of "
                                             "one of data.general's lm-eval tasks (its forgetting: base score minus "
                                             "the model's).")


class StudyConfig(BaseModel):
    """Everything that determines a study; see configs/quick.yaml for an annotated example."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field("study", description="Title of the report.")
    output: str = Field(description="Study directory: cells, results.jsonl, report.md, report.html.")
    base_model: str = Field(description="Base model: a local directory, a hub id, or testbed:tiny / testbed:small.")
    data: DataConfig
    training: dict[str, Any] = Field(
        default_factory=dict, description="TrainConfig keys shared by every run (epochs, batch_size, ...)."
    )
    methods: list[MethodConfig] = Field(min_length=1)
    # Each seed is checked here, not when its cells train: the training seed goes to numpy, which takes 0 to 2**32 - 1.
    seeds: list[Annotated[int, Field(ge=0, le=2**32 - 1)]] = Field(default_factory=lambda: [0], min_length=1)
    sweeps: SweepConfig = Field(default_factory=SweepConfig)
    cocktail: CocktailConfig | None = None
    context_free: ContextFreeConfig = Field(default_factory=ContextFreeConfig)
    budget: float = Field(
        0.1, ge=0, description="Forgetting budget: held-out general loss may rise by at most this many nats/token."
    )
    eval: EvalConfig = Field(default_factory=EvalConfig)
    search: SearchConfig = Field(default_factory=SearchConfig, description="The budget of every tuned method "
                                 "(trials, successive halving's reduction and rungs; docs/tuning.md).")
    frontier: FrontierConfig = Field(default_factory=FrontierConfig)
    add_bos: AddBosSetting = Field(
        "auto", description="BOS before every sequence, in training and every evaluation: auto follows the base's "
        "tokenizer (forgetless.special_tokens); true or false forces it.")
    chat_template: ChatSetting = Field(
        "auto", description="Render the domain's prompts as a user turn of the base's chat template, in training "
        "and every evaluation of the domain (forgetless.prompting); auto: what a forgetless-trained base was "
        "trained with, else plain text.")

    trust_remote_code: bool = Field(
        False, description="Run the base model's own code from the hub (its tokenizer's too), in training and every "
        "evaluation: only for a model whose source you trust; off, a model that needs it is refused with a message.")

    @field_validator("training")
    @classmethod
    def _tokens_are_the_studys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in ("add_bos", "chat_template", "trust_remote_code"):  # training and evaluation must see one
            if key in value:
                raise ValueError(f"{key} is set for the whole study (top-level key {key}), not under training")
        return value

    @model_validator(mode="after")
    def _frontier_axis(self) -> StudyConfig:
        tasks = self.data.general_lm_eval.tasks if self.data.general_lm_eval else []
        if self.frontier.general not in ("loss", *tasks):
            raise ValueError(f"frontier.general: {self.frontier.general!r}; expected loss or one of the lm-eval tasks "
                             f"of data.general {tasks}")
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> StudyConfig:
        names = [m.name for m in self.methods]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"methods: names must be unique, repeated: {dupes}")
        if self.cocktail and self.cocktail.method and self.cocktail.method not in names:
            raise ValueError(f"cocktail.method: {self.cocktail.method!r} is not one of the methods {names}")
        return self

    @model_validator(mode="after")
    def _search_budget(self) -> StudyConfig:
        check_search(self)  # the search's own rules, beside its code (forgetless.study.tuning.halving)
        return self

    def train_config(self, method: MethodConfig, learning_rate: float, seed: int, output: str) -> TrainConfig:
        """The TrainConfig of one run (study defaults, then the method's own keys)."""
        values = {**self.training, **method.train, "model": self.base_model, "data": self.data.train,
                  "output": output, "learning_rate": learning_rate, "seed": seed, "overwrite": True,
                  "add_bos": self.add_bos, "chat_template": self.chat_template,
                  "trust_remote_code": self.trust_remote_code}
        return build_config(TrainConfig, values, f"methods[{method.name}]")


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read and validate a study YAML (``overrides`` replace top-level keys, e.g. ``output``).

    Data paths are files, or ``testbed:PRESET/relative/path`` into the built testbed.

    Every method's TrainConfig is validated here too, so a typo in one method's
    keys fails before any model is trained.

    Raises:
        ConfigError: naming the file and the key.
    """
    values = {**load_yaml(path), **(overrides or {})}
    cfg: StudyConfig = build_config(StudyConfig, values, str(path))
    for method in cfg.methods:
        for lr in method.learning_rates:
            cfg.train_config(method, lr, cfg.seeds[0], "unused")
        if method.tuned:  # every corner of its space must make a valid run
            for corner in corner_configs(cfg, method):
                cfg.train_config(*corner, cfg.seeds[0], "unused")
    return cfg
