"""TorqueEmulator: an in-memory TORQUE 6.1 server (pbs_server, FIFO pbs_sched and moms).

It answers the argv of qstat, pbsnodes, qmgr, qsub and qdel with the output formats, texts
and exit codes of the real TORQUE 6.1.3 captured in tests/data/torque/, and moves
on an injected Clock. The demo, the simulator and most tests run TorqueBatch over it, so
every behaviour below comes from a capture (NN_*.txt) or, where marked "source", from the
adaptivecomputing/torque code; the few guesses are marked "assumed".

Behaviour worth knowing when writing against it:
- A created node is `down,offline,MOM-list-not-sent` for `hierarchy_delay` (10 s); sending
  the hierarchy clears BOTH MOM-list-not-sent and offline (source: checkAndSendHierarchy).
  In that window every `pbsnodes -o`/`-c`/`-r` and `qmgr set node state` on it is refused,
  even one that changes nothing, and so is a note sent with it: pbsnodes exits 0 and says
  "Error setting note attribute for N - The updated okclients list hasn't been sent out
  ..." (49_; source: node_state ATR_ACTION_ALTER). A note alone is accepted, and `qmgr
  create node` takes a quoted note (spaces, `:` and `,` included) at once (49_).
- A mom that starts while its node waits for the hierarchy reports `mom_report_delay`
  (5 s) after it, so 15 s after `create node` (44_); one started on a settled node reports
  within `mom_hello_delay` (1 s, 40_, 17_). A mom sends its status at its start and every
  `mom_status_interval` (45 s) after; while it has no node entry, the server drops them
  ("address not trusted"), so a node created after its mom started turns free only at the
  mom's next status (measured: 43.6-44.7 s after a create 2 s after the mom started). With
  auto_node_np each report sets np to its ncpus.
- The server keeps server_priv/node_status (the nodes offline) and node_note (the notes)
  as they were at their last write: node_status after any admin request that changes an
  offline flag and after every `qmgr delete node`; node_note after a request that changes
  a note (source: chk_characteristic); neither on create nor when the hierarchy clears
  offline. restart() rebuilds every entry from them, so a deleted and re-created node can
  come back with the old note, or offline (measured); moms report `restart_report_delay`
  (16 s) after it.
- A dead mom leaves its node as it was (status kept) for `node_down_delay` (180 s, 17_).
- pbs_sched runs a cycle on qsub, on job end, on `qmgr -c 'set server scheduling = True'`
  and every scheduler_iteration; never when a node turns free (44_, 47_). Nodes are filled
  first-fit in creation order, nodes outer and `+` parts inner, as node_spec() does.
  pbs_sched only checks Resource_List.nodes; jobs without it are placed by pbs_server
  from neednodes (a spec that starts with a word names a host) or as `1` (12_, 42_).
- qsub refuses (190) a nodes request that no combination of node entries could ever run,
  counting down and offline entries (15_; the counting is node_spec's "early" check).
- qsub refuses a script file, before anything else, when its first 50 bytes are not all
  printable ASCII or white space, or when a line ends in CR LF (50_; source: get_script).
  A script on stdin is not checked (qsub strips the CRs of its lines).
- `qmgr delete node` with a running job succeeds and requeues the job (45_).
- `pbsnodes -x`/`-a`/`-l` with no node entries at all fail with "Server has no node list"
  and exit 1, as the real server does: an empty cluster cannot be read either.

Emulator choices where TORQUE was not captured: a job runs for the `runtime` given to
submit(), or for `qsub -v DT_EMULATOR_RUNTIME=SECONDS` (default 60 s), capped by its
walltime (exit_status -11 when the walltime kills it, else 0); `procs=N` takes N free cores
anywhere (pbs_server refuses it with "Unknown node-attribute" otherwise, 12_); a job on a
node whose mom is dead does not finish until the mom is back; a node whose mom is dead
gets no new jobs. `ncpus=N` alone places like `nodes=1`, one core: neither pbs_sched nor
pbs_server allocates by ncpus (12_). qsub without a script file reads stdin; no stdin is an
empty script, which gets a job id but no job, as in the README. Commands or options that
are not emulated exit 2 with "torque emulator: not emulated: ..." on stderr.

All state is plain values (numbers, strings, lists, dicts) in one ServerState (state.py):
to_state() and from_state() save and restore it, which is how the CLI emulator (cli.py,
persistence.py) shares one server between its executables.

The class is split by job, one module each, and composed here: core.py (the state, its
event heap and the moms' timers), scheduler.py (pbs_sched and the job lifecycle),
render.py (what the commands print), qsub.py, commands.py (qstat, qdel, pbsnodes) and
qmgr.py (with its parser in qmgr_parse.py).
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Callable, Iterator, Mapping, Sequence

from dtserver import nodespec
from dtserver.batch.torque_commands import CommandResult
from dtserver.clock import Clock
from dtserver.fakes.torque.commands import ClientCommands
from dtserver.fakes.torque.qmgr import QmgrCommands
from dtserver.fakes.torque.qsub import QSUB_USAGE, QsubCommand, check_array, check_job_name
from dtserver.fakes.torque.scheduler import normalize_resource
from dtserver.fakes.torque.state import (
    CYCLE, EmulatedJob, EmulatedNode, EmulatorError, JOB_END, MARK_DOWN, Mom, NodeEdits, PURGE,
    QueueEntry, ServerState, Submission, epoch_seconds, number_text, state_from_plain,
    utc_datetime)

logger = logging.getLogger(__name__)


class TorqueEmulator(QsubCommand, ClientCommands, QmgrCommands):
    """Implements the Runner protocol of torque_commands.py, plus a simulation API."""

    def __init__(self, clock: Clock, *, server_name: str = "vm", auto_node_np: bool = True,
                 scheduler_iteration: float = 600.0, keep_completed: float = 300.0,
                 resolvable: Callable[[str], bool] | None = None,
                 hierarchy_delay: float = 10.0, mom_report_delay: float = 5.0,
                 mom_hello_delay: float = 1.0, mom_status_interval: float = 45.0,
                 node_down_delay: float = 180.0, restart_report_delay: float = 16.0,
                 submit_user: str = "tuser") -> None:
        if scheduler_iteration <= 0 or mom_status_interval <= 0:
            raise ValueError("scheduler_iteration and mom_status_interval must be positive")
        if min(keep_completed, hierarchy_delay, mom_report_delay, mom_hello_delay,
               node_down_delay, restart_report_delay) < 0:
            raise ValueError("delays cannot be negative")
        self._clock = clock
        self._server = server_name
        self._resolvable = resolvable
        self._hierarchy_delay = hierarchy_delay
        self._mom_report_delay = mom_report_delay
        self._mom_hello_delay = mom_hello_delay
        self._status_interval = mom_status_interval
        self._node_down_delay = node_down_delay
        self._restart_report_delay = restart_report_delay
        self._submit_user = submit_user
        self._lock = threading.RLock()
        # Free cores per usable node as the last cycle left them: derived, not state; only
        # valid while nothing but new submissions happened (see ServerState.sched_dirty).
        self._free_after_cycle: dict[str, list[int]] = {}
        start = epoch_seconds(clock.now())
        attributes = {
            "scheduling": "True", "acl_hosts": server_name, "managers": f"root@{server_name}",
            "operators": f"root@{server_name}", "default_queue": "batch",
            "log_events": "2047", "mail_from": "adm", "query_other_jobs": "True",
            "node_check_rate": "150", "tcp_timeout": "300", "job_stat_rate": "300",
            "poll_jobs": "True", "down_on_error": "True", "mom_job_sync": "True",
            "keep_completed": number_text(keep_completed),
            "auto_node_np": "True" if auto_node_np else "False",
            "moab_array_compatible": "True", "nppcu": "1", "timeout_for_job_delete": "120",
            "timeout_for_job_requeue": "120", "note_append_on_error": "True"}
        if scheduler_iteration != 600.0:
            attributes["scheduler_iteration"] = number_text(scheduler_iteration)
        self._state = ServerState(now=start, attributes=attributes)
        self._state.queues["batch"] = QueueEntry("batch", start, {
            "queue_type": "Execution", "resources_default.walltime": "01:00:00",
            "resources_default.nodes": "1", "enabled": "True", "started": "True"})
        self._state.queues["cloud"] = QueueEntry("cloud", start, {
            "queue_type": "Execution", "resources_default.neednodes": "1:CLOUD",
            "enabled": "True", "started": "True"})
        self._schedule_cycle(start + scheduler_iteration)

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None,
            timeout: float | None = None, submit_filter: str | None = None) -> CommandResult:
        """Answer one command line. `timeout` is accepted and ignored: nothing here blocks.

        `submit_filter` (qsub only) says a submit filter already ran, outside this call as
        qsub runs it before contacting the server: `stdin` is then the filter's output,
        the job script, even when the command line names a script file."""
        with self._lock:
            self.advance()
            argv = tuple(argv)
            command = PurePosixPath(argv[0]).name if argv else ""
            handlers = {"qstat": self._qstat, "pbsnodes": self._pbsnodes,
                        "qnodes": self._pbsnodes, "qmgr": self._qmgr, "qsub": self._qsub,
                        "qdel": self._qdel}
            handler = handlers.get(command)
            if handler is None:
                result = (127, "", f"torque emulator: {command or '(empty)'}: command not found\n")
            elif self._state.server_down:
                result = self._unreachable(command)
            else:
                if command not in ("qstat", "qsub"):
                    self._state.sched_dirty = True
                if command == "qsub":
                    result = self._qsub(list(argv[1:]), stdin, submit_filter)
                else:
                    result = handler(list(argv[1:]), stdin)
            self._run_until(self._state.now)
            status, stdout, stderr = result
            logger.debug("emulated command argv=%s status=%d", argv, status)
            # surrogateescape: a byte that is not UTF-8 in an argument (sys.argv holds it
            # as a surrogate) comes back raw, as real TORQUE prints it (51_).
            return CommandResult(argv=argv, status=status,
                                 stdout=stdout.encode("utf-8", "surrogateescape"),
                                 stderr=stderr)

    def submit(self, *, owner: str = "tuser", queue: str = "batch",
               resources: Mapping[str, str] | None = None, name: str = "STDIN",
               account: str | None = None, array: str | None = None, runtime: float = 60.0,
               hold: bool = False) -> str:
        """qsub without argv; the same rules apply. Raises EmulatorError as qsub fails."""
        resources = dict(resources or {})
        words = ["-N", name, "-q", queue]
        if account:
            words += ["-A", account]
        if resources:
            words += ["-l", ",".join(f"{key}={value}" for key, value in resources.items())]
        if array:
            words += ["-t", array]
        if hold:
            words.append("-h")
        with self._lock:
            self.advance()
            if self._state.server_down:
                status, _, stderr = self._unreachable("qsub")
                raise EmulatorError(status, stderr)
            problem = check_job_name(name) or (check_array(array) if array else None)
            if problem is not None:
                raise EmulatorError(2, problem)
            try:
                normalized = {key: normalize_resource(key, value)
                              for key, value in resources.items()}
            except nodespec.RequestError as error:
                raise EmulatorError(2, f"[qsub: illegal -l value]\n{QSUB_USAGE}\n") from error
            job_id = self._submit(Submission(
                owner=owner, queue=queue, resources=normalized, name=name, account=account,
                array=array, runtime=runtime, hold=hold, submit_args=" ".join(words)))
            self._run_until(self._state.now)
            return job_id

    def mom_up(self, hostname: str, ncpus: int, mem_mb: int = 4096) -> None:
        """The pbs_mom of `hostname` starts (its VM finished booting) and begins reporting."""
        if ncpus < 1:
            raise ValueError("a mom reports at least one cpu")
        with self._lock:
            self.advance()
            now = self._state.now
            self._state.sched_dirty = True
            mom = self._state.moms.get(hostname)
            if mom is None:
                self._state.moms[hostname] = Mom(hostname, ncpus, mem_mb, up=True,
                                                 up_since=now)
            else:
                mom.ncpus, mom.mem_mb = ncpus, mem_mb
                if not mom.up:
                    mom.up, mom.up_since, mom.down_since = True, now, None
            node = self._state.nodes.get(hostname)
            if node is not None:
                node.down_due = None
                self._schedule_report(node, max(now + self._mom_hello_delay,
                                                node.hierarchy_at + self._mom_report_delay))
            for job in self._state.jobs.values():
                if job.end_blocked and all(self._mom_alive(host) for host, _ in job.exec_slots):
                    job.end_blocked = False
                    job.end_at = now
                    self._push(now, JOB_END, job.id, 0)
            logger.info("mom up host=%s ncpus=%d", hostname, ncpus)
            self._run_until(now)

    def mom_down(self, hostname: str) -> None:
        """The pbs_mom of `hostname` dies (VM deleted or crashed); the server notices late."""
        with self._lock:
            self.advance()
            now = self._state.now
            mom = self._state.moms.get(hostname)
            if mom is None or not mom.up:
                return
            mom.up, mom.down_since = False, now
            node = self._state.nodes.get(hostname)
            if node is not None:
                node.report_due = None
                node.down_due = now + self._node_down_delay
                self._push(node.down_due, MARK_DOWN, hostname, node.serial)
            logger.info("mom down host=%s", hostname)

    def advance(self) -> None:
        """Bring the server up to clock.now(): node timers, job ends, scheduler cycles."""
        with self._lock:
            self._run_until(epoch_seconds(self._clock.now()))

    def next_event_time(self, *, purges: bool = True, cycles: bool = True) -> datetime | None:
        """When the next internal event is due (the simulator may jump the clock there),
        leaving out job purges or scheduler cycles when asked. Then superseded events
        may still count: at worst the caller looks once for nothing."""
        with self._lock:
            self._drop_stale_events()
            events = self._state.events
            if purges and cycles:
                due = events[0][0] if events else None
            else:
                skipped = {kind for kind, wanted in ((PURGE, purges), (CYCLE, cycles))
                           if not wanted}
                due = min((event[0] for event in events if event[1] not in skipped),
                          default=None)
            return None if due is None else utc_datetime(max(due, self._state.now))

    def set_down(self, down: bool, *, trqauthd: bool = False) -> None:
        """Stop or start pbs_server; with `trqauthd` also trqauthd (48_server_down.txt)."""
        with self._lock:
            self.advance()
            self._state.server_down = down
            self._state.trqauthd_down = down and trqauthd
            self._state.sched_dirty = True
            logger.info("server %s trqauthd_down=%s", "down" if down else "up", trqauthd)

    def restart(self) -> None:
        """pbs_server stops and starts again (`qterm -t quick`, then `pbs_server`; also a
        stopped server starts). Jobs are kept, running ones on their moms. Every node entry
        is rebuilt from the nodes list and what server_priv/node_status and node_note held
        at their last write: offline exactly when saved offline, the saved note, the
        hierarchy sent (initialLoadHierarchy), and no mom status until the moms that are up
        report again, `restart_report_delay` later (measured 15.8 s). Until then a node
        saved offline shows `offline` alone, any other `down` (the saved state replaces
        the node's: setup_nodes)."""
        with self._lock:
            self.advance()
            state = self._state
            now = state.now
            state.server_down = state.trqauthd_down = False
            state.sched_dirty = True
            for node in state.nodes.values():
                node.offline = node.name in state.saved_offline_nodes
                node.down = not node.offline
                node.note = state.saved_node_notes.get(node.name)
                node.list_not_sent = False
                node.reported_at = None
                node.report_due = node.down_due = None
                if self._mom_alive(node.name):
                    self._schedule_report(node, now + self._restart_report_delay)
                elif node.offline:
                    # check_nodes marks a silent node down, but not one already down
                    # (INUSE_NOT_READY); that it takes node_down_delay is assumed.
                    node.down_due = now + self._node_down_delay
                    self._push(node.down_due, MARK_DOWN, node.name, node.serial)
            logger.info("server restarted offline=%s notes=%d", state.saved_offline_nodes,
                        len(state.saved_node_notes))

    def to_state(self) -> dict[str, Any]:
        """Everything the server holds (queues, nodes, moms, jobs, pending events) as
        JSON-ready plain values. The constructor's options are not part of it."""
        with self._lock:
            state = asdict(self._state)
        for node in state["nodes"].values():
            node["slots"] = {str(core): job_id for core, job_id in node["slots"].items()}
        return state

    @classmethod
    def from_state(cls, clock: Clock, state: Mapping[str, Any],
                   **options: Any) -> TorqueEmulator:
        """The server saved by to_state() (also after a JSON round trip), on `clock` and
        with the constructor `options` it had. Raises ValueError for anything else."""
        emulator = cls(clock, **options)
        try:
            emulator._state = state_from_plain(state)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a TorqueEmulator state: {error!r}") from error
        return emulator

    def jobs(self) -> tuple[EmulatedJob, ...]:
        with self._lock:
            self.advance()
            return tuple(self._job_view(job) for job in self._state.jobs.values()
                         if not job.children)

    def job(self, job_id: str) -> EmulatedJob:
        with self._lock:
            self.advance()
            entry = self._find_job(job_id)
            if entry is None:
                raise KeyError(job_id)
            return self._job_view(entry)

    def nodes(self) -> tuple[EmulatedNode, ...]:
        with self._lock:
            self.advance()
            return tuple(self._node_view(node) for node in self._state.nodes.values())

    @contextmanager
    def reading(self) -> Iterator[ServerState]:
        """The server's state brought up to the clock, under the lock, for a reader that
        builds its own values from it (EmulatorBatch). It must not change anything."""
        with self._lock:
            self.advance()
            yield self._state

    def nodes_version(self) -> tuple[int, int]:
        """Differs from an earlier answer whenever a node entry changed, came or went since
        (it may also differ when none did)."""
        with self._lock:
            self.advance()
            return NodeEdits.count, len(self._state.nodes)

    def node(self, name: str) -> EmulatedNode:
        with self._lock:
            self.advance()
            return self._node_view(self._state.nodes[name])
