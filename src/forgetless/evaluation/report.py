"""Evaluate one model on general text and a domain test set, as a JSON-able dict."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from forgetless.data.errors import DataError
from forgetless.data.records import read_records
from forgetless.evaluation.codelength import code_length
from forgetless.evaluation.domain import domain_accuracy


def read_texts(path: str | Path) -> list[str]:
    """The ``text`` field of every record of a general-text file."""
    texts = []
    for record in read_records(path):
        text = record.fields.get("text")
        if not isinstance(text, str):
            raise DataError(path, record.where, "text", "expected a string")
        texts.append(text)
    return texts


def evaluate_model(
    model_spec: str,
    general: str | Path | None = None,
    domain: str | Path | None = None,
    limit: int | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Held-out code length (``general``) and exact-match accuracy (``domain``) of one model.

    Returns:
        ``{"model", "general": {nats_per_token, bits_per_byte, tokens}, "domain": {exact_match, n}, "seconds"}``.
    """
    from forgetless.training.run import load_tokenizer, resolve_model

    start = time.time()
    path = resolve_model(model_spec)
    tokenizer = load_tokenizer(path, trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code)
    result: dict[str, Any] = {"model": path}
    if general:
        measured = code_length(model, tokenizer, read_texts(general))
        result["general"] = {
            "nats_per_token": measured.nats_per_token,
            "bits_per_byte": measured.bits_per_byte,
            "tokens": measured.tokens,
        }
    if domain:
        accuracy = domain_accuracy(model, tokenizer, domain, limit=limit)
        result["domain"] = {"exact_match": accuracy["exact_match"], "n": accuracy["n"],
                            "examples": accuracy["predictions"][:3]}
    result["seconds"] = time.time() - start
    return result
