"""Chat prompts (issue 25, item 5): one setting renders domain prompts with the chat template everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from forgetless import prompting, special_tokens
from forgetless.cli import main
from forgetless.data.formats import encode_completion, encode_prompt, encode_record
from forgetless.data.records import Record
from forgetless.evaluation.domain import completion_loss, domain_accuracy
from forgetless.models import ModelLoadError, load_model, load_tokenizer
from forgetless.replay.contextual import contextual_completions
from forgetless.replay.generate import Sample, SamplingSettings, context_free_prompt, sample_record
from tests.conftest import make_model, write_jsonl

# SmolLM2-135M-Instruct's template, shortened: it opens every turn with its BOS token and adds no BOS itself.
SMOL_TEMPLATE = ("{% for m in messages %}<|bos|>{{ m['role'] }}\n{{ m['content'] }}<|eos|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerBase) -> Path:
    path = tmp_path_factory.mktemp("chat-model")
    tokenizer.save_pretrained(path)
    make_model(tokenizer, seed=4).save_pretrained(path)
    return path


@pytest.fixture
def chat(model_dir: Path) -> PreTrainedTokenizerBase:
    return load_tokenizer(model_dir, chat_template="true")


def _row(tokenizer: PreTrainedTokenizerBase, **fields: object) -> dict:
    fmt = "messages" if "messages" in fields else "prompt_completion"
    return encode_record(tokenizer, Record(fields=dict(fields), where="line 1"), fmt, "d.jsonl", 256)


def test_a_chat_prompt_is_the_rendered_user_turn_with_one_bos(chat: PreTrainedTokenizerBase,
                                                              model_dir: Path) -> None:
    ids = encode_prompt(chat, "Sum 2 and 3.")
    rendered = chat.apply_chat_template([{"role": "user", "content": "Sum 2 and 3."}], tokenize=False,
                                        add_generation_prompt=True)
    assert chat.decode(ids) == rendered and ids.count(chat.bos_token_id) == 1  # the template's BOS, not a second
    plain = load_tokenizer(model_dir)
    assert not prompting.uses_chat(plain) and plain.decode(encode_prompt(plain, "Sum 2 and 3.")) == "<|bos|>Sum 2 and 3."


def test_training_on_chat_prompts_is_the_messages_format(chat: PreTrainedTokenizerBase) -> None:
    """A prompt/completion record under chat prompts trains exactly as the [user, assistant] conversation."""
    row = _row(chat, prompt="Sum 2 and 3.", completion="Answer: 5")
    assert row == _row(chat, messages=prompting.exchange("Sum 2 and 3.", "Answer: 5"))
    prompt_ids, completion_ids = encode_completion(chat, "Sum 2 and 3.", "Answer: 5")
    assert row["input_ids"] == prompt_ids + completion_ids  # what completion loss scores
    assert [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100] == completion_ids
    assert completion_ids[-1] == chat.eos_token_id  # the template's end of the assistant's turn


def test_evaluation_and_replay_condition_on_the_chat_prompt(chat: PreTrainedTokenizerBase, model_dir: Path,
                                                            tmp_path: Path) -> None:
    model, _, _ = load_model(model_dir)
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"Sum {a} and 1.", "completion": f"Answer: {a + 1}",
                                               "answer": str(a + 1)} for a in range(3)])
    plain = load_tokenizer(model_dir)
    assert completion_loss(model, chat, data, progress=False)["token_counts"] == [
        len(encode_completion(chat, f"Sum {a} and 1.", f"Answer: {a + 1}")[1]) for a in range(3)]
    assert completion_loss(model, chat, data, progress=False)["nats"] != completion_loss(
        model, plain, data, progress=False)["nats"]
    assert domain_accuracy(model, chat, data, max_new_tokens=4, progress=False)["n"] == 3
    answers = contextual_completions(model, chat, ["Sum 1 and 1."], SamplingSettings(num_samples=1, max_new_tokens=4,
                                     temperature=0.0), progress=False)
    assert answers == [] or answers[0]["prompt"] == "Sum 1 and 1."  # the record keeps the raw prompt


def test_train_records_chat_prompts_and_the_model_keeps_them(model_dir: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"Q{i}?", "completion": f"A{i}"} for i in range(4)])
    out = tmp_path / "out"
    assert main(["train", "--model", str(model_dir), "--data", str(data), "--output", str(out), "--max-steps", "1",
                 "--batch-size", "2", "--precision", "fp32", "--chat-template", "true"]) == 0
    assert json.loads((out / "forgetless.json").read_text())["chat_template"] is True
    assert prompting.uses_chat(load_tokenizer(out))  # auto: as trained
    with pytest.warns(UserWarning, match="prompts differ from training"):
        assert not prompting.uses_chat(load_tokenizer(out, chat_template="false"))


def test_chat_prompts_without_a_template_are_one_clear_error(model_dir: Path, tmp_path: Path) -> None:
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ModelLoadError, match="has no chat template"):
        load_tokenizer(tmp_path, chat_template=True)


def test_context_free_chat_samples_of_a_smollm2_like_model_train_on_what_was_sampled(model_dir: Path) -> None:
    """A template that opens turns with the BOS token, a tokenizer that adds none (SmolLM2): the sample's text
    keeps the template's BOS, and training re-encodes it to the ids the model was conditioned on and produced."""
    tok = load_tokenizer(model_dir, add_bos="false")
    tok.chat_template = SMOL_TEMPLATE
    prompt = context_free_prompt(tok, "chat")
    assert tok.decode(prompt) == "<|bos|>user\n<|eos|>\n<|bos|>assistant\n"
    body = tok(" hello there", add_special_tokens=False)["input_ids"]
    record = sample_record(Sample(prompt_ids=prompt, token_ids=[*body, tok.eos_token_id], finished=True), tok, "chat")
    assert special_tokens.encode(tok, record["text"]) == prompt + body
    assert context_free_prompt(tok, "bos") == [tok.bos_token_id]  # the seed paper's BOS: here, a turn opener


def test_the_lm_eval_adapter_renders_requests_when_lm_eval_asks(chat: PreTrainedTokenizerBase, model_dir: Path,
                                                                tmp_path: Path) -> None:
    pytest.importorskip("lm_eval")
    from forgetless.evaluation.lmeval import ForgetlessLM, write_task_yamls
    from forgetless.evaluation.lmeval_items import task_items

    model, tokenizer, _ = load_model(model_dir)
    history = [{"role": "user", "content": "Sum 1 and 1."}]
    lm = ForgetlessLM(model, tokenizer, batch_size=2, progress=False)
    assert lm.apply_chat_template(history) == tokenizer.apply_chat_template(history, tokenize=False,
                                                                           add_generation_prompt=True)
    rows = [{"prompt": f"Sum {a} and 1.", "completion": f" Answer: {a + 1}", "answer": str(a + 1)} for a in range(3)]
    tasks = write_task_yamls(tmp_path / "tasks", None, {"sums": write_jsonl(tmp_path / "s.jsonl", rows)}, max_gen_toks=4)
    items = task_items(model, tokenizer, ["forgetless_sums"], include_path=str(tasks), batch_size=2,
                       apply_chat_template=True)
    assert len(items["forgetless_sums"].scores) == 3
