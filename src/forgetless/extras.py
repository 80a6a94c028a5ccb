"""Optional dependencies: which feature needs which package, and the one line that says how to install it.

A feature whose package is missing raises ``MissingExtra`` (an ``ImportError``); the command prints its message
and exits 2. An import of a known optional package that fails anywhere else is named the same way by
``missing_extra_message``, so no missing package ends in a traceback (issue 31).
"""

from __future__ import annotations

# import name -> (what needs it, the install command)
OPTIONAL: dict[str, tuple[str, str]] = {
    "lm_eval": ("lm-eval tasks (the lm-eval adapter)", "pip install 'forgetless[lmeval]'"),
    "ray": ("--executor ray", "pip install 'forgetless[ray]'"),
    # Dependencies of a plain install since the probes ship in configs/real.yaml; kept for a broken environment.
    "countryinfo": ("the general-ability probes", "pip install countryinfo"),
    "periodictable": ("the general-ability probes", "pip install periodictable"),
    "us": ("the general-ability probes", "pip install us"),
    "sentence_transformers": ("loading an embedding merge in sentence-transformers",
                              "pip install sentence-transformers"),
    "deepspeed": ("an accelerate config that uses DeepSpeed", "pip install deepspeed"),
    "gguf": ("reading GGUF files (gguf:FILE, real:NAME, convert-gguf)", "pip install gguf"),
}


class MissingExtra(ImportError):
    """A feature's optional package is not installed; the message names the feature and the install command."""

    def __init__(self, package: str) -> None:
        feature, command = OPTIONAL[package]
        super().__init__(f"{feature} needs the package {package}, which is not installed: {command}", name=package)


def require(*packages: str) -> None:
    """Raise ``MissingExtra`` for the first of ``packages`` that is not installed (found without importing it)."""
    from importlib.util import find_spec

    for package in packages:
        if find_spec(package) is None:
            raise MissingExtra(package)


def missing_extra_message(err: BaseException) -> str | None:
    """The one-line message for a missing optional package, or None when ``err`` is something else."""
    if isinstance(err, MissingExtra):
        return str(err)
    if isinstance(err, ImportError) and err.name is not None:
        package = err.name.split(".")[0]
        if package in OPTIONAL:
            return str(MissingExtra(package))
    return None
