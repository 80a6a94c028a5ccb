"""``gguf:FILE`` and ``gguf:FILE@DTYPE`` specs: a GGUF file, converted once into the cache.

The converted directory is ``<cache>/gguf/<sha256 of the file, 16 hex digits>-<dtype>/``
(``forgetless.cache_dir.cache_root``), so the same file under another name or path is
converted once, and an edited file is converted again. It is written atomically
(temporary sibling, then rename), so a directory there is complete and is reused as it is.
Hashing reads the whole file (about 1 s a GB), so the digest is remembered under the file's
path, size and modification time (``digests.json``); a file changed in place is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from forgetless.atomic import write_json
from forgetless.cache_dir import cache_root
from forgetless.dtypes import SHORT_NAMES
from forgetless.gguf.convert import convert_gguf
from forgetless.gguf.header import GgufError, read_summary, starts_like_gguf

PREFIX = "gguf:"
DEFAULT_DTYPE = "bf16"  # as real checkpoints ship; ``@fp32`` keeps the dequantized values exactly
# Bump when the conversion writes something different for the same file, so old cache entries are not reused.
CONVERTER_VERSION = 1


def parse_dtype_suffix(spec: str, body: str) -> tuple[str, str]:
    """``"x.gguf@fp32"`` -> ``("x.gguf", "fp32")``; without a dtype suffix, ``(body, "bf16")``.

    A suffix after the last ``@`` is a dtype when it has no ``.`` or ``/`` (a file name may hold an ``@``).

    Raises:
        GgufError: a dtype suffix that is not fp32, bf16 or fp16, naming ``spec``.
    """
    stem, marked, suffix = body.rpartition("@")
    if not marked or "." in suffix or "/" in suffix:
        return body, DEFAULT_DTYPE
    if suffix not in SHORT_NAMES:
        raise GgufError(f"{spec}: unknown dtype {suffix!r} after '@'; expected one of {', '.join(SHORT_NAMES)}")
    return stem, suffix


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 4 MB chunks (a GGUF may be many GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def remembered_sha256(path: Path) -> str:
    """``file_sha256(path)``, remembered in ``<cache>/gguf/digests.json`` under the file's resolved path,
    size and modification time, so a multi-GB file is read once, not at every command that names it."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo_file = cache_root() / "gguf" / "digests.json"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: it is only a memo
        memo = {}
    if not isinstance(memo, dict) or not isinstance(memo.get(key), str):
        memo = memo if isinstance(memo, dict) else {}
        memo[key] = file_sha256(path)
        # Two processes writing at once may drop each other's entry: that file is hashed again, nothing worse.
        write_json(memo_file, memo)
    return memo[key]


def converted_dir(sha256: str, dtype: str) -> Path:
    """Where the conversion of the file with this digest, in this dtype, is cached."""
    return cache_root() / "gguf" / f"{sha256[:16]}-{dtype}-v{CONVERTER_VERSION}"


def cached_conversion(file: Path, dtype: str, sha256: str | None = None) -> Path:
    """The cached conversion of ``file`` in ``dtype`` (converting it now if it is not there)."""
    sha256 = sha256 or remembered_sha256(file)
    target = converted_dir(sha256, dtype)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # stderr: a command's stdout may be its result (forgetless eval prints JSON there)
    print(f"[gguf] converting {file} ({dtype}) into {target}", file=sys.stderr, flush=True)
    return convert_gguf(file, target, dtype, overwrite=True, sha256=sha256)


def gguf_model(spec: str) -> Path:
    """The converted model directory of ``gguf:FILE`` or ``gguf:FILE@DTYPE`` (converting it once).

    Raises:
        GgufError: an unknown dtype, a missing file, a file that is not GGUF or cannot be read.
    """
    body, dtype = parse_dtype_suffix(spec, spec.removeprefix(PREFIX))
    if not body:
        raise GgufError(f"{spec}: no file after '{PREFIX}'; expected gguf:PATH.gguf or gguf:PATH.gguf@fp32")
    file = Path(body).expanduser()
    if not starts_like_gguf(file):  # refused before hashing (and remembering a digest), with the converter's reason
        read_summary(file)
    return cached_conversion(file, dtype)
