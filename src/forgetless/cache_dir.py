"""Where forgetless caches what it builds or converts: the testbed, converted GGUF models.

``$FORGETLESS_CACHE`` when set, else ``$XDG_CACHE_HOME/forgetless`` (``~/.cache/forgetless``).
It sits on the ground floor so that both the testbed and the GGUF import (a lower layer
than the testbed) key their caches under the same root.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The directory forgetless caches built artifacts in."""
    if "FORGETLESS_CACHE" in os.environ:
        return Path(os.environ["FORGETLESS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "forgetless"
