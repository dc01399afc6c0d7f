"""qmgr's command language: `verb object [name] [attr op value[, ...]]`, abbreviations
included, and the texts of its syntax errors.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

_QMGR_VERBS = ("active", "create", "delete", "set", "unset", "list", "print")
_QMGR_OBJECTS = ("server", "queue", "node")
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


class QmgrError(Exception):
    """qmgr output for a refused command."""

    def __init__(self, stderr: str, status: int = 2) -> None:
        super().__init__(stderr)
        self.stderr = stderr
        self.status = status


@dataclass(frozen=True)
class QmgrCommand:
    verb: str
    kind: str
    name: str | None
    attributes: tuple[tuple[str, str, str], ...]      # (name, operator, value)


def parse_qmgr(text: str) -> QmgrCommand:
    """`verb object [name] [attr op value[, ...]]` as qmgr reads it."""
    position = 0

    def skip_spaces() -> None:
        nonlocal position
        while position < len(text) and text[position] in " \t":
            position += 1

    def word() -> str:
        nonlocal position
        skip_spaces()
        start = position
        while position < len(text) and text[position] not in " \t":
            position += 1
        return text[start:position]

    def syntax(problem: str) -> QmgrError:
        return QmgrError(f"qmgr: Syntax error - {problem}\n{text}\n{' ' * position}^\n")

    verb_word = word()
    verb = _abbreviation(verb_word.lower(), _QMGR_VERBS)
    if verb is None:
        raise QmgrError(f"qmgr: Illegal operation: {verb_word}\n"
                        "Try 'help' if you are having trouble.\n", status=1)
    object_word = word()
    kind = _abbreviation(object_word.lower(), _QMGR_OBJECTS)
    if kind is None:
        raise QmgrError(f"qmgr: Illegal object type: {object_word}.\n", status=1)
    name = None
    if kind != "server":
        skip_spaces()
        mark = position
        candidate = word()
        if candidate and "=" not in candidate and not _next_is_operator(text, position):
            name = candidate
        else:
            position = mark
    attributes: list[tuple[str, str, str]] = []
    names_only = verb in ("unset", "list", "print", "delete", "active")
    while True:
        skip_spaces()
        if position >= len(text):
            break
        match = _ATTRIBUTE_NAME.match(text, position)
        if match is None:
            raise syntax("cannot locate attribute")
        attribute = match.group()
        position = match.end()
        skip_spaces()
        if names_only:
            attributes.append((attribute, "", ""))
        else:
            operator = next((op for op in ("+=", "-=", "=") if text.startswith(op, position)),
                            None)
            if operator is None:
                raise syntax("cannot locate operator")
            position += len(operator)
            skip_spaces()
            if text.startswith('"', position):
                end = text.find('"', position + 1)
                if end < 0:
                    raise syntax("no matching quote")
                value = text[position + 1:end]
                position = end + 1
            else:
                start = position
                while position < len(text) and text[position] not in " \t,":
                    position += 1
                value = text[start:position]
            attributes.append((attribute, operator, value))
        skip_spaces()
        if position >= len(text):
            break
        if text[position] != ",":
            raise syntax("cannot locate attribute")
        position += 1
    return QmgrCommand(verb=verb, kind=kind, name=name, attributes=tuple(attributes))


def _next_is_operator(text: str, position: int) -> bool:
    rest = text[position:].lstrip(" \t")
    return rest.startswith(("=", "+=", "-="))


def _abbreviation(word: str, choices: Sequence[str]) -> str | None:
    """qmgr accepts any prefix of a verb or object name: `p s`, `c n`, `l q`."""
    if not word:
        return None
    matches = [choice for choice in choices if choice.startswith(word)]
    return matches[0] if matches else None
