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

Tokenization follows the model's tokenizer, as HFLM's does (``forgetless.special_tokens``:
BOS where it adds BOS; contexts split as lm-eval splits them, ``encode_pair``), so the
adapter, ``forgetless eval`` and ``lm_eval --model hf`` give the same items
(``tests/test_lmeval_agreement.py``). Requests are text: with lm-eval's
``apply_chat_template`` they arrive rendered by ``apply_chat_template`` below.
Generation is greedy only (sampling arguments are refused, not ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from forgetless.extras import MissingExtra

try:
    from lm_eval.api.model import LM
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise MissingExtra("lm_eval") from err

from forgetless import special_tokens
from forgetless.evaluation.answer_extraction import ANSWER_REGEX
from forgetless.evaluation.generate import StopRule, greedy_decode
from forgetless.evaluation.lmeval_yaml import scoring_yaml, write_task_yamls
from forgetless.evaluation.scoring import encode_pair, score_pairs
from forgetless.models import load_model

# ANSWER_REGEX, scoring_yaml and write_task_yamls (imported above) stay importable from here; writing task
# YAMLs needs no lm-eval, so they live in forgetless.evaluation.lmeval_yaml.


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

    @property
    def tokenizer_name(self) -> str:
        """What lm-eval fingerprints its request cache of chat-rendered prompts with."""
        return str(self.tokenizer.name_or_path).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        """The tokenizer's chat template (lm-eval records it with the results)."""
        return self.tokenizer.chat_template if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """A conversation rendered with the tokenizer's template (lm-eval's ``apply_chat_template``); the
        request's text then starts with any BOS the template writes, and no second one is added."""
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """``(log p(continuation | context), is_greedy)`` per request."""
        pairs = [encode_pair(self.tokenizer, *r.args) for r in requests]  # score_pairs fits them to the model
        scores = score_pairs(self.model, pairs, self.batch_size, desc="lm-eval loglikelihood",
                             progress=self.progress and not disable_tqdm)
        return [(s.logprob, s.greedy) for s in scores]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of each whole string after its first token (BOS where the tokenizer adds it; no EOS), in
        windows of ``window`` tokens."""
        pairs, owner = [], []
        for index, request in enumerate(requests):
            ids = special_tokens.encode(self.tokenizer, request.args[0])
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
        """Greedy completions, cut at the first stop string (``until``) and at EOS.

        A completion stops being decoded once its text holds a stop string (``stop_strings``), as lm-eval's
        ``HFLM`` stops a batch once every row holds one, instead of running to ``max_gen_toks``."""
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
            prompts = [special_tokens.encode(self.tokenizer, requests[i].args[0]) for i in indices]
            tokens = greedy_decode(self.model, prompts, budget, self.tokenizer.eos_token_id, pad, self.batch_size,
                                   self.progress and not disable_tqdm, stop=stop_strings(self.tokenizer, until))
            for i, ids in zip(indices, tokens):
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                for stop in until:
                    if stop and stop in text:
                        text = text[: text.index(stop)]
                outputs[i] = text
        return outputs


def stop_strings(tokenizer: PreTrainedTokenizerBase, until: Sequence[str]) -> StopRule | None:
    """The rule that stops a row once the text of its tokens holds one of ``until`` (None: no non-empty stop).

    The text up to the stop string is final then (later tokens only add text after it, which ``generate_until``
    cuts), so the completion is the one decoded to the whole budget and cut; lm-eval's ``HFLM`` stops at the same
    token for a batch of one. Each call decodes the row's tokens so far (microseconds for a few hundred tokens,
    against milliseconds for a decoding step).
    """
    strings = [s for s in until if s]
    if not strings:
        return None

    def stop(tokens: list[int]) -> bool:
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        return any(s in text for s in strings)

    return stop


__all__ = ["ANSWER_REGEX", "ForgetlessLM", "scoring_yaml", "stop_strings", "write_task_yamls"]
