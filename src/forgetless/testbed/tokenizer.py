"""Train the testbed's tokenizer: byte-level BPE saved as a Hugging Face fast tokenizer.

Digits are split one per token before BPE runs, and a space before a number stays
attached to its first digit (`` 34`` is ``Ġ3`` ``4``, never ``Ġ`` ``3`` ``4``). Numbers
then tokenize the same way wherever they appear, and the token before a number is
the word that names it (``rate``), not a bare space shared by every number: copying
a value from the prompt is then a plain induction step, which is what lets a tiny
model learn the calculation tasks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"

# A minimal chat template: one turn a line-block, the assistant's turn closed by EOS.
# ``add_generation_prompt`` opens an assistant turn for generation.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}Assistant: {{ message['content'] }}{{ eos_token }}{% endgeneration %}\n"
    "{% else %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path | None = None) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with BOS, EOS, PAD and a chat template; ``tokenizer(text)`` adds BOS.

    Args:
        texts: training text, one document or paragraph per item.
        vocab_size: target vocabulary size including the 256 byte tokens and specials.
        out_dir: if given, the tokenizer is saved there with ``save_pretrained``.

    Returns:
        The trained tokenizer as a ``PreTrainedTokenizerFast``.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r" ?\p{N}"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Guarantee a "Ġd" token for every digit, whatever the corpus: a number whose
    # space-and-first-digit pair was never merged would fall back to a bare "Ġ".
    digits = [" ".join("0123456789")] * 100
    tok.train_from_iterator(itertools.chain(texts, digits), trainer=trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        # The testbed's models are trained on BOS + text: the tokenizer declares it (its post-processor adds
        # BOS), so tokenizer(text), lm-eval's HFLM and TRL give the ids forgetless trains on.
        add_bos_token=True,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        model_max_length=1024,
    )
    if out_dir is not None:
        fast.save_pretrained(out_dir)
    return fast
