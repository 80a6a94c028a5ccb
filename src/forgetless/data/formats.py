"""Turn raw records into token ids and labels, in the three formats users have.

- ``text``: ``{"text": ...}``, every token supervised (pretraining, replay);
- ``prompt_completion``: ``{"prompt": ..., "completion": ...}``, loss on the
  completion only by default;
- ``messages``: ``{"messages": [{"role": ..., "content": ...}, ...]}``, rendered
  with the tokenizer's chat template, loss on assistant turns only by default.

Labels follow the Hugging Face convention: aligned with ``input_ids``, ``-100``
where no loss is taken, shifted by the loss function. The first label of every
example is ``-100`` (nothing predicts the first token), so counting labels before
or after the shift gives the same number of supervised tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from forgetless import special_tokens
from forgetless.data.errors import DataError
from forgetless.data.records import Record
from forgetless.losses import IGNORE  # noqa: F401  (the label of an unsupervised position; used here and re-exported)
from forgetless.prompting import exchange, render_prompt, uses_chat

Format = Literal["auto", "text", "prompt_completion", "messages"]
# ``input_ids`` and ``labels`` (lists of ints), optionally ``sample_weight`` (a float).
Example = dict[str, Any]
ROLES = ("system", "user", "assistant", "tool")


def detect_format(record: Record, path: str | Path) -> Format:
    """Pick the format from the fields of the first record."""
    keys = record.fields.keys()
    if "messages" in keys:
        return "messages"
    if "prompt" in keys or "completion" in keys:
        return "prompt_completion"
    if "text" in keys:
        return "text"
    raise DataError(
        path, record.where, None,
        f"expected a 'text' field, 'prompt' and 'completion' fields, or a 'messages' field; found {sorted(keys)}",
    )


def _string(record: Record, path: str | Path, field: str, allow_empty: bool = False) -> str:
    if field not in record.fields or record.fields[field] is None:
        raise DataError(path, record.where, field, "missing; expected a string")
    value = record.fields[field]
    if not isinstance(value, str):
        raise DataError(path, record.where, field, f"expected a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataError(path, record.where, field, "expected a non-empty string")
    return value


def _messages(record: Record, path: str | Path) -> list[dict[str, str]]:
    if "messages" not in record.fields or record.fields["messages"] is None:
        raise DataError(path, record.where, "messages", "missing; expected a list of {role, content} objects")
    value = record.fields["messages"]
    if not isinstance(value, list) or not value:
        raise DataError(path, record.where, "messages", "expected a non-empty list of {role, content} objects")
    messages = []
    for i, message in enumerate(value):
        field = f"messages[{i}]"
        if not isinstance(message, dict):
            raise DataError(path, record.where, field, f"expected an object with 'role' and 'content', got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise DataError(path, record.where, f"{field}.role", f"expected one of {list(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise DataError(path, record.where, f"{field}.content", f"expected a string, got {type(content).__name__}")
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(path, record.where, "messages", "expected at least one message with role 'assistant'")
    return messages


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    """Token ids of a domain prompt exactly as training sees it.

    The prompt is rendered as the tokenizer's prompt format says (``forgetless.prompting``:
    itself, or a user turn of the chat template with the generation prompt), then
    encoded with its BOS convention (``forgetless.special_tokens``). Generation and
    scoring call this too, so a completion is always conditioned on the same ids it was
    trained after.
    """
    return special_tokens.encode(tokenizer, render_prompt(tokenizer, prompt))


def encode_completion(tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """``(prompt ids, completion ids)`` of a prompt/completion pair, as training encodes it.

    Plain prompts: the completion's tokens and EOS (prompt and completion are tokenized
    apart, so the boundary is exact and evaluation, which tokenizes the prompt alone,
    sees the same ids). Chat prompts: what the template writes for the assistant's turn
    after the generation prompt, its end-of-turn marker included.
    """
    prompt_ids = encode_prompt(tokenizer, prompt)
    if not uses_chat(tokenizer):
        return prompt_ids, tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    full = special_tokens.encode(tokenizer, tokenizer.apply_chat_template(exchange(prompt, completion), tokenize=False))
    if full[: len(prompt_ids)] == prompt_ids:
        return prompt_ids, full[len(prompt_ids):]
    # A merge across the boundary (rare with templates, whose turns end in special tokens): the turn on its own.
    turn = tokenizer.apply_chat_template(exchange(prompt, completion), tokenize=False)[
        len(render_prompt(tokenizer, prompt)):]
    return prompt_ids, tokenizer(turn, add_special_tokens=False)["input_ids"]


def _encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> Example:
    # verbose=False: a text longer than model_max_length is expected here (packing or
    # truncation to max_length follows), so transformers' length warning is noise.
    ids = special_tokens.encode(tokenizer, text, verbose=False) + [tokenizer.eos_token_id]
    return {"input_ids": ids, "labels": [IGNORE, *ids[1:]]}


def _encode_prompt_completion(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str, completion_only: bool
) -> Example:
    prompt_ids, completion_ids = encode_completion(tokenizer, prompt, completion)
    ids = prompt_ids + completion_ids
    if completion_only:
        labels = [IGNORE] * len(prompt_ids) + completion_ids
    else:
        labels = [IGNORE, *ids[1:]]
    return {"input_ids": ids, "labels": labels}


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], path: str | Path, where: str,
            add_generation_prompt: bool = False) -> str:
    """The chat template applied to ``messages``; a template that fails names the record and the template's model.

    transformers renders templates in jinja2's sandbox: a template that reaches for Python internals raises
    ``SecurityError``, one that calls ``raise_exception`` or is malformed another ``TemplateError`` (none of them a
    ``ValueError``), and ``messages[:0]`` (the prompt before a leading assistant turn) may trip a template's own
    checks.
    """
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except TemplateError as err:
        raise DataError(path, where, "messages", f"the chat template of {tokenizer.name_or_path} refused to render "
                        f"it ({type(err).__name__}: {err}); expected a template that renders these messages "
                        "without touching Python internals") from None


def _encode_messages(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], completion_only: bool, path: str | Path, where: str
) -> Example:
    if not tokenizer.chat_template:
        raise DataError(path, where, "messages", "the tokenizer has no chat template; use the prompt/completion or text format")
    full = _render(tokenizer, messages, path, where)
    # Assistant spans in characters: the text each assistant turn adds after the
    # generation prompt. Rendering prefixes works for any template, including
    # those without {% generation %} markers.
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(_render(tokenizer, messages[:i], path, where, add_generation_prompt=True))
        end = len(_render(tokenizer, messages[: i + 1], path, where))
        spans.append((start, end))
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), list(encoded["offset_mapping"])
    # The convention's BOS, unless the template wrote its own (no second BOS).
    prefix = special_tokens.bos_prefix(tokenizer)
    if prefix and ids[:1] != prefix:
        ids, offsets = [*prefix, *ids], [(0, 0), *offsets]
    labels = [IGNORE] * len(ids)
    for t, (begin, _) in enumerate(offsets):
        if t > 0 and (not completion_only or any(s <= begin < e for s, e in spans)):
            labels[t] = ids[t]
    return {"input_ids": ids, "labels": labels}


def encode_record(
    tokenizer: PreTrainedTokenizerBase,
    record: Record,
    fmt: Format,
    path: str | Path,
    max_length: int,
    completion_only: bool = True,
    truncate: bool = True,
) -> Example:
    """Validate one record and turn it into ``input_ids`` and ``labels``.

    Args:
        tokenizer: a tokenizer with BOS and EOS (and a chat template for messages).
        record: the raw record.
        fmt: its format (not ``auto``).
        path: the source file, for error messages.
        max_length: examples are cut to this many tokens from the right.
        completion_only: take the loss on completion or assistant tokens only.
        truncate: cut long examples; when False (packing) they are kept whole.

    Returns:
        ``{"input_ids": [T], "labels": [T]}`` with ``T <= max_length`` when truncating.

    Raises:
        DataError: a field is missing or of the wrong type, or truncation leaves
            no supervised token.
    """
    if fmt == "text":
        example = _encode_text(tokenizer, _string(record, path, "text"))
    elif fmt == "prompt_completion":
        prompt = _string(record, path, "prompt", allow_empty=True)
        completion = _string(record, path, "completion")
        example = _encode_prompt_completion(tokenizer, prompt, completion, completion_only)
    else:
        example = _encode_messages(tokenizer, _messages(record, path), completion_only, path, record.where)
    if truncate and len(example["input_ids"]) > max_length:
        length = len(example["input_ids"])
        example = {key: value[:max_length] for key, value in example.items()}
        if all(label == IGNORE for label in example["labels"]):
            field = {"text": "text", "prompt_completion": "prompt", "messages": "messages"}[fmt]
            raise DataError(
                path, record.where, field,
                f"the sample is {length} tokens, longer than max_length={max_length}, and truncation leaves no "
                "token to supervise; expected a shorter prompt or a larger max_length",
            )
    return example


def encode_records(
    tokenizer: PreTrainedTokenizerBase,
    records: list[Record],
    path: str | Path,
    fmt: Format = "auto",
    max_length: int = 1024,
    completion_only: bool = True,
    truncate: bool = True,
) -> list[Example]:
    """Encode every record (see ``encode_record``); the format is detected once if ``auto``."""
    resolved: Any = detect_format(records[0], path) if fmt == "auto" else fmt
    return [
        encode_record(tokenizer, record, resolved, path, max_length, completion_only, truncate) for record in records
    ]
