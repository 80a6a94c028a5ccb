"""Reading, validating, encoding and batching training data."""

from forgetless.data.collate import PadCollator, pack
from forgetless.data.errors import DataError
from forgetless.data.formats import IGNORE, encode_prompt
from forgetless.data.loading import load_examples
from forgetless.data.records import data_hash, read_records

__all__ = ["IGNORE", "DataError", "PadCollator", "data_hash", "encode_prompt", "load_examples", "pack", "read_records"]
