"""Reading, validating, encoding and batching training data.

Names are imported on first use (PEP 562): ``from forgetless.data.errors import
DataError`` is what the command line needs at start-up, and it should not pay for
importing torch and transformers, which ``collate`` and ``formats`` need.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "PadCollator": "collate",
    "pack": "collate",
    "DataError": "errors",
    "IGNORE": "formats",
    "encode_prompt": "formats",
    "load_examples": "loading",
    "data_hash": "records",
    "read_records": "records",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'forgetless.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"forgetless.data.{_HOMES[name]}"), name)
