"""lm-eval's stop strings end a row's decoding (``ForgetlessLM.generate_until``, ``evaluation.lmeval.stop_strings``):
the completions are those decoded to the whole ``max_gen_toks`` and then cut, with fewer tokens decoded, and
lm-eval's ``HFLM`` gives the same text."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import PreTrainedTokenizerBase

import forgetless.evaluation.lmeval as lmeval_module
from tests.conftest import make_model

lm_eval = pytest.importorskip("lm_eval", reason="optional extra: pip install 'forgetless[lmeval]'")

PROMPTS = ["The river ran", "Answer: 7", "In the morning the", "x", "Once upon a time there was a"]
BUDGET = 40


def requests(until: list[str]) -> list[SimpleNamespace]:
    """``generate_until`` requests as lm-eval builds them (``args``: the context and the generation arguments)."""
    return [SimpleNamespace(args=(p, {"until": until, "max_gen_toks": BUDGET, "do_sample": False})) for p in PROMPTS]


def cut(text: str, until: list[str]) -> str:
    """lm-eval's cut: the text before each stop string in turn."""
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text


def test_rows_stop_at_their_stop_string_with_the_whole_budgets_completions(
        tokenizer: PreTrainedTokenizerBase, monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model(tokenizer, seed=3)
    lm = lmeval_module.ForgetlessLM(model, tokenizer, batch_size=2, progress=False)
    full = lm.generate_until(requests([]))  # no stop string: every row runs the whole budget (or to EOS)
    assert all(full)
    # Stop strings the rows will meet early: the 3 characters at position 4 of two rows' completions.
    until = [full[0][4:7], full[2][4:7]]
    decoded: list[list[list[int]]] = []
    real_decode = lmeval_module.greedy_decode

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - greedy_decode's own signature
        out = real_decode(*args, **kwargs)
        decoded.append(out)
        return out

    monkeypatch.setattr(lmeval_module, "greedy_decode", spy)
    stopped = lm.generate_until(requests(until))
    assert stopped == [cut(text, until) for text in full]
    assert len(stopped[0]) <= 4 and len(stopped[2]) <= 4  # cut at (or before) where the strings were taken
    lengths = [len(t) for t in decoded[0]]
    assert lengths[0] < BUDGET and lengths[2] < BUDGET  # decoding ended at the stop string, not at the budget
    # A row stops at the token that completes a stop string, which it keeps.
    for tokens in decoded[0]:
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        if len(tokens) < BUDGET and any(s in text for s in until):
            assert not any(s in tokenizer.decode(tokens[:-1], skip_special_tokens=True) for s in until)


def test_no_stop_rule_without_a_non_empty_stop_string(tokenizer: PreTrainedTokenizerBase) -> None:
    assert lmeval_module.stop_strings(tokenizer, []) is None
    assert lmeval_module.stop_strings(tokenizer, [""]) is None
    rule = lmeval_module.stop_strings(tokenizer, ["", "lo"])
    assert rule is not None and rule(tokenizer.encode("hello", add_special_tokens=False))
    assert not rule(tokenizer.encode("help", add_special_tokens=False))


def test_hflm_gives_the_same_completions_with_stop_strings(tokenizer: PreTrainedTokenizerBase,
                                                         tmp_path: Path) -> None:
    from lm_eval.models.huggingface import HFLM

    model = make_model(tokenizer, seed=3)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    full = lmeval_module.ForgetlessLM(model, tokenizer, batch_size=1, progress=False).generate_until(requests([]))
    until = [full[0][4:7], full[2][4:7]]
    ours = lmeval_module.ForgetlessLM(model, tokenizer, batch_size=1, progress=False).generate_until(requests(until))
    hf = HFLM(pretrained=str(tmp_path), batch_size=1, device="cpu", dtype="float32")
    theirs = hf.generate_until([SimpleNamespace(args=r.args, request_type="generate_until")
                                for r in requests(until)], disable_tqdm=True)
    assert ours == theirs
