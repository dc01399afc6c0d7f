"""TorqueBatch: the Batch port over TORQUE 6.1 client commands.

Works over any Runner: real subprocesses (SubprocessRunner) or the TorqueEmulator. The facts
it respects come from a real server (docs/torque-facts.md, tests/data/torque/):
- a client that cannot reach the server exits non-zero with nothing on stdout (pbsnodes 1,
  qstat 33/111, qmgr 3): that is BatchUnavailable, never "no nodes" or "no jobs";
- pbsnodes -o/-c/-N exit 0 even when the server refused: stderr decides;
- `qmgr delete node` kills the jobs of a busy node, so we re-read the node first;
- the server resolves a node name when the entry is created, so the hosts block is updated
  before the entry is (re-)created.
"""
from __future__ import annotations

import io
import logging
import shlex
from typing import Callable, Sequence

from dtserver.batch import BatchCommandError, BatchUnavailable, NodeBusy
from dtserver.batch.hosts import HostsFile
from dtserver.batch.torque_commands import (
    CommandResult,
    Runner,
    clear_node_argv,
    clear_note_argv,
    create_node_argv,
    delete_node_argv,
    offline_node_argv,
    pbsnodes_xml_argv,
    qstat_jobs_argv,
    set_node_np_argv,
    start_scheduling_argv,
)
from dtserver.batch.torque_parse import (
    ParseError,
    is_connection_failure,
    is_empty_node_list,
    is_node_already_present,
    is_unknown_node,
    iter_qstat_jobs,
    parse_pbsnodes_xml,
    pbsnodes_error,
)
from dtserver.model import Job, Node

log = logging.getLogger(__name__)

# qmgr's exit status when it cannot reach the server (48_server_down.txt).
_QMGR_CANNOT_CONNECT = 3


