"""forgetless's figures are lm-eval's (issue 33): item for item, under lm-eval's ``HFLM`` with default arguments.

One model, two tokenizers of one vocabulary (one adds BOS, one does not, as SmolLM2's): ``forgetless eval``'s
generations and cloze scores, the forgetless adapter under lm-eval, and ``lm_eval --model hf`` with nothing but
``pretrained`` (and ``dtype``: HFLM's default loads the model's stored dtype; the device: its default is CUDA)
give the same items. Batch size 1
everywhere, so the three compute the same sums in the same order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from forgetless.evaluation.cloze import multiple_choice_accuracy, read_choice_items
from forgetless.evaluation.domain import domain_accuracy
from forgetless.models import load_model
from tests.conftest import make_model
from tests.tolerance import fp32_reorder_rtol, tiny_llama_terms

lm_eval = pytest.importorskip("lm_eval")


@pytest.fixture(scope="module", params=[True, False], ids=["adds-bos", "no-bos"])
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              tokenizer: PreTrainedTokenizerBase) -> Path:
    path = tmp_path_factory.mktemp("agreement")
    tokenizer.save_pretrained(path)
    AutoTokenizer.from_pretrained(path, add_bos_token=request.param).save_pretrained(path)
    make_model(tokenizer, seed=11).save_pretrained(path)
    return path


def _samples(lm: Any, include: Path, model_args: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """lm-eval's logged samples of both tasks, per task in document order."""
    from forgetless.evaluation.lmeval_items import _task_manager

    out = lm_eval.simple_evaluate(model=lm, model_args=model_args, tasks=["forgetless_cloze", "forgetless_sums"],
                                  task_manager=_task_manager(str(include)), bootstrap_iters=0, log_samples=True,
                                  batch_size=1, device="cpu")
    return {task: sorted(rows, key=lambda s: s["doc_id"]) for task, rows in out["samples"].items()}


def test_forgetless_eval_the_adapter_and_hflm_agree_item_for_item(model_dir: Path, task_dir: tuple[Path, Path, Path]) -> None:
    from forgetless.evaluation.lmeval import ForgetlessLM

    include, cloze, domain = task_dir
    model, tokenizer, _ = load_model(model_dir)
    hf = _samples("hf", include, f"pretrained={model_dir},dtype=float32")
    adapter = _samples(ForgetlessLM(model, tokenizer, batch_size=1, progress=False), include)

    # Generation (exact match): the same text, item for item, in all three.
    ours = domain_accuracy(model, tokenizer, domain, max_new_tokens=6, batch_size=1, progress=False)["predictions"]
    hf_text = [s["resps"][0][0] for s in hf["forgetless_sums"]]
    assert [s["resps"][0][0] for s in adapter["forgetless_sums"]] == hf_text
    assert [p["generation"] for p in ours] == hf_text
    assert [s["exact_match"] for s in adapter["forgetless_sums"]] == [s["exact_match"] for s in hf["forgetless_sums"]]

    # Loglikelihood (cloze): every choice's log-probability, then every item's answer.
    rtol = fp32_reorder_rtol(tiny_llama_terms(positions=32, summed=8))
    hf_logprobs = [r[0][0] for s in hf["forgetless_cloze"] for r in s["resps"]]
    assert [r[0][0] for s in adapter["forgetless_cloze"] for r in s["resps"]] == pytest.approx(hf_logprobs, rel=rtol)
    mine = multiple_choice_accuracy(model, tokenizer, read_choice_items(cloze), batch_size=1, progress=False)
    assert mine["correct"] == [s["acc"] for s in hf["forgetless_cloze"]]
