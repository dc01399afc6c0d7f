"""ConfigError: a configuration the service refuses to start with, said where it is."""
from __future__ import annotations

import difflib

from dtserver.model import DtError


class ConfigError(DtError):
    """A configuration the service refuses to start with.

    The message names the file, the line (when known), the section and key, and for an
    unknown key the nearest valid one.
    """

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None,
                 section: str | None = None, key: str | None = None,
                 suggestion: str | None = None) -> None:
        self.source = source
        self.line = line
        self.section = section
        self.key = key
        self.suggestion = suggestion
        super().__init__(located(message, source, line, section, key, suggestion))


def located(message: str, source: str | None, line: int | None, section: str | None,
            key: str | None, suggestion: str | None = None) -> str:
    """`file:line: [section] key: message (did you mean X?)`, the parts that are known."""
    where = f"{source}:{line}" if source and line else source or ""
    parts = [f"{where}:"] if where else []
    if section:
        parts.append(f"[{section}]")
    if key:
        parts.append(f"{key}:")
    parts.append(message)
    text = " ".join(parts)
    return f"{text} (did you mean {suggestion}?)" if suggestion else text


def nearest(name: str, candidates: list[str]) -> str | None:
    matches = difflib.get_close_matches(name, candidates, n=1)
    return matches[0] if matches else None
