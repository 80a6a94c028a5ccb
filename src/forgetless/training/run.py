"""One fine-tuning run from a config: load, validate, train (resuming), save atomically.

Layout while training: ``OUTPUT.work/checkpoints/checkpoint-N`` (Trainer
checkpoints, used to resume). When training ends the model, tokenizer and
``forgetless.json`` are written to a temporary directory that is renamed to
``OUTPUT``; an interrupted run never leaves a half-written ``OUTPUT``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainingArguments,
)

import forgetless
from forgetless.atomic import atomic_dir, write_json
from forgetless.data import PadCollator, data_hash, load_examples
from forgetless.data.formats import Example
from forgetless.data.spec import display_name
from forgetless.dtypes import resolve_save_dtype, short_name
from forgetless.models import check_finite_weights, check_safetensors, load_causal_lm, load_config, load_tokenizer
from forgetless.objectives import build_objective
from forgetless.outputs import guard_output, refuse_overlap
from forgetless.positions import position_limit
from forgetless.prompting import uses_chat
from forgetless.regularizers import build_regularizer
from forgetless.replay.kl_callback import kl_callback_for
from forgetless.replay.mixing import add_replay
from forgetless.special_tokens import adds_bos
from forgetless.training.checkpoints import split_checkpoints
from forgetless.training.config import TrainConfig
from forgetless.training.launch import launch_accelerate
from forgetless.training.precision import resolve_precision
from forgetless.training.trainer import ForgetlessTrainer, TrainingDiverged, divergence_advice


class _LogHistory(TrainerCallback):
    """Keeps wall-clock training time for ``forgetless.json``."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start = time.time()


def training_arguments(cfg: TrainConfig, output_dir: Path, **overrides: Any) -> TrainingArguments:
    """Translate a ``TrainConfig`` into ``transformers.TrainingArguments``."""
    precision = resolve_precision(cfg.precision)
    values: dict[str, Any] = dict(
        output_dir=str(output_dir),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        # transformers reads a value in [0, 1) as a ratio of the total steps (1 or more: a step count), and
        # TrainConfig refuses warmup_ratio >= 1
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        data_seed=cfg.seed,
        train_sampling_strategy="group_by_length" if cfg.group_by_length and not cfg.packing else "random",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
    )
    values.update(overrides)
    return TrainingArguments(**values)


def make_trainer(
    cfg: TrainConfig,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: list[Example],
    output_dir: Path,
    callbacks: list[TrainerCallback] | None = None,
    **overrides: Any,
) -> ForgetlessTrainer:
    """Build the trainer for ``cfg`` over already-encoded examples, ready to train.

    Wraps ``model`` in LoRA adapters when ``cfg.lora``, builds the objective and the
    regularizers, and runs their ``prepare`` hooks (FLOW's base-model pass, L2-SP's
    copy of θ*) while the model still holds the base weights.
    """
    if cfg.lora:
        # imported here: peft is imported only by LoRA runs
        from forgetless.training.lora import apply_lora

        # LoRA's A matrices are drawn from the global RNG: seed it here, or the adapters depend on
        # whatever ran before in this process (a study worker's earlier cells changed them).
        transformers.set_seed(cfg.seed)
        model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
    trainer = ForgetlessTrainer(
        model=model,
        args=training_arguments(cfg, output_dir, **overrides),
        train_dataset=examples,
        data_collator=PadCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        objective=build_objective(cfg.method, cfg.method_params),
        regularizers=[build_regularizer(name, params) for name, params in cfg.regularizers.items()],
        cache_dir=method_cache_dir(cfg.data),
        callbacks=callbacks,
    )
    trainer.objective.prepare(trainer)
    for regularizer in trainer.regularizers:
        regularizer.prepare(trainer)
    return trainer


def method_cache_dir(data: str) -> Path:
    """Where pre-pass results are cached: ``.forgetless_cache/`` next to the data, else the user cache."""
    beside = Path(display_name(data)).resolve().parent  # a spec with a mapping: next to its source
    if os.access(beside, os.W_OK):
        return beside / ".forgetless_cache"
    return Path(os.environ.get("FORGETLESS_CACHE", Path.home() / ".cache" / "forgetless")) / "methods"


