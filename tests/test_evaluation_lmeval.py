"""The lm-eval adapter reproduces forgetless's own numbers on the offline task YAMLs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from forgetless.evaluation.cloze import build_cloze, multiple_choice_accuracy, write_cloze
from forgetless.evaluation.domain import domain_accuracy
from tests.conftest import make_model, write_jsonl

lm_eval = pytest.importorskip("lm_eval", reason="optional extra: pip install 'forgetless[lmeval]'")


class AlwaysAnswers(torch.nn.Module):
    """Greedy decoding writes ``target`` then EOS, whatever the prompt: at each position it
    predicts the token after the longest prefix of ``target`` that the input ends with."""

    def __init__(self, target: list[int], vocab: int) -> None:
        super().__init__()
        self.target, self.vocab = target, vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for b, row in enumerate(input_ids.tolist()):
            for t in range(len(row)):
                k = max(k for k in range(len(self.target)) if k == 0 or row[t + 1 - k : t + 1] == self.target[:k])
                logits[b, t, self.target[k]] = 10.0
        return SimpleNamespace(logits=logits)


@pytest.mark.slow  # importing and running lm-eval takes ~30 s of CPU
def test_lmeval_scores_testbed_style_tasks_like_forgetless(tokenizer, tmp_path: Path) -> None:
    from lm_eval.tasks import TaskManager

    from forgetless.evaluation.lmeval import ForgetlessLM, write_task_yamls

    texts = [" ".join(f"word{d} number {i}" for i in range(60)) for d in range(4)]
    items = build_cloze(texts, n_items=8, context_words=8, continuation_words=2)
    cloze = write_cloze(items, tmp_path / "cloze.jsonl")
    rows = [{"prompt": f"Sum {a} and {b}.\n", "completion": f" Answer: {a + b}", "answer": str(a + b)}
            for a in range(5) for b in range(5)]
    domain = write_jsonl(tmp_path / "domain.jsonl", rows)
    tasks = write_task_yamls(tmp_path / "tasks", cloze, {"sums": domain}, max_gen_toks=8)
    model = make_model(tokenizer, seed=5)
    results = lm_eval.simple_evaluate(model=ForgetlessLM(model, tokenizer, batch_size=4, progress=False),
                                      tasks=["forgetless_cloze"], bootstrap_iters=0,
                                      task_manager=TaskManager(include_path=str(tasks)))["results"]
    ours = multiple_choice_accuracy(model, tokenizer, items, progress=False)
    assert results["forgetless_cloze"]["acc,none"] == pytest.approx(ours["accuracy"])
    assert results["forgetless_cloze"]["acc_norm,none"] == pytest.approx(ours["accuracy_norm"])
    answers = AlwaysAnswers(tokenizer(" Answer: 4", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id],
                            len(tokenizer))
    generated = lm_eval.simple_evaluate(model=ForgetlessLM(answers, tokenizer, batch_size=4, progress=False),
                                        tasks=["forgetless_sums"], bootstrap_iters=0,
                                        task_manager=TaskManager(include_path=str(tasks)))["results"]
    exact = domain_accuracy(answers, tokenizer, domain, max_new_tokens=8, progress=False)
    assert exact["exact_match"] == pytest.approx(5 / 25)  # a + b = 4 in 5 of the 25 records
    assert generated["forgetless_sums"]["exact_match,answer"] == pytest.approx(exact["exact_match"])
