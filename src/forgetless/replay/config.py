"""The replay settings of a training run (``ReplayConfig``, the ``replay`` key of ``TrainConfig``) and the arguments of
``forgetless generate`` and ``forgetless kl-estimate``: one field per flag or key, documented once."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from forgetless.data.spec import DataSpec
from forgetless.prompting import CHAT_HELP, ChatSetting
from forgetless.special_tokens import ADD_BOS_HELP, AddBosSetting


class GenerateArgs(BaseModel):
    """Where ``forgetless generate`` writes replay data, from which source, and how it samples."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str | None = Field(None, description="model directory, hub id, or testbed:PRESET (not needed with --corpus)")
    output: str = Field(description="JSONL to write; settings go to OUTPUT.meta.json")
    prompts: str | None = Field(
        None, description="contextual replay: complete the prompts of this prompt/completion file")
    corpus: str | None = Field(None, description="corpus replay: slice this general-text file (records with 'text')")
    num_samples: int | None = Field(
        None, gt=0,
        description="sequences (context-free, default 1000), prompts (contextual, default all) or pieces (corpus)")
    temperature: float = Field(1.0, ge=0, description="1.0 keeps the KL estimate unbiased; 0 is greedy")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus mass kept (1.0: the full distribution)")
    max_new_tokens: int = Field(128, gt=0, description="length limit L of a sample, in tokens")
    seed: int = Field(0, description="seed of the sampling (and of the corpus slice)")
    batch_size: int = Field(32, gt=0, description="sequences sampled in parallel")
    prompt: Literal["bos", "chat"] = Field(
        "bos", description="context-free prompt: BOS alone, or an empty user turn through the chat template")
    max_chars: int = Field(512, gt=0, description="corpus: maximum characters per piece")
    corpus_order: Literal["random", "first"] = Field("random", description="corpus: which pieces")
    trust_remote_code: bool = Field(False, description="allow model code from the hub (off: safe by default)")
    add_bos: AddBosSetting = Field("auto", description=ADD_BOS_HELP)
    chat_template: ChatSetting = Field("auto", description=CHAT_HELP)
    overwrite: bool = Field(False, description="replace an existing --output (and its .meta.json)")


class KLEstimateArgs(BaseModel):
    """The models and held-out samples of ``forgetless kl-estimate``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field(description="the fine-tuned model")
    base: str | None = Field(None, description="the base model (default: the one recorded in MODEL/forgetless.json)")
    samples: str = Field(description="held-out context-free samples of the base (`forgetless generate` output at T=1), "
                                     "not trained on")
    limit: int | None = Field(None, gt=0, description="use only the first N samples")
    batch_size: int = Field(32, gt=0, description="sequences scored per forward pass")
    output: str | None = Field(None, description="also write the result JSON here")
    trust_remote_code: bool = Field(False, description="allow model code from the hub (off: safe by default)")


class ReplayConfig(BaseModel):
    """Replay samples mixed into the training data (context-free, contextual or corpus; arXiv 2505.13811)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    data: DataSpec = Field(
        description="Replay data (a file or hf:NAME[:CONFIG]:SPLIT): `forgetless generate` output (text), contextual "
                    "prompt/completion, or a corpus slice.")
    # At most 1000: the drawn examples are held in memory, and 1e9 per domain example once ran until memory ran out.
    ratio: float | None = Field(
        None, ge=0, le=1000,
        description="Replay examples per domain example (at most 1000), drawn with the run's seed; None: every replay "
                    "example once."
    )
    weight: float = Field(1.0, ge=0, description="Loss weight λ on replay examples (multiplies their token weights).")
    kl_eval_data: DataSpec | None = Field(
        None, description="Held-out context-free samples (`forgetless generate` output) for the KL estimate logged while training."
    )
    kl_eval_samples: int = Field(
        64, ge=0, description="Without kl_eval_data: held-out samples drawn from the base at the start (T=1); 0 turns the KL log off."
    )
    kl_eval_max_new_tokens: int = Field(128, gt=0, description="Length limit of the drawn held-out samples.")
    kl_eval_steps: int = Field(50, gt=0, description="Log the KL estimate every this many optimizer steps (and at the end).")
