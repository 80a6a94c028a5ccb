"""The schema of one fine-tuning run (``forgetless train``, and each run of a study): one field per flag and YAML
key, documented once.

``forgetless train`` builds its flags from these fields (``forgetless.schema_flags``), so flags
and YAML keys cannot drift apart; the config is validated once, when the command line and the
``--config`` file have been merged, and every setting reaches ``TrainingArguments`` from it
(``forgetless.training.run.training_arguments``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from forgetless.data.spec import DataSpec, normalize_spec, with_mapping
from forgetless.prompting import CHAT_HELP, ChatSetting
from forgetless.replay.config import ReplayConfig
from forgetless.special_tokens import ADD_BOS_HELP, AddBosSetting


class TrainConfig(BaseModel):
    """Everything that determines one fine-tuning run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field(description="Base model: a local directory, a hub id, or testbed:tiny / testbed:small.")
    data: DataSpec = Field(
        description="Training data: .jsonl, .json, .parquet, a datasets directory, or hf:NAME[:CONFIG]:SPLIT "
                    "(a hub dataset or save_to_disk folder; SPLIT may be sliced, train[:1000]).")
    # The column mapping, next to `data` (forgetless.data.spec); folded into `data` when the config is read.
    fields: dict[str, str] = Field(
        default_factory=dict, description='Fields taken from dataset columns, e.g. {"prompt": "question", "completion": "answer"}.')
    template: dict[str, str] = Field(
        default_factory=dict, description='Fields made from columns by a template, e.g. {"prompt": "Q: {question}\\nA:"}.')
    replace: dict[str, str] = Field(
        default_factory=dict, description='Literal replacements in the mapped fields, e.g. {"####": "Answer:"}.')
    output: str = Field(description="Directory the fine-tuned model is written to (atomically, when training ends).")
    method: str = Field("nll", description="Training objective, by registered name (nll is plain SFT).")
    method_params: dict[str, Any] = Field(
        default_factory=dict,
        description='Parameters of the method, e.g. talr {"tau": "token_median", "floor": 0.01}, '
                    'flow {"normalize": "mean"} (each method\'s are listed below).',
    )
    regularizers: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='Penalties added to the loss, by name with their parameters, e.g. {"l2sp": {"weight": 1e-3}} '
                    '(listed below).',
    )
    lora: bool = Field(False, description="Train PEFT LoRA adapters instead of all weights; merged weights are exported.")
    lora_r: int = Field(64, gt=0, description="LoRA rank.")
    lora_alpha: float = Field(64.0, gt=0, description="LoRA alpha (the update is scaled by alpha / r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA adapter input.")
    lora_target_modules: str = Field(
        "all-linear", description="Modules given adapters: all-linear, or comma-separated groups (attention, mlp: "
                                  "resolved per architecture) and module names like q_proj,v_proj."
    )
    replay: ReplayConfig | None = Field(
        None,
        description='Replay mixed into training: JSON like {"data": "cf.jsonl", "ratio": 0.5, "weight": 1.0}, or just the file.',
    )
    learning_rates: list[float] = Field(
        default_factory=list,
        description="A learning-rate sweep: one run per value, written to OUTPUT/lr-VALUE (overrides learning_rate).",
    )
    format: Literal["auto", "text", "prompt_completion", "messages"] = Field(
        "auto", description="Data format; auto picks it from the first record's fields."
    )
    max_length: int = Field(512, gt=1, description="Maximum tokens per example; longer ones are truncated.")
    packing: bool = Field(False, description="Concatenate examples into blocks of max_length tokens.")
    # Off by default, measured: transformers' length grouping sorts each run of 50
    # batches by length, so data whose kinds differ in length (qSOFA vs CURB-65 on the
    # testbed) arrives in single-kind blocks; the loss spiked every 50 steps and SFT
    # learned less than with shuffled batches.
    group_by_length: bool = Field(
        False, description="Batch examples of similar length together: less padding, but batches sorted by length."
    )
    completion_only_loss: bool = Field(True, description="Loss on completion / assistant tokens only.")
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate (AdamW).")
    lr_scheduler: str = Field("cosine", description="transformers scheduler name: cosine, linear, constant, ...")
    # Below 1: transformers (5.x) takes one number for warmup and reads a value of 1 or more as a count of steps, so
    # a ratio of 1.0 warmed up for a single step (refused in _warmup_is_a_fraction).
    warmup_ratio: float = Field(0.0, ge=0, description="Fraction of the optimizer steps spent warming up, in [0, 1).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    epochs: float = Field(1.0, gt=0, description="Passes over the training data (ignored if max_steps > 0).")
    max_steps: int = Field(-1, description="Optimizer steps; -1 means use epochs.")
    batch_size: int = Field(8, gt=0, description="Examples per device per micro-batch.")
    grad_accum: int = Field(1, gt=0, description="Micro-batches accumulated per optimizer step.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 turns it off).")
    # transformers' set_seed hands the seed to numpy, which takes 0 to 2**32 - 1 and otherwise fails after the model
    # is loaded, naming no flag.
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed for initialization-free randomness: data order, dropout.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 on GPUs that support it and on CPUs with native bf16 (AVX512-BF16/AMX), else fp32.",
    )
    save_dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="dtype of the saved model (training keeps fp32 master weights); auto: the dtype the base is stored in.",
    )
    save_steps: int = Field(200, gt=0, description="Checkpoint every this many steps (to resume after a crash).")
    save_total_limit: int = Field(2, gt=0, description="Checkpoints kept while training.")
    keep_checkpoints: bool = Field(False, description="Keep the checkpoint directory after training ends.")
    logging_steps: int = Field(10, gt=0, description="Log the loss every this many steps.")
    trust_remote_code: bool = Field(False, description="Allow model code from the hub (off: safe by default).")
    add_bos: AddBosSetting = Field("auto", description=ADD_BOS_HELP)
    chat_template: ChatSetting = Field("auto", description=CHAT_HELP)
    overwrite: bool = Field(False, description="Replace an existing finished output directory.")
    launcher: Literal["python", "accelerate"] = Field(
        "python",
        description="python: train in this process. accelerate: `accelerate launch` with accelerate_config "
                    "(DDP, FSDP or DeepSpeed ZeRO-3 over several GPUs; configs/accelerate/); batch_size is then per "
                    "process, so the global batch is batch_size x grad_accum x processes.",
    )
    accelerate_config: str | None = Field(
        None, description="The accelerate config file of launcher: accelerate (e.g. configs/accelerate/fsdp.yaml).")

    @model_validator(mode="before")
    @classmethod
    def _mapping_into_data(cls, values: Any) -> Any:
        # Everything downstream reads one data spec string (forgetless.data.spec), so the
        # mapping given next to `data` joins it here and the three keys are left empty.
        if not isinstance(values, dict) or not any(values.get(k) for k in ("fields", "template", "replace")):
            return values
        if not isinstance(values.get("data"), str | dict):
            return values  # `data` missing or of a wrong type: its own error says so
        mapping = {k: values.get(k) or {} for k in ("fields", "template", "replace")}
        if any(not isinstance(v, dict) for v in mapping.values()):
            return values  # a non-mapping: the field's own error says so
        data = with_mapping(normalize_spec(values["data"]), **mapping)
        return {**values, "data": data, "fields": {}, "template": {}, "replace": {}}

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        # imported here: the CLI imports this schema to build its flags, without torch
        from forgetless.objectives import OBJECTIVES

        if value not in OBJECTIVES:
            raise ValueError(f"unknown method {value!r}; expected one of {sorted(OBJECTIVES)}")
        return value

    @field_validator("replay", mode="before")
    @classmethod
    def _replay_from_flag(cls, value: Any) -> Any:
        # The command line gives a string: a JSON object, or the replay file alone.
        if isinstance(value, str):
            if value.lstrip().startswith("{"):
                try:
                    return json.loads(value)
                except json.JSONDecodeError as err:
                    raise ValueError(f"expected a JSON object of replay settings ({err.msg})") from None
                except RecursionError:
                    raise ValueError("expected a JSON object of replay settings, got JSON nested too deeply") from None
            return {"data": value}
        return value

    @field_validator("lr_scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        """A scheduler transformers has: otherwise the run fails only once the trainer is built, naming no key."""
        # imported here: the CLI imports this schema to build its flags, and transformers is heavy
        from transformers.trainer_utils import SchedulerType

        names = [kind.value for kind in SchedulerType]
        if value not in names:
            raise ValueError(f"unknown scheduler {value!r}; expected one of {', '.join(names)}")
        return value

    @field_validator("warmup_ratio")
    @classmethod
    def _warmup_is_a_fraction(cls, value: float) -> float:
        if value >= 1:
            raise ValueError(f"expected a fraction of the training steps in [0, 1), got {value:g} (transformers would "
                             "read it as a number of warmup steps; a whole run of warmup is not a schedule)")
        return value

    @field_validator("max_steps")
    @classmethod
    def _steps_or_epochs(cls, value: int) -> int:
        # transformers reads 0 as "one step", silently; -1 is its "use epochs".
        if value == 0 or value < -1:
            raise ValueError(f"expected a positive number of steps, or -1 to train for `epochs`, got {value}")
        return value

    @model_validator(mode="after")
    def _grouping_needs_examples(self) -> "TrainConfig":
        # Packed blocks all hold max_length tokens: there is no length to group by, and
        # recording group_by_length: true for a run that did not group would mislead.
        if self.packing and self.group_by_length:
            raise ValueError("group_by_length has no effect with packing (every block is max_length tokens); "
                             "drop one of them")
        return self

    @field_validator("learning_rates")
    @classmethod
    def _positive_rates(cls, value: list[float]) -> list[float]:
        if any(rate <= 0 for rate in value):
            raise ValueError(f"every learning rate must be > 0, got {value}")
        return value

    def identity(self) -> dict[str, Any]:
        """What determines the trained weights, for caches and resume checks: the config without its output
        options, and without the launcher while it is the default (so runs recorded before it existed match)."""
        # fields/template/replace are always empty here (folded into `data`).
        values = self.model_dump(exclude={"output", "overwrite", "keep_checkpoints", "fields", "template", "replace"})
        for key in ("add_bos", "chat_template"):  # defaults: runs recorded before the keys existed match
            if values[key] == "auto":
                values.pop(key)
        if self.launcher == "python":
            values.pop("launcher")
            values.pop("accelerate_config")
        elif self.accelerate_config:  # the process count sets the global batch
            values["accelerate_config"] = Path(self.accelerate_config).read_text()
        return values

    @model_validator(mode="after")
    def _launcher_config(self) -> "TrainConfig":
        if self.launcher == "accelerate" and not self.accelerate_config:
            raise ValueError("launcher: accelerate needs accelerate_config (e.g. configs/accelerate/ddp.yaml)")
        if self.accelerate_config and not Path(self.accelerate_config).is_file():
            raise ValueError(f"accelerate_config: {self.accelerate_config} is not a file")
        return self

    @field_validator("method_params")
    @classmethod
    def _method_params(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # Validated against the method's params_model here, so a bad parameter fails at load
        # time naming the method, the parameter and what it takes. The dict is kept as given:
        # it is part of the run's identity (caches, resume checks).
        if "method" in info.data:  # else the method itself was refused, with its own error
            # imported here: the CLI imports this schema to build its flags, without torch
            from forgetless.objectives import build_objective

            build_objective(info.data["method"], value)
        return value

    @field_validator("regularizers")
    @classmethod
    def _regularizer_params(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # imported here: the CLI imports this schema to build its flags, without torch
        from forgetless.regularizers import build_regularizer

        for name, params in value.items():
            build_regularizer(name, params)
        return value
