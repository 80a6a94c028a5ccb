"""The one error of the merging package, in a module that imports nothing.

It lives apart from ``checkpoint.py`` (which needs torch and safetensors) so that the rules'
parameter checks, the registry and ``forgetless merge --help`` can raise and catch it without
importing torch (issue 27: ``forgetless --help`` imported torch through this class alone).
"""

from __future__ import annotations


class MergeError(ValueError):
    """A merge was refused before anything was written; the message names what differs."""
