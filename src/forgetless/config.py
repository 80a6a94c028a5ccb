"""Reading configuration files: a YAML mapping, validated against a schema, errors naming the file and the key.

The schemas live in the packages they configure (``forgetless.training.config.TrainConfig``,
``forgetless.replay.config.ReplayConfig``, ``forgetless.merging.config.MergeConfig``,
``forgetless.study.config.StudyConfig``); ``forgetless.schema_flags`` builds every subcommand's
flags from its schema and merges them over a ``--config`` file with ``load_yaml`` and ``build_config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from forgetless.data.errors import DataError
from forgetless.data.text import decode_utf8


class ConfigError(ValueError):
    """A configuration file or value is wrong; the message names the key."""


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{source}: key {key!r}: {message}")
    return "; ".join(lines)  # one line, so every problem shows in a one-line error


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with an error naming the file when it is not one."""
    path = Path(path)
    if path.exists() and not (path.is_file() or path.is_dir()):  # a FIFO or device would be read without end
        raise ConfigError(f"{path}: is not a regular file (a FIFO, device or socket); expected a YAML file")
    try:
        value = yaml.safe_load(decode_utf8(path.read_bytes(), path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML file") from None
    except DataError as err:
        raise ConfigError(str(err)) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML (nested too deeply)") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(value).__name__}")
    if _expands_past(value, MAX_YAML_VALUES):
        raise ConfigError(f"{path}: expands to more than {MAX_YAML_VALUES:,} values (aliases of aliases, as in the "
                          "'billion laughs' file); expected a config of ordinary size")
    return value


# PyYAML shares an aliased node instead of copying it, so a 10-line file of aliases of aliases loads at once; whatever
# walks the result (spec resolution, validation) then visits 10^9 values. No real config comes near a million.
MAX_YAML_VALUES = 1_000_000


def _expands_past(value: Any, budget: int) -> bool:
    """Whether walking ``value`` (shared lists and dicts counted at each place they appear) visits over ``budget``
    values; stops as soon as it does."""
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > budget:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def build_config(schema: type[BaseModel], values: dict[str, Any], source: str) -> Any:
    """Validate ``values`` against ``schema``; errors name the source and the key."""
    try:
        return schema.model_validate(values)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None
