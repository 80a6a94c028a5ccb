"""Per-item scores of lm-eval tasks on an in-memory model, so benchmarks can measure forgetting.

``forgetless study`` compares every model with the base *item by item* (paired
bootstrap intervals), so an lm-eval task is useful to it only with its per-document
scores, not just the task's mean: ``task_items`` runs the tasks through
``ForgetlessLM`` (the adapter of ``forgetless.evaluation.lmeval``) with
``log_samples=True`` and returns, for each task, the primary metric of every
document in document order. A group (``mmlu``) is the concatenation of its subtasks'
documents, which is also how lm-eval's size-weighted group mean is formed.

Needs the optional extra ``pip install 'forgetless[lmeval]'``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class TaskItems:
    """One task's per-document scores.

    Attributes:
        task: the task (or group) name as requested.
        metric: the primary metric (``acc``, ``exact_match``, ...), the first of the task's ``metric_list``.
        higher_is_better: the metric's direction, from the task config.
        scores: the metric per document, ordered by (subtask, ``doc_id``).
    """

    task: str
    metric: str
    higher_is_better: bool
    scores: list[float]

    @property
    def mean(self) -> float:
        """The task's score: the mean over its documents (lm-eval's own aggregate for mean metrics)."""
        return sum(self.scores) / len(self.scores) if self.scores else float("nan")


def _primary(config: dict[str, Any]) -> tuple[str, bool]:
    """The first metric of a task config and whether higher is better."""
    metrics = config.get("metric_list") or [{"metric": "acc", "higher_is_better": True}]
    first = metrics[0]
    return str(first["metric"]), bool(first.get("higher_is_better", True))


def _subtask_scores(samples: list[dict[str, Any]], metric: str) -> list[float]:
    """The metric per document: one sample per document (its first filter's, when a task has several)."""
    by_doc: dict[int, float] = {}
    for sample in samples:
        if metric in sample and sample["doc_id"] not in by_doc:
            by_doc[sample["doc_id"]] = float(sample[metric])
    return [by_doc[d] for d in sorted(by_doc)]


def task_items(model: nn.Module, tokenizer: PreTrainedTokenizerBase, tasks: list[str],
               include_path: str | None = None, limit: int | None = None, num_fewshot: int | None = None,
               batch_size: int = 32, apply_chat_template: bool = False) -> dict[str, TaskItems]:
    """Run lm-eval ``tasks`` on ``model`` and return each task's per-document primary metric.

    Args:
        model: anything ``ForgetlessLM`` scores (a checkpoint, PEFT model, interpolation, ensemble).
        tasks: lm-eval task or group names (``arc_challenge``, ``mmlu``, ``forgetless_cloze``).
        include_path: a folder of extra task YAMLs (the testbed's: ``forgetless.testbed.lmeval_tasks``).
        limit: documents per task (the first ``limit``; lm-eval's ``--limit``).
        num_fewshot: few-shot examples per prompt (lm-eval's default per task when None).
        apply_chat_template: render each request with the tokenizer's chat template (lm-eval's option).

    Raises:
        ValueError: a task lm-eval does not know (its message lists none of the thousands it does).
    """
    # imported here: the lm-eval extra is optional (the adapter module imports lm_eval too)
    import lm_eval

    from forgetless.evaluation.lmeval import ForgetlessLM

    manager = _task_manager(include_path)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        where = f" (or in {include_path})" if include_path else ""
        raise ValueError(f"lm-eval task(s) {', '.join(unknown)}: not known to lm-eval{where}; "
                         "check the names with `lm_eval --tasks list`")
    out = lm_eval.simple_evaluate(model=ForgetlessLM(model, tokenizer, batch_size=batch_size, progress=False),
                                  tasks=list(tasks), task_manager=manager, limit=limit, num_fewshot=num_fewshot,
                                  bootstrap_iters=0, log_samples=True, apply_chat_template=apply_chat_template)
    groups: dict[str, list[str]] = {}
    for group, subtasks in (out.get("group_subtasks") or {}).items():
        groups[group] = list(subtasks)
    result = {}
    for task in tasks:
        members = _leaves(task, groups) or [task]
        metric, higher = _primary(out["configs"][members[0]])
        scores = [s for member in members for s in _subtask_scores(out["samples"].get(member, []), metric)]
        result[task] = TaskItems(task=task, metric=metric, higher_is_better=higher, scores=scores)
    return result


@lru_cache(maxsize=4)
def _task_manager(include_path: str | None) -> Any:
    """lm-eval's task index, built once per process: it reads every task YAML lm-eval ships (seconds),
    and a study evaluates dozens of models in one worker."""
    from lm_eval.tasks import TaskManager  # imported here: the lm-eval extra is optional

    return TaskManager(include_path=include_path)


def _leaves(task: str, groups: dict[str, list[str]]) -> list[str]:
    """The sample-bearing subtasks of a group, depth first (a plain task has none)."""
    leaves = []
    for sub in groups.get(task, []):
        leaves += _leaves(sub, groups) or [sub]
    return leaves
