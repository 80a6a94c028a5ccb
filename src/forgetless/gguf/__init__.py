"""GGUF import: llama.cpp's single-file checkpoints as ordinary safetensors models.

- ``header``: what a GGUF file holds (architecture, tensor types), checked against what
  transformers and the ``gguf`` package can read, with one-line errors;
- ``convert``: ``convert_gguf(FILE, DIR, dtype)``, a ``save_pretrained`` directory
  (weights, tokenizer, chat template, generation config) that
  ``AutoModelForCausalLM.from_pretrained(DIR)`` loads;
- ``cache``: ``gguf:FILE`` and ``gguf:FILE@DTYPE`` specs, converted once into the cache;
- ``real``: ``real:NAME`` presets, real models fetched from the package index;
- ``cli``: the ``forgetless convert-gguf`` subcommand.

Specs are resolved at the entry points with the ``testbed:`` ones
(``forgetless.testbed.specs``); everything below them receives plain paths.
"""
