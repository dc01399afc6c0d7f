"""Loader for the real-TORQUE capture files in tests/data/torque/ (NN_*.txt).

Each capture is a block:

    ### command (as root): <exact shell command line>
    ### exit code: <rc>
    ### stdout:
    <exact stdout>
    ### stderr:
    <exact stderr>
    ### end

Anything between blocks (headings, `t+Ns` timeline lines, other `###` notes) is ignored.
The file keeps lines, not bytes: a non-empty stdout or stderr is read back with a final
newline, which is what every TORQUE client prints.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from dtserver.batch.torque_commands import CommandResult

DATA = Path(__file__).resolve().parent / "data" / "torque"

_COMMAND = re.compile(r"### command \(as (?P<user>[^)]*)\): (?P<command>.*)")
_EXIT = re.compile(r"### exit code: (?P<code>-?\d+)")


@dataclass(frozen=True)
class Capture:
    command: str          # the shell command line as typed
    exit_code: int
    stdout: str
    stderr: str
    user: str = "root"
    source: str = ""      # "file.txt:line" of the block, for failure messages

    @property
    def argv(self) -> tuple[str, ...]:
        """The command as an argument list, without a leading `timeout N`."""
        words = shlex.split(self.command)
        if len(words) > 2 and words[0] == "timeout":
            words = words[2:]
        return tuple(words)

    def as_result(self, argv: tuple[str, ...] | None = None) -> CommandResult:
        return CommandResult(argv=argv if argv is not None else self.argv,
                             status=self.exit_code, stdout=self.stdout.encode(),
                             stderr=self.stderr)


class CaptureFormatError(ValueError):
    pass


def load_blocks(path: Path | str) -> list[Capture]:
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = DATA / path
    lines = path.read_text(encoding="utf-8").splitlines()
    captures = []
    index = 0
    while index < len(lines):
        match = _COMMAND.fullmatch(lines[index])
        if match is None:
            index += 1
            continue
        start = index
        index += 1
        exit_match = _EXIT.fullmatch(lines[index]) if index < len(lines) else None
        if exit_match is None or lines[index + 1:index + 2] != ["### stdout:"]:
            raise CaptureFormatError(f"{path.name}:{start + 1}: block header is incomplete")
        index += 2
        stdout, index = _section(lines, index, "### stderr:", path, start)
        stderr, index = _section(lines, index, "### end", path, start)
        captures.append(Capture(
            command=match["command"],
            exit_code=int(exit_match["code"]),
            stdout=stdout,
            stderr=stderr,
            user=match["user"],
            source=f"{path.name}:{start + 1}",
        ))
    return captures


def _section(lines: list[str], index: int, terminator: str, path: Path,
             start: int) -> tuple[str, int]:
    body = []
    while index < len(lines) and lines[index] != terminator:
        body.append(lines[index])
        index += 1
    if index == len(lines):
        raise CaptureFormatError(f"{path.name}:{start + 1}: no {terminator!r} line")
    return "".join(f"{line}\n" for line in body), index + 1


def find(captures: list[Capture], command: str) -> list[Capture]:
    """Captures whose command line is exactly `command`, in file order."""
    return [capture for capture in captures if capture.command == command]