class TorqueBatch:
    def __init__(self, runner: Runner, *, queues: frozenset[str] = frozenset(),
                 hosts: HostsFile | None = None, command_timeout: float = 30.0) -> None:
        self._runner = runner
        self._queues = frozenset(queues)
        self._hosts = hosts
        self._timeout = command_timeout

    # --- reads ----------------------------------------------------------------------------

    def jobs(self) -> tuple[Job, ...]:
        """Jobs of the monitored queues (all queues when none are configured), arrays
        expanded into subjobs. Raises BatchUnavailable."""
        argv = qstat_jobs_argv()
        result = self._run(argv)
        if result.status != 0:
            raise BatchUnavailable(_failure(argv, result))
        return tuple(iter_qstat_jobs(io.BytesIO(result.stdout), queues=self._queues))

    def nodes(self) -> tuple[Node, ...]:
        """Every node entry of the server. Raises BatchUnavailable."""
        argv = pbsnodes_xml_argv()
        result = self._run(argv)
        if result.status != 0:
            # Only pbsnodes' explicit words mean "no nodes"; silence means "unknown".
            if is_empty_node_list(result.stderr) and not is_connection_failure(result.stderr):
                return ()
            raise BatchUnavailable(_failure(argv, result))
        return parse_pbsnodes_xml(result.stdout)

    def node(self, hostname: str) -> Node | None:
        """One node entry read afresh, or None when the server has no such node."""
        argv = pbsnodes_xml_argv(hostname)
        result = self._run(argv)
        if result.status != 0:
            # A server with no nodes at all answers "Server has no node list" instead.
            if (is_unknown_node(result.stderr) or is_empty_node_list(result.stderr)) \
                    and not is_connection_failure(result.stderr):
                return None
            raise BatchUnavailable(_failure(argv, result))
        matches = [node for node in parse_pbsnodes_xml(result.stdout) if node.name == hostname]
        if len(matches) != 1:
            raise ParseError(f"pbsnodes -x {hostname} did not return that node")
        return matches[0]

    # --- node entries ---------------------------------------------------------------------

    def register_slot(self, hostname: str, np: int, properties: frozenset[str],
                      note: str) -> None:
        """Make `hostname` an empty slot: an entry with `np` cores, offline with `note`.

        A missing entry is created with the note (with a hosts file, the name first gets the
        placeholder address: qmgr refuses names that do not resolve). The server refuses to
        offline a new entry until it has announced it to the moms (about 10 s), and then drops
        the creation's offline flag, so a new or settling entry is offlined on a later pass.
        An existing entry is offlined with the note and its np set back to the slot's."""
        create = create_node_argv(hostname, np, properties, note)
        current = self.node(hostname)
        if current is None:
            if self._hosts is not None and self._hosts.address(hostname) is None:
                self._hosts.set(hostname, self._hosts.placeholder_address)
            self._qmgr(create, tolerate=is_node_already_present)
            log.info("node slot created hostname=%s np=%d properties=%s", hostname, np,
                     ",".join(sorted(properties)))
            return
        if current.is_settling:
            return
        self._pbsnodes(offline_node_argv(hostname, note))
        if current.np != np:
            self._qmgr(set_node_np_argv(hostname, np))
        log.info("node slot registered hostname=%s np=%d", hostname, np)

    def join_node(self, hostname: str, address: str, np: int,
                  properties: frozenset[str]) -> None:
        """Point `hostname` at `address` and re-create its node entry.

        The entry is re-created rather than trusted to re-resolve: the server resolved the
        name when the entry was made. A fresh entry has no note, and its initial offline
        flag clears itself once the server sends the MOM hierarchy (about 10 s later; the
        server refuses pbsnodes -c/-o/-N before). Raises NodeBusy if jobs run on the old
        entry. The saved state of the old entry (server_priv/node_status, node_note) is not
        cleared by this: after a server restart the planner clears what comes back."""
        create = create_node_argv(hostname, np, properties)
        current = self.node(hostname)
        if current is not None and current.jobs:
            raise NodeBusy(hostname, current.jobs)
        if self._hosts is not None:
            self._hosts.set(hostname, address)
        if current is not None:
            self._qmgr(delete_node_argv(hostname), tolerate=is_unknown_node)
        self._qmgr(create)
        log.info("node joined hostname=%s address=%s np=%d", hostname, address, np)

    def offline_node(self, hostname: str, note: str) -> None:
        """pbsnodes -o -N note."""
        self._pbsnodes(offline_node_argv(hostname, note))
        log.info("node offlined hostname=%s note=%r", hostname, note)

    def clear_node(self, hostname: str) -> None:
        """pbsnodes -c and clear the note."""
        self._pbsnodes(clear_node_argv(hostname))
        self._pbsnodes(clear_note_argv(hostname))
        log.info("node cleared hostname=%s", hostname)

    def release_node(self, hostname: str, np: int, properties: frozenset[str],
                     note: str) -> None:
        """Turn the node entry back into an empty slot: re-created at the placeholder address
        with `np` and `note`, so no old instance address stays bound to the name.

        Re-reads the node and raises NodeBusy if any job is on it: `qmgr delete node` would
        kill the job. A node still online is offlined (with `note`) and read again first,
        so pbs_sched cannot place a job between our read and the delete; on NodeBusy it
        stays offline. The new entry is offline while it settles; the slot repair offlines
        it for good once the server allows it."""
        create = create_node_argv(hostname, np, properties, note)   # checked before any change
        offline = offline_node_argv(hostname, note)
        current = self.node(hostname)
        if current is not None and not current.is_offline:
            self._pbsnodes(offline)
            current = self.node(hostname)
        if current is not None:
            if current.jobs:
                raise NodeBusy(hostname, current.jobs)
            self._qmgr(delete_node_argv(hostname), tolerate=is_unknown_node)
        if self._hosts is not None:
            self._hosts.set(hostname, self._hosts.placeholder_address)
        self._qmgr(create)
        log.info("node released hostname=%s", hostname)

    def poke_scheduler(self) -> None:
        """qmgr -c 'set server scheduling = True': start a scheduling cycle now."""
        self._qmgr(start_scheduling_argv())
        log.info("scheduler poked")

    # --- command plumbing -----------------------------------------------------------------

    def _run(self, argv: Sequence[str]) -> CommandResult:
        return self._runner.run(argv, timeout=self._timeout)

    def _qmgr(self, argv: Sequence[str], *,
              tolerate: Callable[[str], bool] | None = None) -> bool:
        """Run a qmgr command; False when it failed with an error `tolerate` accepts."""
        log.info("torque command argv=%s", shlex.join(argv))
        result = self._run(argv)
        if result.status == 0:
            return True
        if result.status == _QMGR_CANNOT_CONNECT or is_connection_failure(result.stderr):
            raise BatchUnavailable(_failure(argv, result))
        if tolerate is not None and tolerate(result.stderr):
            log.info("torque command tolerated argv=%s stderr=%r", shlex.join(argv),
                     result.stderr.strip())
            return False
        raise BatchCommandError(argv, result.status, result.stderr)

    def _pbsnodes(self, argv: Sequence[str]) -> None:
        """Run a mutating pbsnodes command; it exits 0 on refusals, so stderr decides."""
        log.info("torque command argv=%s", shlex.join(argv))
        result = self._run(argv)
        if is_connection_failure(result.stderr):
            raise BatchUnavailable(_failure(argv, result))
        error = pbsnodes_error(result.stderr)
        if result.status != 0 or error is not None:
            raise BatchCommandError(argv, result.status, result.stderr)


def _failure(argv: Sequence[str], result: CommandResult) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    detail = lines[-1].strip() if lines else "no error text"
    return f"{shlex.join(argv)} exited {result.status}: {detail}"
