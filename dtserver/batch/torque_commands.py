"""Running TORQUE commands: argv builders and runners. Parsing lives in torque_parse.py."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


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
