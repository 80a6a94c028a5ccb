"""How a model is prompted: plain text, or its tokenizer's chat template (``chat_template: auto | true | false``).

An instruct model answers a question best when the question comes as a user turn of
its chat template, and a model fine-tuned on chat-formatted prompts must be measured on
them. The choice belongs with the model, like its BOS convention
(``forgetless.special_tokens``): it is settled once, when the tokenizer is loaded, kept on
the tokenizer object, and read wherever a *domain prompt* becomes tokens (training on
prompt/completion records, exact match, completion loss, contextual replay, generation).
General text, cloze items and lm-eval requests are never rendered here: lm-eval renders
its own requests when asked (``apply_chat_template``), and general text is not a
conversation.

- ``false`` (the default for a model forgetless did not train): prompts are the text.
- ``true``: a prompt is the user turn of a one-turn conversation, rendered with the
  generation prompt (``apply_chat_template([{"role": "user", "content": prompt}],
  add_generation_prompt=True)``); a completion is what the template writes for the
  assistant's turn, its end-of-turn marker included, so the model learns to stop where its
  template says a turn ends. In training this is exactly the ``messages`` format of a
  ``[user, assistant]`` exchange.
- ``auto``: what a model forgetless trained was trained with (``forgetless.json``), else
  ``false``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BeforeValidator

from forgetless.special_tokens import Tristate, parse_tristate, recorded_setting

if TYPE_CHECKING:  # transformers is heavy to import
    from transformers import PreTrainedTokenizerBase

ChatChoice = Tristate
_ATTRIBUTE = "_forgetless_chat_prompts"


class PromptFormatError(ValueError):
    """Chat prompts asked of a tokenizer without a chat template."""


def parse_chat_choice(value: object) -> ChatChoice:
    """``chat_template`` from a flag or YAML value."""
    return parse_tristate(value, "chat_template")


# The type of a ``chat_template`` config field or flag: YAML's true/false become "true"/"false".
ChatSetting = Annotated[ChatChoice, BeforeValidator(parse_chat_choice)]
CHAT_HELP = ("render domain prompts as a user turn of the tokenizer's chat template (and train on the assistant's "
             "turn): auto keeps what a forgetless model was trained with, else plain text")


def uses_chat(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether domain prompts are rendered with the chat template for this tokenizer."""
    return bool(getattr(tokenizer, _ATTRIBUTE, False))


def set_chat(tokenizer: PreTrainedTokenizerBase, on: bool) -> None:
    """Render domain prompts with the chat template (``on``) or not.

    Raises:
        PromptFormatError: ``on`` for a tokenizer without a chat template.
    """
    if on and not tokenizer.chat_template:
        raise PromptFormatError(f"chat_template: true, but the tokenizer {tokenizer.name_or_path!r} has no chat "
                                "template; expected chat_template: false")
    setattr(tokenizer, _ATTRIBUTE, on)


def recorded_chat(model_dir: str | Path) -> bool | None:
    """Whether a forgetless model was trained on chat prompts (``False`` for one trained before the key
    existed, when no prompt was rendered); ``None`` when forgetless did not train it."""
    return recorded_setting(model_dir, "chat_template", False)


def apply_chat_choice(tokenizer: PreTrainedTokenizerBase, choice: ChatChoice | bool = "auto",
                      model_dir: str | Path | None = None) -> bool:
    """Settle how a loaded tokenizer's domain prompts are rendered, and return it (see the module docstring)."""
    choice = parse_chat_choice(choice)
    recorded = recorded_chat(model_dir) if model_dir is not None else None
    if choice == "auto":
        wanted = bool(recorded)
    else:
        wanted = choice == "true"
        if recorded is not None and recorded != wanted:
            warnings.warn(f"{model_dir}: trained with chat_template={str(recorded).lower()}, now prompted with "
                          f"chat_template={choice}: its prompts differ from training", stacklevel=2)
    set_chat(tokenizer, wanted)
    return wanted


def render_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
    """The text a domain prompt becomes: itself, or its user turn and the generation prompt."""
    if not uses_chat(tokenizer):
        return prompt
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


def exchange(prompt: str, completion: str) -> list[dict[str, str]]:
    """A prompt/completion record as the one-turn conversation chat prompts train on."""
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]


__all__ = ["CHAT_HELP", "ChatChoice", "ChatSetting", "PromptFormatError", "apply_chat_choice", "exchange",
           "parse_chat_choice",
           "recorded_chat", "render_prompt", "set_chat", "uses_chat"]