def method_report(cfg: TrainConfig, trainer: ForgetlessTrainer) -> dict[str, Any]:
    """What each method was and did, for ``forgetless.json`` (per-step statistics are in the log history)."""
    # imported here: peft is imported only by LoRA runs
    from forgetless.training.lora import trainable_parameters

    trainable, total = trainable_parameters(trainer.model)
    return {
        "objective": {"name": cfg.method, "params": cfg.method_params, **trainer.objective.report()},
        "regularizers": {r.name: {"params": cfg.regularizers[r.name], **r.report()} for r in trainer.regularizers},
        "lora": (
            {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout,
             "target_modules": cfg.lora_target_modules, "merged_on_export": True,
             # What PEFT adapted: the groups resolved for this architecture (all-linear expanded).
             "adapted_modules": sorted(trainer.accelerator.unwrap_model(trainer.model).peft_config["default"].target_modules)}
            if cfg.lora else None
        ),
        "trainable_parameters": trainable,
        "total_parameters": total,
    }


def _recorded_config(cfg: TrainConfig) -> dict[str, Any]:
    """The settings that must match for checkpoints to be resumed (not the export's or cleanup's)."""
    # identity() leaves out the launcher while it is the default, so configs recorded before it existed match.
    return {**{k: v for k, v in cfg.identity().items() if k != "save_dtype"}, "output": cfg.output}


def _remove_unresumable(work: Path) -> None:
    """Remove a run's checkpoints and recorded config, and ``work`` itself once empty.

    Only what this run writes: under ``training.launcher: accelerate`` the launcher's
    files live in ``work`` too, and another process may still be reading them.
    """
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    (work / "config.json").unlink(missing_ok=True)
    try:
        work.rmdir()
    except OSError:  # not empty (the launcher's files) or already gone
        pass


def _resume_point(cfg: TrainConfig, work: Path) -> str | None:
    """The newest complete checkpoint in ``work/checkpoints`` to resume from, or None.

    Incomplete checkpoints (a kill during a save) are removed, and said so: resuming from
    the newest complete one and saving again redoes exactly the lost steps. The recorded
    config is compared only when there is something to resume; a run that failed before its
    first checkpoint (a bad ``--lr-scheduler``, an unloadable model) blocks nothing.

    Raises:
        ValueError: complete checkpoints exist and a different config wrote them.
    """
    complete, incomplete = split_checkpoints(work / "checkpoints")
    recorded = work / "config.json"
    if complete and recorded.is_file():
        try:
            previous = json.loads(recorded.read_text(encoding="utf-8"))
        except ValueError:
            previous = None  # written atomically, so only a hand edit breaks it
        current = _recorded_config(cfg)
        if not isinstance(previous, dict):
            raise ValueError(f"{recorded}: unreadable; delete {work} to start over")
        changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if changed:
            raise ValueError(
                f"{work}: holds checkpoints of an interrupted run with a different config (changed: "
                f"{', '.join(changed)}); delete that directory to start over, or rerun with the same config to resume"
            )
    if not complete and work.exists():
        _remove_unresumable(work)  # nothing resumable: leftovers of a run that never saved
        return None
    for checkpoint, reason in incomplete.items():
        print(f"forgetless: skipping incomplete {checkpoint} ({reason}; a save was interrupted); removing it",
              file=sys.stderr)
        shutil.rmtree(checkpoint, ignore_errors=True)  # every process of a multi-process run does this
    if complete:
        print(f"forgetless: resuming from {complete[-1]}", file=sys.stderr)
        return str(complete[-1])
    return None


def logged_mean_loss(log_history: list[dict[str, Any]]) -> float | None:
    """The mean training loss over the steps the log covers: each logged ``loss`` (a mean over the steps since the
    previous log) weighted by how many steps it covers. None when nothing was logged."""
    total, previous = 0.0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry and entry["step"] > previous:
            total += entry["loss"] * (entry["step"] - previous)
            previous = entry["step"]
    return total / previous if previous else None


