"""lm-eval task YAMLs over local JSONL files, so ``lm_eval`` runs forgetless's tasks offline.

Writing them needs no lm-eval (running them does: ``forgetless.evaluation.lmeval``). A
generation task is scored as forgetless scores its file: the file's answer extractor
(``forgetless.evaluation.answer_extraction``) becomes lm-eval's ``regex`` filter and
``exact_match`` options, or, for gold_prefix, a ``process_results`` function.
"""

from __future__ import annotations

from pathlib import Path

from forgetless.data.records import read_records
from forgetless.evaluation.answer_extraction import AnswerExtraction, declared, parse_extraction

# The module lm-eval imports (`!function`) for scoring rules no built-in filter expresses.
_RESULTS_MODULE = "forgetless_answers"
FILTER = "answer"


def _yaml_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def scoring_yaml(extraction: AnswerExtraction) -> str:
    """The ``filter_list``/``process_results`` and ``metric_list`` of a generation task scored by ``extraction``.

    A regex extractor is lm-eval's ``regex`` filter (``group_select``) and ``take_first``, then
    ``exact_match`` with the extractor's ``regexes_to_ignore``/``ignore_case``; gold_prefix,
    which needs the gold, is a ``process_results`` function in ``forgetless_answers.py``
    (written next to the YAMLs by ``write_task_yamls``).
    """
    metric = "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
    # Every task's filter is named FILTER, so a group aggregates them under one name.
    filters = f"filter_list:\n  - name: {FILTER}\n    filter:\n"
    if extraction.kind == "prefix":
        return (filters + "      - function: take_first\n"
                f"process_results: !function {_RESULTS_MODULE}.{extraction.spec}\n" + metric)
    filters += (f"      - function: regex\n        regex_pattern: {_yaml_quote(extraction.pattern or '')}\n"
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
        functions = "".join(f"\n\ndef {spec}(doc: dict, results: list[str]) -> dict[str, float]:\n"
                            f"    return lmeval_results({spec!r}, doc, results)\n" for spec in sorted(prefix_specs))
        (out / f"{_RESULTS_MODULE}.py").write_text(
            '"""lm-eval process_results of forgetless answer extractors (forgetless.evaluation.lmeval_yaml)."""\n\n'
            "from forgetless.evaluation.answer_extraction import lmeval_results\n" + functions)
    return out


def write_group_yaml(out_dir: str | Path, group: str, tasks: list[str]) -> Path:
    """An lm-eval group over generation tasks written by ``write_task_yamls``: exact match pooled over their
    documents (``weight_by_size``), which is also how ``lmeval_items.task_items`` concatenates a group."""
    path = Path(out_dir) / f"{group}.yaml"
    path.write_text(f"group: {group}\ntask:\n" + "".join(f"  - {t}\n" for t in tasks)
                    + "aggregate_metric_list:\n  - metric: exact_match\n    aggregation: mean\n"
                    f"    weight_by_size: true\n    filter_list: {FILTER}\nmetadata:\n  version: 1.0\n")
    return path
