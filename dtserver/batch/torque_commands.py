"""Running TORQUE commands: argv builders and runners. Parsing lives in torque_parse.py.

This is the only module that imports subprocess. Every command is an argument list; node
names and properties are validated, and notes cleaned, before they reach an argv; nothing
goes through a shell.
"""
from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

from dtserver.batch import BatchError, BatchUnavailable

log = logging.getLogger(__name__)

# TORQUE's MAX_NOTE: pbsnodes warns, and the server may reject, above this length.
MAX_NOTE_LENGTH = 256

_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Property names end up inside a qmgr -c string: no quotes, commas, spaces or `=`.
_PROPERTY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    status: int
    stdout: bytes
    stderr: str


class Runner(Protocol):
    """Runs one TORQUE command given as an argument list; never a shell string."""

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None,
            timeout: float | None = None) -> CommandResult: ...


class InvalidArgument(BatchError, ValueError):
    """A node name, property or note that must not reach a TORQUE command line."""


class CommandTimeout(BatchUnavailable):
    """A command did not finish in time: the server state is unknown."""


# --- validation ---------------------------------------------------------------------------

def validate_hostname(name: str) -> str:
    """Return `name` if it is an RFC 1123 host name (dot-separated labels), else raise."""
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise InvalidArgument(f"invalid node name {name!r}")
    return name


def validate_properties(properties: Iterable[str]) -> tuple[str, ...]:
    """Sorted, validated node properties (sorted so the same set always gives the same argv)."""
    checked = tuple(sorted(properties))
    for prop in checked:
        if not _PROPERTY.fullmatch(prop):
            raise InvalidArgument(f"invalid node property {prop!r}")
    return checked


def clean_note(note: str) -> str:
    """The note as one safe argv element: control characters become spaces and it is cut
    to TORQUE's limit (a note is for people; a drain must not fail over its length).
    Refuses notes that pbsnodes reads as "clear the note" (`-N n`, `-N ''`)."""
    cleaned = "".join(" " if ord(char) < 32 or ord(char) == 127 else char for char in note)
    cleaned = cleaned.strip()[:MAX_NOTE_LENGTH]
    if cleaned in ("", "n"):
        raise InvalidArgument(f"note {note!r} would clear the note")
    return cleaned


def _qmgr_quotable(text: str) -> str:
    """qmgr reads a double-quoted value up to the next double quote: none may be inside."""
    if '"' in text:
        raise InvalidArgument(f"note {text!r} holds a double quote")
    return text


def validate_np(np: int) -> int:
    if isinstance(np, bool) or not isinstance(np, int) or np < 1:
        raise InvalidArgument(f"invalid np {np!r}")
    return np


# --- argv builders ------------------------------------------------------------------------

def qstat_jobs_argv() -> tuple[str, ...]:
    """Every job as XML, array jobs expanded into their subjobs."""
    return ("qstat", "-x", "-t")


def pbsnodes_xml_argv(hostname: str | None = None) -> tuple[str, ...]:
    if hostname is None:
        return ("pbsnodes", "-x")
    return ("pbsnodes", "-x", validate_hostname(hostname))


def qmgr_argv(directive: str) -> tuple[str, ...]:
    return ("qmgr", "-c", directive)


def create_node_argv(hostname: str, np: int, properties: Iterable[str],
                     note: str | None = None) -> tuple[str, ...]:
    """`create node N np=4,properties=CLOUD`: attributes must be comma separated (a space
    is a qmgr syntax error), and several properties are one quoted value. A note given here
    is set at once; `pbsnodes -N` would be refused while the new entry settles."""
    attributes = [f"np={validate_np(np)}"]
    props = validate_properties(properties)
    if len(props) == 1:
        attributes.append(f"properties={props[0]}")
    elif props:
        attributes.append(f'properties="{",".join(props)}"')
    if note is not None:
        attributes.append(f'note="{_qmgr_quotable(clean_note(note))}"')
    return qmgr_argv(f"create node {validate_hostname(hostname)} {','.join(attributes)}")


def set_node_np_argv(hostname: str, np: int) -> tuple[str, ...]:
    return qmgr_argv(f"set node {validate_hostname(hostname)} np = {validate_np(np)}")


def delete_node_argv(hostname: str) -> tuple[str, ...]:
    return qmgr_argv(f"delete node {validate_hostname(hostname)}")


def offline_node_argv(hostname: str, note: str) -> tuple[str, ...]:
    return ("pbsnodes", "-o", "-N", clean_note(note), validate_hostname(hostname))


def clear_node_argv(hostname: str) -> tuple[str, ...]:
    return ("pbsnodes", "-c", validate_hostname(hostname))


def clear_note_argv(hostname: str) -> tuple[str, ...]:
    return ("pbsnodes", "-N", "n", validate_hostname(hostname))


def start_scheduling_argv() -> tuple[str, ...]:
    """pbs_sched does not notice a node becoming free; this starts a cycle at once."""
    return qmgr_argv("set server scheduling = True")


# --- runners ------------------------------------------------------------------------------

class SubprocessRunner:
    """Runs TORQUE client commands as child processes, with a timeout and no shell.

    `bin_dir` pins the directory of qstat/pbsnodes/qmgr (the emulator's CLI in tests, or a
    TORQUE prefix); None resolves them on PATH.
    """

    def __init__(self, bin_dir: str | None = None, timeout: float = 30.0) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._bin_dir = bin_dir
        self._timeout = timeout

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None,
            timeout: float | None = None) -> CommandResult:
        if not argv:
            raise InvalidArgument("empty argv")
        command = tuple(argv)
        program = os.path.join(self._bin_dir, command[0]) if self._bin_dir else command[0]
        limit = timeout if timeout is not None else self._timeout
        started = time.monotonic()
        log.debug("command start argv=%s", shlex.join(command))
        try:
            completed = subprocess.run(
                [program, *command[1:]],
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=limit,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            log.warning("command timeout argv=%s timeout=%.1f", shlex.join(command), limit)
            raise CommandTimeout(f"{shlex.join(command)} timed out after {limit:.1f}s") from err
        except OSError as err:
            log.warning("command failed argv=%s error=%s", shlex.join(command), err)
            raise BatchUnavailable(f"cannot run {command[0]}: {err}") from err
        result = CommandResult(
            argv=command,
            status=completed.returncode,
            stdout=completed.stdout,
            stderr=completed.stderr.decode("utf-8", errors="replace"),
        )
        log.debug("command done argv=%s status=%d seconds=%.3f", shlex.join(command),
                  result.status, time.monotonic() - started)
        return result