def run_metrics(metrics: dict[str, Any], log_history: list[dict[str, Any]], resumed_from: str | None) -> dict[str, Any]:
    """The Trainer's metrics, with ``train_loss`` over the whole run when it was resumed.

    After a resume the Trainer's ``train_loss`` averages only the steps this process ran; the checkpoint's log
    history holds the earlier ones, so the whole run's mean comes from the log (``train_loss_resumed_part`` keeps
    the Trainer's figure).
    """
    metrics = dict(metrics)
    whole = logged_mean_loss(log_history) if resumed_from else None
    if whole is not None:
        metrics["train_loss_resumed_part"] = metrics.get("train_loss")
        metrics["train_loss"] = whole
    return metrics


def train_inputs(cfg: TrainConfig) -> dict[str, Any]:
    """What a run reads, by the flag that names it: its output may be none of these, nor hold or sit inside one."""
    return {"--model": cfg.model, "--data": cfg.data, "replay data": cfg.replay}


def _check_cast(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Refuse to save weights that the cast to the saved dtype made non-finite (fp16 ends at 65504: a weight past it
    is inf in the file though training was finite); raised inside the output's temporary directory, so nothing is
    written."""
    check_finite_weights(model, f"the weights cast to {short_name(dtype)} (--save-dtype)",
                         f"they overflow {short_name(dtype)}; pass --save-dtype fp32 or bf16; no model was written",
                         ValueError)

def train(cfg: TrainConfig, callbacks: list[TrainerCallback] | None = None) -> Path:
    """Fine-tune ``cfg.model`` on ``cfg.data`` and write the result to ``cfg.output``.

    Every record is validated before anything is written. If ``OUTPUT.work`` holds
    checkpoints from an interrupted run with the same config, training resumes from
    the last one.

    Returns:
        The output directory, loadable with ``AutoModelForCausalLM.from_pretrained``.

    Raises:
        DataError: bad training data (nothing is written).
        FileExistsError: ``cfg.output`` is a finished run and ``overwrite`` is off.
        OutputError: ``cfg.output`` is, holds or lies inside an input, or is not forgetless's to overwrite.
        TrainingDiverged: the loss or the weights became NaN or inf (no model is written).
    """
    guard_output(cfg.output, train_inputs(cfg), cfg.overwrite)  # before any work, on every launcher
    if cfg.launcher == "accelerate":
        if callbacks:
            raise ValueError("launcher: accelerate trains in other processes, which callbacks cannot follow "
                             "(a study measures no learning curve for such cells)")
        return launch_accelerate(cfg)
    output = Path(cfg.output)
    model_path = cfg.model  # testbed: specs are resolved by the entry points
    check_safetensors(model_path)  # before anything is read: the weights would be refused anyway
    # Saved below with its BOS choice; the prompt format is recorded in forgetless.json.
    tokenizer = load_tokenizer(model_path, cfg.trust_remote_code, cfg.add_bos, chat_template=cfg.chat_template)
    # Examples are truncated to the model's positions too: a GPT-2-style model fails
    # with an index error one token past them.
    base_config = load_config(model_path, cfg.trust_remote_code)
    limit = position_limit(base_config)
    save_dtype = resolve_save_dtype(cfg.save_dtype, model_path, base_config)
    max_length = min(cfg.max_length, limit) if limit else cfg.max_length
    examples = load_examples(cfg.data, tokenizer, cfg.format, max_length, cfg.completion_only_loss, cfg.packing)
    # Hashed now, beside the reading: the record names the bytes trained on, even if the file changes or goes
    # away while training runs.
    data_digest = data_hash(cfg.data)
    if cfg.replay is not None:  # replay samples mixed in, weighted by λ (forgetless.replay.mixing)
        examples = add_replay(examples, cfg.replay, tokenizer, max_length, cfg.completion_only_loss, cfg.seed)
    checkpoints = output.with_name(output.name + ".work") / "checkpoints"
    last = _resume_point(cfg, checkpoints.parent)
    # Weights load in fp32: mixed precision is autocast's job, and fp32 master
    # weights keep small learning rates from rounding away.
    model = load_causal_lm(model_path, torch.float32, cfg.trust_remote_code)
    if cfg.replay is not None:  # the context-free KL estimate of forgetting, logged while training
        kl_log = kl_callback_for(cfg.replay, model, tokenizer, cfg.seed)
        callbacks = [*(callbacks or []), *([kl_log] if kl_log else [])]
    timer = _LogHistory()
    trainer = make_trainer(cfg, model, tokenizer, examples, checkpoints, [timer, *(callbacks or [])])
    # Recorded only now, once everything that can refuse the config has accepted it.
    write_json(checkpoints.parent / "config.json", _recorded_config(cfg))
    try:
        result = trainer.train(resume_from_checkpoint=last)
    except BaseException:
        if not split_checkpoints(checkpoints)[0]:
            _remove_unresumable(checkpoints.parent)  # nothing to resume: leave nothing behind
        raise
    try:
        # A loss can stay finite while a weight overflows (an absurd learning rate, an fp16 overflow): check before saving.
        check_finite_weights(trainer.model, f"step {trainer.state.global_step}", divergence_advice(trainer.args),
                             TrainingDiverged)
        if trainer.is_world_process_zero():
            with atomic_dir(output, overwrite=cfg.overwrite) as tmp:
                if cfg.lora:
                    # imported here: peft is imported only by LoRA runs
                    from forgetless.training.lora import save_merged

                    report = method_report(cfg, trainer)  # before merging consumes the adapters
                    save_merged(trainer.accelerator.unwrap_model(trainer.model), tmp, save_dtype,
                                check=lambda merged: _check_cast(merged, save_dtype))
                else:
                    report = method_report(cfg, trainer)
                    # Training is over: the fp32 master weights are cast in place (one tensor
                    # at a time, so no second copy of the model) to the dtype written.
                    _check_cast(trainer.accelerator.unwrap_model(trainer.model).to(save_dtype), save_dtype)
                    trainer.save_model(str(tmp))
                tokenizer.save_pretrained(str(tmp))
                write_json(
                    tmp / "forgetless.json",
                    {
                        "forgetless_version": forgetless.__version__,
                        # The BOS convention trained with (forgetless.special_tokens): loading this model keeps it.
                        "add_bos": adds_bos(tokenizer),
                        "chat_template": uses_chat(tokenizer),  # domain prompts rendered as chat turns (prompting)
                        "config": cfg.model_dump(),
                        "resolved": {
                            "model": model_path,
                            "max_length": max_length,
                            "precision": resolve_precision(cfg.precision),
                            "save_dtype": short_name(save_dtype),
                            "world_size": trainer.args.world_size,
                            "resumed_from": last,
                        },
                        "data": {"path": cfg.data, "sha256": data_digest, "examples": len(examples)},
                        "metrics": {**run_metrics(result.metrics, trainer.state.log_history, last),
                                    "wall_seconds": time.time() - timer.start},
                        "methods": report,
                        "log_history": trainer.state.log_history,
                        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
                    },
                )
            if not cfg.keep_checkpoints:
                shutil.rmtree(checkpoints.parent, ignore_errors=True)
    except ValueError:
        # Non-finite weights (a divergence, or an overflow of the saved dtype): resuming from the checkpoints
        # would end the same way, so the run's work folder goes too, unless its checkpoints were asked for.
        if not cfg.keep_checkpoints:
            shutil.rmtree(checkpoints.parent, ignore_errors=True)
        raise
    trainer.accelerator.wait_for_everyone()
    return output


def train_sweep(cfg: TrainConfig, callbacks: list[TrainerCallback] | None = None) -> list[Path]:
    """Run ``train`` once per ``cfg.learning_rates`` value (or once, when the list is empty).

    Sweep runs go to ``OUTPUT/lr-VALUE`` (e.g. ``runs/sft/lr-0.0003``), each written
    atomically; a finished run is skipped when rerun without ``overwrite``, so an
    interrupted sweep resumes where it stopped.
    """
    if not cfg.learning_rates:
        return [train(cfg, callbacks)]
    refuse_overlap(cfg.output, train_inputs(cfg))  # each run's own directory is checked by train
    outputs = []
    for rate in cfg.learning_rates:
        output = Path(cfg.output) / f"lr-{rate:g}"
        if output.exists() and not cfg.overwrite:
            outputs.append(output)
            continue
        run = cfg.model_copy(update={"learning_rate": rate, "learning_rates": [], "output": str(output)})
        outputs.append(train(run, callbacks))
    return outputs
