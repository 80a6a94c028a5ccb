"""lm-eval scores the task YAMLs forgetless writes exactly as forgetless scores them, item by item, per extractor."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from forgetless.evaluation.domain import domain_accuracy
from tests.conftest import write_jsonl
from tests.fitting import fit_continuations

pytest.importorskip("lm_eval", reason="optional extra: pip install 'forgetless[lmeval]'")

# What the fitted model generates for each prompt: case, punctuation, blank lines, numbers and an
# "Answer:" line, where a rule (or lm-eval's version of it) could go wrong.
TARGETS = [" Paris.\n\nThe capital", " 12, then 15", " the Fox is quick", "\n\n Answer: 12.", " Glasgow Coma Scale",
           " hello there\nbe brief"]
PROMPTS = [f"Sum {a} and {b}.\n" for a in range(3) for b in range(2)]
# Gold answers tried against every generation: right under some rules, wrong under others.
GOLDS = ["Paris", "paris.", "12", "15", "the Fox", "Fox", "Glasgow", "hello there", "Parisian"]
SPECS = ["answer_marker", "first_line", "gold_prefix", "first_number", r"regex:([A-Z]\w+)"]
BUDGET = 12


@pytest.fixture(scope="module")
def fitted(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """The tiny model fitted to continue each prompt with its target."""
    return fit_continuations(tokenizer, PROMPTS, TARGETS)


def test_lm_eval_scores_every_item_as_forgetless(tokenizer, fitted, tmp_path: Path) -> None:  # noqa: ANN001
    from forgetless.evaluation.lmeval import write_task_yamls
    from forgetless.evaluation.lmeval_items import task_items

    files = {}
    for k, spec in enumerate(SPECS):
        rows = [{"prompt": p, "answer": g} for p in PROMPTS for g in GOLDS]
        # Half the files declare their extractor in the records, half get it from the writer's argument.
        if k % 2:
            rows = [{**r, "answer_extraction": spec} for r in rows]
        files[f"rule{k}"] = write_jsonl(tmp_path / f"rule{k}.jsonl", rows)
    given = {f"rule{k}": spec for k, spec in enumerate(SPECS) if k % 2 == 0}
    tasks = write_task_yamls(tmp_path / "tasks", None, files, max_gen_toks=BUDGET, answer_extraction=given)
    items = task_items(fitted, tokenizer, [f"forgetless_{name}" for name in files], include_path=str(tasks),
                       batch_size=16)
    for k, (name, path) in enumerate(files.items()):
        ours = domain_accuracy(fitted, tokenizer, path, BUDGET, batch_size=16, progress=False,
                               answer_extraction=given.get(name))
        assert ours["answer_extraction"] == SPECS[k]
        assert [p["generation"] for p in ours["predictions"][:: len(GOLDS)]][:3] == [
            " Paris.\n\nThe c", " 12, then 15", " the Fox is quick"]  # the fit worked (cut at 12 tokens)
        correct = [float(p["correct"]) for p in ours["predictions"]]
        assert items[f"forgetless_{name}"].scores == correct, SPECS[k]
        assert 0 < sum(correct) < len(correct), SPECS[k]  # each rule gets some right and some wrong
