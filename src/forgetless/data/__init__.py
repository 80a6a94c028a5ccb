"""Reading, validating, encoding and batching training data.

Names are imported on first use (``forgetless.lazy``): ``from forgetless.data.errors
import DataError`` is what the command line needs at start-up, and it should not pay
for torch and transformers, which ``collate`` and ``formats`` import.
"""

from forgetless.lazy import lazy_getattr

_EXPORTS = {
    "PadCollator": "collate",
    "pack": "collate",
    "DataError": "errors",
    "IGNORE": "formats",
    "encode_prompt": "formats",
    "load_examples": "loading",
    "data_hash": "records",
    "read_records": "records",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
