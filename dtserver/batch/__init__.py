"""The Batch port: everything the reconciler needs from TORQUE, and nothing more.

Implementations: `TorqueBatch` (torque.py) over a command runner, which is either real
subprocesses (`SubprocessRunner`) or the in-process `TorqueEmulator`.
"""
from __future__ import annotations

from typing import Iterable, Protocol, Sequence

from dtserver.model import DtError, Job, Node


class BatchError(DtError):
    """A TORQUE operation failed."""


class BatchUnavailable(BatchError):
    """TORQUE could not be read (server or trqauthd down, garbage output): state unknown."""


class BatchCommandError(BatchError):
    """A command exited with an error; carries what an operator needs to see."""

    def __init__(self, argv: Sequence[str], status: int, stderr: str, message: str = "") -> None:
        self.argv = tuple(argv)
        self.status = status
        self.stderr = stderr
        super().__init__(message or f"{' '.join(self.argv)} exited {status}: {stderr.strip()}")


class NodeBusy(BatchError):
    """Refused to release a node entry because jobs run on it."""

    def __init__(self, hostname: str, jobs: Sequence[str]) -> None:
        self.hostname = hostname
        self.jobs = tuple(jobs)
        super().__init__(f"node {hostname} runs {', '.join(self.jobs)}")


class Batch(Protocol):
    def jobs(self) -> Iterable[Job]:
        """Jobs of the monitored queues, arrays expanded. Raises BatchUnavailable."""

    def nodes(self) -> tuple[Node, ...]:
        """Every node entry of the server. Raises BatchUnavailable."""

    def register_slot(self, hostname: str, np: int, properties: frozenset[str], note: str) -> None:
        """Create the node entry `hostname` (if missing), offline with `note`."""

    def join_node(self, hostname: str, address: str, np: int, properties: frozenset[str]) -> None:
        """Point `hostname` at `address`, re-create its node entry, clear offline and note."""

    def offline_node(self, hostname: str, note: str) -> None:
        """pbsnodes -o -N note."""

    def clear_node(self, hostname: str) -> None:
        """pbsnodes -c and clear the note."""

    def release_node(self, hostname: str, np: int, properties: frozenset[str], note: str) -> None:
        """Turn the node entry back into an empty, offline slot. Re-reads the node first and
        raises NodeBusy if any job is on it: `qmgr delete node` would kill the job."""

    def poke_scheduler(self) -> None:
        """qmgr -c 'set server scheduling = True': start a scheduling cycle now."""
