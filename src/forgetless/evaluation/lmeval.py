"""Adapter to EleutherAI's lm-evaluation-harness (optional: ``pip install forgetless[lmeval]``).

``ForgetlessLM(model, tokenizer)`` is an ``lm_eval.api.model.LM`` over any in-memory
model forgetless can score (a checkpoint, a PEFT model, an interpolation, an output
ensemble), so every lm-eval task runs on it through forgetless's batched engines::

    import lm_eval
    from forgetless.evaluation.lmeval import ForgetlessLM
    from forgetless.testbed.lmeval_tasks import write_testbed_tasks

    tasks_dir = write_testbed_tasks("/tmp/fl-tasks")          # offline YAMLs for the testbed
    lm_eval.simple_evaluate(model=ForgetlessLM(model, tokenizer), tasks=["forgetless_cloze"],
                            task_manager=lm_eval.tasks.TaskManager(include_path=str(tasks_dir)))

Tokenization follows forgetless, not HFLM: contexts are ``BOS + text`` like training
prompts (``encode_pair``), so the adapter reproduces ``forgetless eval``'s numbers.
Generation is greedy only (sampling arguments are refused, not ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

try:
    from lm_eval.api.model import LM
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("the lm-eval adapter needs the optional extra: pip install 'forgetless[lmeval]'") from err

from forgetless.data.formats import encode_prompt
from forgetless.data.records import read_records
from forgetless.evaluation.answer_extraction import ANSWER_REGEX, AnswerExtraction, declared, parse_extraction
from forgetless.evaluation.generate import greedy_decode
from forgetless.evaluation.scoring import encode_pair, score_pairs
from forgetless.models import load_model

# ANSWER_REGEX (imported above, kept importable from here) is answer_marker's extraction as
# lm-eval's regex filter; the other extractors' filters are in forgetless.evaluation.answer_extraction.
# The module lm-eval imports (`!function`) for scoring rules no built-in filter expresses.
_RESULTS_MODULE = "forgetless_answers"


class ForgetlessLM(LM):
    """An lm-eval model over a ``(model, tokenizer)`` pair.

    Args:
        model: anything with ``forward(input_ids, attention_mask).logits``.
        tokenizer: its tokenizer (BOS and EOS).
        batch_size: requests per forward pass / prompts decoded together.
        window: tokens per forward pass for ``loglikelihood_rolling``.
        progress: show forgetless's progress bars.
    """

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, batch_size: int = 32,
                 window: int = 256, progress: bool = True) -> None:
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.window, self.progress = batch_size, window, progress

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> ForgetlessLM:
        """``lm_eval --model forgetless --model_args pretrained=PATH[,batch_size=N]`` (loads with
        ``forgetless.models.load_model``; PATH is a model or adapter directory or a hub id — for the
        testbed's base, the path ``forgetless testbed path tiny`` prints, followed by ``/base``)."""
        args = dict(kv.split("=", 1) for kv in arg_string.split(",") if kv)
        model, tokenizer, _ = load_model(args.pop("pretrained"))
        batch = (additional_config or {}).get("batch_size") or args.get("batch_size", 32)
        return cls(model, tokenizer, batch_size=int(batch))

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """``(log p(continuation | context), is_greedy)`` per request."""
        pairs = [encode_pair(self.tokenizer, *r.args) for r in requests]  # score_pairs fits them to the model
        scores = score_pairs(self.model, pairs, self.batch_size, desc="lm-eval loglikelihood",
                             progress=self.progress and not disable_tqdm)
        return [(s.logprob, s.greedy) for s in scores]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of each whole string after BOS (no EOS), in windows of ``window`` tokens."""
        pairs, owner = [], []
        for index, request in enumerate(requests):
            ids = encode_prompt(self.tokenizer, request.args[0])
            for start in range(0, len(ids) - 1, self.window - 1):
                chunk = ids[start : start + self.window]
                pairs.append((chunk[:1], chunk[1:]))
                owner.append(index)
        scores = score_pairs(self.model, pairs, self.batch_size, desc="lm-eval rolling",
                             progress=self.progress and not disable_tqdm)
        totals = [0.0] * len(requests)
        for index, score in zip(owner, scores):
            totals[index] += score.logprob
        return totals

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Greedy completions, cut at the first stop string (``until``) and at EOS."""
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            kwargs = dict(request.args[1])
            if kwargs.get("do_sample") or float(kwargs.get("temperature", 0.0) or 0.0) > 0:
                raise ValueError(f"ForgetlessLM: request {index} asks for sampling ({kwargs}); only greedy decoding "
                                 "is supported")
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            groups.setdefault((tuple(until), int(kwargs.get("max_gen_toks", 256))), []).append(index)
        outputs = [""] * len(requests)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        for (until, budget), indices in groups.items():
            prompts = [encode_prompt(self.tokenizer, requests[i].args[0]) for i in indices]
            tokens = greedy_decode(self.model, prompts, budget, self.tokenizer.eos_token_id, pad, self.batch_size,
                                   self.progress and not disable_tqdm)
            for i, ids in zip(indices, tokens):
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                for stop in until:
                    if stop and stop in text:
                        text = text[: text.index(stop)]
                outputs[i] = text
        return outputs


def _yaml_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _function_name(spec: str) -> str:
    return spec.replace("-", "_")


def scoring_yaml(extraction: AnswerExtraction) -> str:
    """The ``filter_list``/``process_results`` and ``metric_list`` of a generation task scored by ``extraction``.

    A regex extractor is lm-eval's ``regex`` filter (``group_select``) and ``take_first``, then
    ``exact_match`` with the extractor's ``regexes_to_ignore``/``ignore_case``; gold_prefix,
    which needs the gold, is a ``process_results`` function in ``forgetless_answers.py``
    (written next to the YAMLs by ``write_task_yamls``).
    """
    metric = "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
    if extraction.kind == "prefix":
        return f"process_results: !function {_RESULTS_MODULE}.{_function_name(extraction.spec)}\n" + metric
    filters = ("filter_list:\n"
               "  - name: answer\n"
               "    filter:\n"
               f"      - function: regex\n        regex_pattern: {_yaml_quote(extraction.pattern or '')}\n"
               f"        group_select: {extraction.group_select}\n"
               "      - function: take_first\n")
    if extraction.ignore:
        metric += f"    regexes_to_ignore: [{', '.join(_yaml_quote(p) for p in extraction.ignore)}]\n"
    if extraction.ignore_case:
        metric += "    ignore_case: true\n"
    return filters + metric


def write_task_yamls(
    out_dir: str | Path,
    cloze_file: str | Path | None = None,
    domain_files: dict[str, str | Path] | None = None,
    max_gen_toks: int = 128,
    answer_extraction: dict[str, str] | None = None,
) -> Path:
    """Write offline lm-eval task YAMLs over local JSONL files.

    Args:
        out_dir: directory for the YAMLs (pass it to lm-eval as ``include_path``).
        cloze_file: multiple-choice JSONL (``context``, ``choices``, ``label``): task ``forgetless_cloze``.
        domain_files: ``{name: prompt/answer JSONL}``: one generation task ``forgetless_<name>`` each,
            scored by exact match after the file's answer extraction (``scoring_yaml``).
        max_gen_toks: generation budget of the domain tasks.
        answer_extraction: ``{name: extractor}`` for some domain files; the others use the extractor
            their records declare, else answer_marker (``forgetless.evaluation.answer_extraction``).

    Returns:
        ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cloze_file is not None:
        (out / "forgetless_cloze.yaml").write_text(
            "task: forgetless_cloze\n"
            "dataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {_yaml_quote(str(Path(cloze_file).resolve()))}\n"
            "test_split: test\n"
            "output_type: multiple_choice\n"
            "doc_to_text: '{{context}}'\n"
            "doc_to_choice: '{{choices}}'\n"
            "doc_to_target: '{{label}}'\n"
            "metric_list:\n"
            "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
            "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n"
        )
    prefix_specs = set()
    for name, path in (domain_files or {}).items():
        spec = (answer_extraction or {}).get(name)
        extraction = parse_extraction(spec or declared((r.fields for r in read_records(path)), str(path))
                                      or "answer_marker", f"answer extraction of {name}")
        if extraction.kind == "prefix":
            prefix_specs.add(extraction.spec)
        (out / f"forgetless_{name}.yaml").write_text(
            f"task: forgetless_{name}\n"
            "dataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {_yaml_quote(str(Path(path).resolve()))}\n"
            "test_split: test\n"
            "output_type: generate_until\n"
            "doc_to_text: '{{prompt}}'\n"
            "doc_to_target: '{{answer}}'\n"
            "target_delimiter: ''\n"
            f"generation_kwargs:\n  until: []\n  do_sample: false\n  max_gen_toks: {max_gen_toks}\n"
            + scoring_yaml(extraction)
        )
    if prefix_specs:
        functions = "".join(f"\n\ndef {_function_name(spec)}(doc: dict, results: list[str]) -> dict[str, float]:\n"
                            f"    return lmeval_results({spec!r}, doc, results)\n" for spec in sorted(prefix_specs))
        (out / f"{_RESULTS_MODULE}.py").write_text(
            '"""lm-eval process_results for forgetless answer extractors (forgetless.evaluation.lmeval)."""\n\n'
            "from forgetless.evaluation.answer_extraction import lmeval_results\n" + functions)
    return out


__all__ = ["ANSWER_REGEX", "ForgetlessLM", "scoring_yaml", "write_task_yamls"]
