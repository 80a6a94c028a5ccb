"""``hf:NAME[:CONFIG]:SPLIT``: records from a dataset loaded (and cached) by ``datasets``.

NAME is a hub dataset (``openai/gsm8k``) or a local folder written by
``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (``hf:./gsm8k:test``); a local
folder wins when both could be meant. SPLIT may take a slice of record indices,
``train[:7000]`` or ``train[7000:]``; records keep their index in the whole split, so an
error's ``record 7012`` is row 7012 of ``train``.

Offline (``HF_HUB_OFFLINE=1``) a hub dataset loads from the ``datasets`` cache or fails
with one line naming it and saying how to make it available.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.data.errors import DataError

PREFIX = "hf:"
_SLICE = re.compile(r"\[(?P<start>\d*):(?P<stop>\d*)\]$")
_FORM = "expected hf:NAME[:CONFIG]:SPLIT (e.g. hf:openai/gsm8k:main:train or hf:./my_dataset:test)"


@dataclass(frozen=True)
class HubSplit:
    """A parsed ``hf:`` spec: dataset name or folder, config, split and an optional ``[start:stop]``."""

    name: str
    config: str | None
    split: str | None
    start: int | None = None
    stop: int | None = None


def parse_hf(spec: str) -> HubSplit:
    """Split ``hf:NAME[:CONFIG]:SPLIT[start:stop]`` into its parts.

    Raises:
        DataError: not of that form, or a slice that is not ``[start:stop]`` of whole numbers.
    """
    rest, start, stop = spec.removeprefix(PREFIX), None, None
    if rest.endswith("]"):  # the slice first: it holds a colon of its own
        match = _SLICE.search(rest)
        if match is None:
            raise DataError(spec, None, None, "expected a slice [start:stop] of whole numbers after the split, e.g. "
                                              "train[:7000] or train[7000:]")
        rest = rest[: match.start()]
        start = int(match["start"]) if match["start"] else None
        stop = int(match["stop"]) if match["stop"] else None
    parts = rest.split(":")
    if not parts[0] or len(parts) > 3 or any(not p for p in parts):
        raise DataError(spec, None, None, _FORM)
    name, config, split = parts[0], (parts[1] if len(parts) == 3 else None), (parts[-1] if len(parts) > 1 else None)
    return HubSplit(name, config, split, start, stop)


def _local_split(spec: str, where: HubSplit, folder: Path) -> Any:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as err:  # datasets raises FileNotFoundError and others for a folder it did not write
        raise DataError(spec, None, None, f"expected a folder written by datasets' save_to_disk ({err})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if where.split is None:
            raise DataError(spec, None, None, f"no split given; its splits are {sorted(loaded)}, e.g. hf:{where.name}:"
                                              f"{sorted(loaded)[0]}")
        if where.split not in loaded:
            raise DataError(spec, None, None, f"split {where.split!r} not in this dataset; its splits are {sorted(loaded)}")
        return loaded[where.split]
    if where.split is not None and loaded.split is not None and str(loaded.split) != where.split:
        raise DataError(spec, None, None, f"this folder holds the {str(loaded.split)!r} split only, not {where.split!r}")
    return loaded


def _hub_split(spec: str, where: HubSplit) -> Any:
    import datasets

    if where.split is None:
        raise DataError(spec, None, None, f"no split given; {_FORM}")
    try:
        return datasets.load_dataset(where.name, where.config, split=where.split)
    except ConnectionError:
        if datasets.config.HF_HUB_OFFLINE:
            config = f", {where.config!r}" if where.config else ""
            raise DataError(
                spec, None, None,
                f"not in the datasets cache, and the hub is offline (HF_HUB_OFFLINE=1); download it once with network "
                f"access and HF_HUB_OFFLINE unset (python -c \"import datasets; datasets.load_dataset({where.name!r}{config}, "
                f"split={where.split!r})\") or give a local path (a save_to_disk folder, .parquet or .jsonl file)",
            ) from None
        raise DataError(spec, None, None, "could not reach the hub; check the network, or give a local path") from None
    except datasets.exceptions.DatasetNotFoundError:
        raise DataError(spec, None, None, f"no dataset {where.name!r} on the hub (or it is gated: accept its terms "
                                          "and log in with `hf auth login`), and no local folder of that name") from None
    except ValueError as err:  # unknown config or split: datasets lists the ones there are
        raise DataError(spec, None, None, " ".join(str(err).split())) from None


def load_split(spec: str) -> tuple[Any, int]:
    """The ``datasets.Dataset`` an ``hf:`` spec names, sliced, and the index of its first record in the split.

    Raises:
        DataError: a bad spec, a missing dataset, config or split (offline: how to make it available).
    """
    where = parse_hf(spec)
    folder = Path(where.name).expanduser()
    if not folder.exists() and where.name.startswith(("/", "./", "../", "~")):  # a path, never a hub name
        raise DataError(spec, None, None, f"no such folder {str(folder)!r}; expected a folder written by datasets' "
                                          "save_to_disk, or a hub dataset name")
    dataset = _local_split(spec, where, folder) if folder.exists() else _hub_split(spec, where)
    if where.start is None and where.stop is None:
        return dataset, 0
    start = where.start or 0
    stop = len(dataset) if where.stop is None else min(where.stop, len(dataset))
    if start >= stop:
        raise DataError(spec, None, None, f"the slice selects no record of a split of {len(dataset)}; expected at "
                                          "least one")
    return dataset.select(range(start, stop)), start


def fingerprint(spec: str) -> str:
    """What identifies the records of a hub ``hf:`` spec: the spec and ``datasets``' fingerprint of the split.

    ``datasets`` derives a hub dataset's fingerprint from its cached files (their revision),
    so a new revision changes it. (A local folder is hashed by its bytes, ``records.data_hash``.)
    """
    dataset, _ = load_split(spec)
    return f"{spec}\n{dataset._fingerprint}"  # noqa: SLF001  (datasets' own content identity)
