"""Value parsers: the raw text of one key -> a typed value.

Each raises ValueError saying what was expected; the loader adds the file, line, section
and key (dtserver/config/load.py).
"""
from __future__ import annotations

import math
import re
import shlex
from pathlib import Path
from typing import Callable

from dtserver.redact import mask_text

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
HOSTNAME_PREFIX = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*\Z")
PROPERTY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*\Z")
SHELL_SYNTAX = frozenset("|&;<>`$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
HOSTNAME_MAX = 63


def text(value: str) -> str:
    return value


def identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"expected letters, digits, '_', '.' or '-' (at most 63), got {value!r}")
    return value


def token(value: str) -> str:
    if any(character.isspace() for character in value):
        raise ValueError(f"expected a single word, got {value!r}")
    return value


def comma_list(value: str) -> tuple[str, ...]:
    """A comma list, order kept, duplicates and empty items dropped."""
    listed = tuple(dict.fromkeys(item.strip() for item in value.split(",") if item.strip()))
    if not listed:
        raise ValueError("expected a comma-separated list, got an empty one")
    return listed


def token_tuple(value: str) -> tuple[str, ...]:
    return tuple(token(item) for item in comma_list(value))


def token_set(value: str) -> frozenset[str]:
    return frozenset(token_tuple(value))


def node_properties(value: str) -> frozenset[str]:
    listed = comma_list(value)
    bad = [item for item in listed if not PROPERTY.match(item)]
    if bad:
        raise ValueError(f"node properties are letters, digits and '_', got {', '.join(bad)}")
    return frozenset(listed)


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return number


def integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None


def positive_int(value: str) -> int:
    number = integer(value)
    if number <= 0:
        raise ValueError(f"expected a positive whole number, got {value!r}")
    return number


def non_negative_int(value: str) -> int:
    number = integer(value)
    if number < 0:
        raise ValueError(f"expected zero or a positive whole number, got {value!r}")
    return number


def file_path(value: str) -> Path:
    return Path(value).expanduser()


def choice(*options: str) -> Callable[[str], str]:
    def convert(value: str) -> str:
        if value.lower() not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return value.lower()
    return convert


def log_level(value: str) -> str:
    level = value.upper()
    if level == "VERBOSE":   # Dynamic Torque's level below DEBUG
        return "DEBUG"
    if level not in _LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(_LOG_LEVELS)}, got {value!r}")
    return level


def bind(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return value


def url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s) URL, got {mask_text(value)!r}")
    return value


def argv(value: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(value))
    except ValueError as exc:
        raise ValueError(f"cannot split into arguments: {exc}") from None


def hostname_prefix(value: str) -> str:
    if not HOSTNAME_PREFIX.match(value):
        raise ValueError(f"node names are lowercase hostnames: expected [a-z0-9-], got {value!r}")
    return value
