"""The schema of ``forgetless merge``: one field per flag and YAML key, documented once."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_ALPHAS = [round(0.1 * i, 2) for i in range(11)]


class MergeConfig(BaseModel):
    """Everything that determines one merge, sweep or budgeted choice."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(description="Input models: directories (safetensors), LoRA adapter directories, "
                                          "or testbed:tiny. interpolate/sweep/budget: BASE FINETUNED; "
                                          "task_arithmetic: BASE then task models; cocktail: any order, "
                                          "--finetuned gives the fine-tuned one's index.")
    output: str | None = Field(None, description="Merged model directory (written atomically). A sweep writes "
                                                 "nothing; with --budget it writes the chosen alpha here.")
    rule: Literal["interpolate", "average", "greedy_soup", "task_arithmetic", "cocktail"] = Field(
        "interpolate", description="Coefficient rule.")
    alpha: float | None = Field(None, description="interpolate: weight of the fine-tuned model (0 = base, 1 = "
                                                  "fine-tuned); cocktail: share kept of the fine-tuned model (default 0.5).")
    weights: list[float] | None = Field(None, description="average: non-negative weight per model (normalized); "
                                                          "uniform when omitted.")
    lambdas: list[float] | None = Field(None, description="task_arithmetic: one scale for every task vector, or one each.")
    finetuned: int = Field(1, ge=0, description="cocktail: index in --models of the fine-tuned model.")
    examples: str | None = Field(None, description="cocktail: file of target-domain examples (JSONL: text, or "
                                                   "prompt+completion; input+output or prompt+completion with "
                                                   "--cocktail-loss lm-cocktail).")
    num_examples: int = Field(5, ge=1, description="cocktail: how many records of --examples (from the top) the "
                                                   "losses use.")
    temperature: float = Field(5.0, description="cocktail: softmax temperature T of the weights softmax(-L/T).")
    variant: Literal["paper", "mono-specialist", "without-finetuning"] = Field(
        "paper", description="cocktail: paper = alpha*FT + (1-alpha)*sum_i w_i*model_i over the other models (base, "
                             "peers), w = softmax(-L/T); mono-specialist = alpha*FT + (1-alpha)*BASE (2 models, no "
                             "examples); without-finetuning = sum_i w_i*model_i over all --models, no alpha.")
    candidates: Literal["others", "all"] = Field(
        "others", description="cocktail: models in the softmax: others (the paper: all but the fine-tuned one) or all "
                              "(the fine-tuned one too; a variant, not the paper's method).")
    cocktail_loss: Literal["tokens", "lm-cocktail"] = Field(
        "tokens", description="cocktail: loss L_k: tokens = mean NLL per token of BOS+text+EOS pooled over the "
                              "examples; lm-cocktail = lm-cocktail 0.0.4's (output tokens + EOS only, mean per "
                              "batch of 2 examples, then over batches).")
    validation: str | None = Field(None, description="greedy_soup: held-out examples; a model is kept if the soup's "
                                                     "loss on them does not rise.")
    sweep: bool = Field(False, description="Evaluate the interpolation of BASE and FINETUNED at every --alphas point "
                                           "in memory and print the curve.")
    ensemble: bool = Field(False, description="Sweep/budget the output ensemble (per-token mixture of the two "
                                              "models' distributions) instead of the weight interpolation.")
    alphas: list[float] = Field(default_factory=lambda: list(DEFAULT_ALPHAS), description="Sweep points in [0, 1].")
    general: str | None = Field(None, description="Held-out general text (JSONL with 'text') for general loss.")
    general_limit: int | None = Field(None, ge=1, description="Use only the first N general texts.")
    domain: str | None = Field(None, description="Domain validation set (prompt/completion) for exact match.")
    domain_limit: int | None = Field(None, ge=1, description="Use only the first N domain examples.")
    budget: float | None = Field(None, description="Forgetting budget EPS: choose the alpha with the best domain exact "
                                                    "match whose general forgetting is at most EPS (implies --sweep).")
    budget_unit: Literal["nats", "percent"] = Field("nats", description="Unit of --budget: nats per token, or percent "
                                                                        "of the base model's general loss.")
    curve: str | None = Field(None, description="Also write the sweep curve (JSON) to this file.")
    config_from: int = Field(0, ge=0, description="Index in --models of the model whose config, tokenizer, integer "
                                                  "tensors and buffers the output takes.")
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="dtype of the written model (inputs are combined in float32); auto: the first model's.")
    shard_size: str = Field("5GB", description="Largest output shard, e.g. 500MB or 2GB.")
    adapter_base: str | None = Field(None, description="Base model of LoRA adapter inputs (default: the one their "
                                                       "adapter_config.json names).")
    overwrite: bool = Field(False, description="Replace an existing --output.")
    trust_remote_code: bool = Field(False, description="Allow model code from the model directories.")
