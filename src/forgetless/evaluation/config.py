"""The arguments of ``forgetless eval``: one field per flag, documented once (the flags are built from it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from forgetless.evaluation.answer_extraction import EXPECTED, check_spec
from forgetless.prompting import CHAT_HELP, ChatSetting
from forgetless.special_tokens import ADD_BOS_HELP, AddBosSetting


class EvalArgs(BaseModel):
    """What ``forgetless eval`` measures, on which data, and how."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field(description="checkpoint dir, LoRA adapter dir, hub id, or testbed:PRESET")
    base: str | None = Field(
        None, description="base model to measure forgetting and gain against (same forms as --model)")
    general: str | None = Field(
        None, description="held-out general text (JSONL with 'text'): code length, and the cloze task")
    general_limit: int | None = Field(None, gt=0, description="score code length on the first N general texts only")
    choices: str | None = Field(
        None, description="multiple-choice JSONL ({context, choices, label}) instead of the built cloze")
    no_cloze: bool = Field(False, description="do not build the cloze task from --general")
    cloze_items: int = Field(200, gt=0, description="cloze items built from --general")
    kl_samples: str | None = Field(None, description="context-free samples of the base (forgetless generate, T=1): "
                                   "with --base, forgetting of cf_nll estimates KL(p_base || p_model)")
    kl_limit: int | None = Field(None, gt=0, description="use only the first N context-free samples")
    domain: str | None = Field(None, description="domain test set (prompt/completion JSONL with 'answer' or 'Answer:')")
    limit: int | None = Field(None, gt=0, description="evaluate only the first N domain examples")
    answer_extraction: str | None = Field(
        None, description=f"how answers are read from --domain generations: {EXPECTED.removeprefix('expected ')} "
        "(default: the file's 'answer_extraction' field, else answer_marker; docs/eval_schema.md)")
    batch_size: int = Field(32, gt=0, description="requests per forward pass / prompts decoded together")
    window: int = Field(256, gt=1, description="tokens per code-length window")
    max_new_tokens: int | None = Field(
        None, gt=0, description="generation budget (default: longest gold completion + 16)")
    resamples: int = Field(2000, gt=0, description="bootstrap resamples")
    confidence: float = Field(0.95, gt=0, lt=1, description="bootstrap interval coverage")
    seed: int = Field(0, description="seed of the bootstrap and the cloze builder")
    output: str | None = Field(None, description="also write the result JSON here (atomically)")
    no_progress: bool = Field(False, description="hide progress bars")
    trust_remote_code: bool = Field(False, description="allow model code from the hub (off: safe by default)")
    add_bos: AddBosSetting = Field("auto", description=ADD_BOS_HELP)
    chat_template: ChatSetting = Field("auto", description=CHAT_HELP)

    @field_validator("answer_extraction")
    @classmethod
    def _known_extraction(cls, value: str | None) -> str | None:
        return check_spec(value)
