"""Tiny GGUF files written in the test itself, never downloaded.

``write_llama_gguf`` stores a Hugging Face Llama and its byte-level BPE tokenizer the way
llama.cpp's ``convert_hf_to_gguf.py`` does (``LlamaModel``, with ``gpt2`` tokenizer
metadata), using the ``gguf`` package's ``GGUFWriter``. What transformers' GGUF loader
reads back (``transformers/modeling_gguf_pytorch_utils.py``, ``integrations/ggml.py``,
``integrations/gguf/gguf_tokenizer_mapping.py`` in 5.24):

- ``general.architecture`` and the ``llama.*`` hyper-parameters (block count, widths,
  head counts, ``rope.dimension_count`` as ``head_dim``, ``rope.freq_base``, the RMS
  norm epsilon, ``vocab_size``); tied embeddings are implied by the absence of
  ``output.weight``;
- ``tokenizer.ggml.*``: ``model`` (``gpt2``: byte-level BPE), ``tokens`` in id order,
  ``token_type`` (3 = control, added as special tokens), ``merges`` as ``"a b"``
  strings, the BOS/EOS/PAD ids, ``add_bos_token``; ``tokenizer.chat_template``;
- tensors under llama.cpp's names, with the query and key rows permuted the way
  llama.cpp lays out rotary pairs (the loader reverses it).
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from forgetless.testbed.tokenizer import CHAT_TEMPLATE

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"

# llama.cpp's names for one decoder layer's tensors, from Hugging Face's.
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def train_gpt2_style_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE with GPT-2's pre-tokenizer, BOS/EOS/PAD and the testbed's chat template.

    GGUF's ``gpt2`` tokenizer model means exactly this split (``ByteLevel`` with its regex); the
    testbed's own tokenizer splits digits first, which a GGUF of ``tokenizer.ggml.pre = gpt2``
    does not say, so the round-trip test uses this one.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   chat_template=CHAT_TEMPLATE)


def _llama_cpp_permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's row order for a query or key projection (``convert_hf_to_gguf.py``'s ``permute``)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _stored(tensor: torch.Tensor, tensor_type: gguf.GGMLQuantizationType) -> np.ndarray:
    """A tensor as the file stores it: norms stay F32 (as llama.cpp keeps 1-D tensors), matrices in ``tensor_type``."""
    array = tensor.detach().to(torch.float32).numpy()
    if tensor_type == gguf.GGMLQuantizationType.F32 or array.ndim == 1:
        return array
    if tensor_type == gguf.GGMLQuantizationType.F16:
        return array.astype(np.float16)
    return gguf.quantize(array, tensor_type)


def write_llama_gguf(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, path: Path,
                     tensor_type: gguf.GGMLQuantizationType = gguf.GGMLQuantizationType.F32,
                     extra_tensors: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``model`` and ``tokenizer`` as a GGUF file at ``path``; matrices stored as ``tensor_type``
    (``extra_tensors`` are added as they are, for files the converter must refuse)."""
    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")

    def add(name: str, tensor: torch.Tensor) -> None:
        stored = _stored(tensor, tensor_type)
        quantized = stored.dtype == np.uint8  # raw blocks: the writer needs their type to know the shape
        writer.add_tensor(name, stored, raw_dtype=tensor_type if quantized else None)

    writer.add_name("forgetless tiny llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(int(tensor_type))

    vocab = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]
    specials = set(tokenizer.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in vocab["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    state = model.state_dict()
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    add("token_embd.weight", state["model.embed_tokens.weight"])
    for layer in range(config.num_hidden_layers):
        for hf_name, gguf_name in _LAYER_NAMES.items():
            tensor = state[f"model.layers.{layer}.{hf_name}"].detach().to(torch.float32)
            if hf_name.startswith("self_attn.q_proj"):
                tensor = torch.from_numpy(_llama_cpp_permute(tensor.numpy(), heads))
            elif hf_name.startswith("self_attn.k_proj"):
                tensor = torch.from_numpy(_llama_cpp_permute(tensor.numpy(), kv_heads))
            add(f"blk.{layer}.{gguf_name}", tensor)
    add("output_norm.weight", state["model.norm.weight"])
    if not config.tie_word_embeddings:
        add("output.weight", state["lm_head.weight"])
    for name, array in (extra_tensors or {}).items():
        writer.add_tensor(name, array)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
