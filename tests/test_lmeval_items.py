"""Per-item lm-eval scores (the study's general axis on benchmarks), offline with task YAMLs written here."""

from __future__ import annotations


import pytest

from forgetless.evaluation.cloze import multiple_choice_accuracy
from forgetless.evaluation.domain import domain_accuracy
from tests.conftest import make_model

lm_eval = pytest.importorskip("lm_eval", reason="optional extra: pip install 'forgetless[lmeval]'")


def test_items_agree_with_forgetless_own_scores(tokenizer, task_dir) -> None:  # noqa: ANN001
    """The per-document scores are lm-eval's own, and their means are forgetless's accuracies."""
    from forgetless.evaluation.cloze import read_choice_items
    from forgetless.evaluation.lmeval_items import task_items

    tasks, cloze, domain = task_dir
    model = make_model(tokenizer, seed=5)
    items = task_items(model, tokenizer, ["forgetless_cloze", "forgetless_sums"], include_path=str(tasks),
                       batch_size=4)
    cloze_items = items["forgetless_cloze"]
    assert cloze_items.metric == "acc" and cloze_items.higher_is_better and len(cloze_items.scores) == 6
    assert set(cloze_items.scores) <= {0.0, 1.0}
    ours = multiple_choice_accuracy(model, tokenizer, read_choice_items(cloze), progress=False)
    assert cloze_items.mean == pytest.approx(ours["accuracy"])
    sums = items["forgetless_sums"]
    assert sums.metric == "exact_match" and len(sums.scores) == 6
    assert sums.mean == pytest.approx(domain_accuracy(model, tokenizer, domain, max_new_tokens=6,
                                                      progress=False)["exact_match"])


def test_limit_and_unknown_task(tokenizer, task_dir) -> None:  # noqa: ANN001
    from forgetless.evaluation.lmeval_items import task_items

    tasks, _, _ = task_dir
    model = make_model(tokenizer, seed=1)
    assert len(task_items(model, tokenizer, ["forgetless_sums"], include_path=str(tasks), limit=2,
                          batch_size=4)["forgetless_sums"].scores) == 2
    with pytest.raises(ValueError, match=r"lm-eval task\(s\) no_such_task: not known to lm-eval"):
        task_items(model, tokenizer, ["no_such_task"], include_path=str(tasks))
