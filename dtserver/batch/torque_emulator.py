"""TorqueEmulator: an in-memory TORQUE 6.1 server (pbs_server, FIFO pbs_sched and moms).

It answers the argv of qstat, pbsnodes, qmgr, qsub and qdel with the output formats, texts
and exit codes of the real TORQUE 6.1.3 captured in the shared torque-reference, and moves
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

All state is plain values (numbers, strings, lists, dicts) in one `_State`: to_state() and
from_state() save and restore it, which is how torque_cli.py shares one server between the
CLI executables (and runs qsub's submit filter before taking the server's lock).
"""
from __future__ import annotations

import getopt
import heapq
import logging
import math
import re
import shlex
import threading
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence
from xml.sax.saxutils import escape

from dtserver import nodespec
from dtserver.batch.torque_commands import CommandResult
from dtserver.clock import Clock
from dtserver.model import Chunk, DtError

logger = logging.getLogger(__name__)

PBS_VERSION = "6.1.3.h5"
RUNTIME_VARIABLE = "DT_EMULATOR_RUNTIME"
DEFAULT_RUNTIME = 60.0

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPSILON = 1e-3              # clock round trips through datetime lose sub-microseconds
_MOM_SERVICE_PORT = 15002
_MOM_MANAGER_PORT = 15003
_SERVER_ADDRESS = "127.0.0.1"
_SUBSTATES = {"Q": 10, "H": 20, "R": 42, "C": 59}
_PATH_VARIABLE = ("PBS_O_PATH=/usr/local/bin:/usr/local/sbin:/usr/local/sbin:/usr/local/bin:"
                  "/usr/sbin:/usr/bin:/sbin:/bin")
# TORQUE's XML writer escapes quotes too; a list attribute such as Variable_List also puts a
# backslash before these characters of its values (encode_arst; 51_).
_QUOTES_ESCAPED = {'"': "&quot;", "'": "&apos;"}
_ARST_SPECIAL = re.compile(r"""["',\\]""")
_EXIT_DELETED = 271          # qdel of a running job (30_)
_EXIT_WALLTIME = -11         # assumed: TORQUE's JOB_EXEC_OVERLIMIT for walltime
_WRAP_COLUMN = 80            # qmgr list wraps `status` at this column (05b_)

# Event kinds, in the order they are handled when due at the same instant.
_HIERARCHY, _REPORT, _MARK_DOWN, _JOB_END, _PURGE, _CYCLE = range(6)

_NOT_ENOUGH_NODES = "Not Running: Not enough of the right type of nodes are available"
_UNKNOWN_NODE = "Not Running - PBS Error: Unknown node "
_UNKNOWN_NODE_ATTRIBUTE = "Not Running - PBS Error: Unknown node-attribute "
_UNAVAILABLE = ("Not Running - PBS Error: Resource temporarily unavailable MSG=job "
                "allocation request exceeds currently available cluster nodes,")
_INFEASIBLE = ("qsub: submit error (Job exceeds queue resource limits MSG=cannot locate "
               "feasible nodes (nodes file is empty, all systems are busy, or no nodes "
               "have the requested feature))\n")
# PBSE_HIERARCHY_NOT_SENT's text (pbs_error_db.h), as pbsnodes and qmgr print it (49_).
_HIERARCHY_NOT_SENT = ("The updated okclients list hasn't been sent out to the cluster yet. The "
                       "node(s) will automatically update to free once this is done and the mom "
                       "has reported in.")
_NO_NODE_LIST = ("pbsnodes: Server has no node list MSG=node list is empty - check "
                 "'server_priv/nodes' file\n")

# print_qsub_usage_exit() prints "[problem]\n\n", this and one more newline (20_).
_QSUB_USAGE = """
usage: qsub [-a date_time] [-A account_string] [-b secs]
    [-c [ none | { enabled | periodic | shutdown |
    depth=<int> | dir=<path> | interval=<minutes>}... ]
    [-C directive_prefix] [-d path] [-D path]
    [-e path] [-h] [-I] [-j oe|eo|n] [-k {oe}] [-K <kill delay seconds>] 
    [-l resource_list] [-m n|{abe}] [-M user_list] [-N jobname] [-o path] 
    [-p priority] [-P proxy_user [-J <jobid]] [-q queue] [-r y|n] 
    [-S path] [-t number_to_submit] [-T type]  [-u user_list] [-w] path
    [-W additional_attributes] [-v variable_list] [-V ] [-x] [-X] [-z] [script]
"""
# qsub's own GETOPT_ARGS: its getopt() reads the options by it, and
# find_job_script_index() looks up `-X` as "X:" in it.
_QSUB_GETOPT_ARGS = "a:A:b:c:C:d:D:e:EfF:hi:Ij:J:k:K:l:L:m:M:nN:o:p:P:q:r:S:t:T:u:v:Vw:W:Xxz-:"
_SCRIPT_NOT_ASCII = "qsub:  file must be an ascii script\n"        # 50_
_SCRIPT_IN_DOS_FORMAT = "qsub:  script is written in DOS/Windows text format\n"
_ASCII_CHECKED_BYTES = 50    # istext() reads MMAX_VERIFY_BYTES
_LINE_BUFFER = 2048          # isWindowsFormat() reads lines with fgets into MAXBUF
# What istext() takes for text in the C locale (qsub never calls setlocale): isprint or isspace.
_TEXT_BYTES = frozenset(range(0x20, 0x7f)) | frozenset(b" \t\n\v\f\r")
_PBSNODES_USAGE = ("usage:\tpbsnodes [-{c|d|l|o|p|r}] [-s server] [-n] [-N \"note\"] [-q] "
                   "node ...\n\tpbsnodes [-{a|x}] [-s server] [-q] [node]\n")
_PBSNODES_LIST_TYPES = ("free", "offline", "down", "reserve", "job-exclusive", "job-sharing",
                        "busy", "state-unknown", "time-shared", "active", "all", "up")
# Resource names pbs_server knows (resc_def_all.c); any other is refused with 189.
_KNOWN_RESOURCES = frozenset({
    "arch", "cput", "epilogue", "feature", "file", "gres", "host", "mem", "naccesspolicy",
    "ncpus", "neednodes", "nice", "nodect", "nodes", "opsys", "other", "pcput", "pmem",
    "procs", "procs_bitmap", "prologue", "pvmem", "signal", "size", "software", "tpn",
    "trl", "vmem", "walltime"})
_SIZE_RESOURCES = frozenset({"mem", "pmem", "vmem", "pvmem", "file"})
_TIME_RESOURCES = frozenset({"walltime", "cput", "pcput"})
_SIZE = re.compile(r"([0-9]+)([kmgtp]?)([bw]?)", re.IGNORECASE)
_NODE_ATTRIBUTES = frozenset({"np", "properties", "note", "ntype", "state",
                              "mom_service_port", "mom_manager_port"})
_BOOLEAN_SERVER_ATTRIBUTES = frozenset({
    "scheduling", "query_other_jobs", "poll_jobs", "down_on_error", "mom_job_sync",
    "auto_node_np", "record_job_info", "moab_array_compatible", "note_append_on_error"})
# `qmgr -c 'p s'` order (01_, 03b_); attributes not listed here print after them.
_SERVER_PRINT_ORDER = (
    "scheduling", "acl_hosts", "managers", "operators", "default_queue", "log_events",
    "mail_from", "query_other_jobs", "scheduler_iteration", "node_check_rate", "tcp_timeout",
    "job_stat_rate", "poll_jobs", "down_on_error", "mom_job_sync", "keep_completed",
    "auto_node_np", "next_job_number", "record_job_info", "moab_array_compatible", "nppcu",
    "timeout_for_job_delete", "timeout_for_job_requeue", "note_append_on_error")
_QMGR_VERBS = ("active", "create", "delete", "set", "unset", "list", "print")
_QMGR_OBJECTS = ("server", "queue", "node")
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})


class EmulatorError(DtError):
    """A submission refused the way qsub refuses it: the exit status and stderr text."""

    def __init__(self, status: int, stderr: str) -> None:
        self.status = status
        self.stderr = stderr
        super().__init__(stderr.strip() or f"exit status {status}")


@dataclass(frozen=True)
class EmulatedJob:
    """A job as the emulator holds it (array subjobs individually, as `qstat -t`)."""

    id: str
    name: str
    owner: str
    queue: str
    state: str                           # Q, H, R or C
    resources: Mapping[str, str]
    exec_host: str | None = None
    comment: str | None = None
    exit_status: int | None = None
    account: str | None = None
    array_parent: str | None = None


@dataclass(frozen=True)
class EmulatedNode:
    name: str
    state: str                           # as pbsnodes prints it: "down,offline"
    np: int
    properties: tuple[str, ...] = ()
    note: str | None = None
    jobs: tuple[str, ...] = ()
    has_status: bool = False
    mom_up: bool = False


# --- state: plain values only, so it can be saved and shared later -------------------------

@dataclass(slots=True)
class _Mom:
    """A pbs_mom process (a worker VM). It exists whether or not its node entry does."""

    hostname: str
    ncpus: int
    mem_mb: int
    up: bool
    up_since: float
    down_since: float | None = None


@dataclass(slots=True)
class _NodeEntry:
    name: str
    serial: int                          # tells events of a re-created node apart
    np: int
    properties: list[str]
    hierarchy_at: float
    note: str | None = None
    down: bool = True
    offline: bool = True
    list_not_sent: bool = True
    mom_service_port: int = _MOM_SERVICE_PORT
    mom_manager_port: int = _MOM_MANAGER_PORT
    slots: dict[int, str] = field(default_factory=dict)   # core index -> job id
    report_due: float | None = None      # next mom report that changes something
    down_due: float | None = None        # when the server gives up on a silent mom
    reported_at: float | None = None     # first report of the current streak
    status_ncpus: int = 0
    status_mem_kb: int = 0
    # Moves with every change of a field and of `slots`: readers that keep a view of
    # the node (EmulatorBatch) rebuild it only then.
    changes: int = 0

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name != "changes":
            self.touch()

    def touch(self) -> None:
        """Count a change made in place (`slots`) or by assignment."""
        object.__setattr__(self, "changes", getattr(self, "changes", 0) + 1)
        _NodeEdits.count += 1


class _NodeEdits:
    """Changes to any node entry of any emulator in this process: a reader that sees the
    same count and the same number of entries knows that no entry changed."""

    count = 0


@dataclass(slots=True)
class _JobEntry:
    id: str
    seq: int
    name: str
    owner: str
    queue: str
    state: str
    ctime: float
    mtime: float
    resources: dict[str, str]
    defaulted: list[str]                 # resources taken from the queue's defaults
    submit_args: str
    variables: list[str]
    queue_rank: int
    runtime: float
    hold_types: str = "n"
    account: str | None = None
    qtime: float | None = None
    etime: float | None = None
    comment: str | None = None
    parent: str | None = None            # array subjob: the parent's id
    array_index: int | None = None
    array_request: str | None = None     # array parent: the -t text
    slot_limit: int | None = None
    children: list[str] = field(default_factory=list)
    exec_slots: list[tuple[str, list[int]]] = field(default_factory=list)
    session_id: int | None = None
    start_time: float | None = None
    start_count: int = 0
    end_at: float | None = None
    end_status: int = 0
    end_blocked: bool = False
    comp_time: float | None = None
    exit_status: int | None = None
    purge_at: float | None = None


@dataclass(slots=True)
class _Queue:
    name: str
    created: float
    attributes: dict[str, str]


@dataclass(slots=True)
class _State:
    now: float
    attributes: dict[str, str]
    queues: dict[str, _Queue] = field(default_factory=dict)
    nodes: dict[str, _NodeEntry] = field(default_factory=dict)
    moms: dict[str, _Mom] = field(default_factory=dict)
    jobs: dict[str, _JobEntry] = field(default_factory=dict)
    events: list[tuple[float, int, int, str, int]] = field(default_factory=list)
    event_seq: int = 0
    next_job_number: int = 0
    next_rank: int = 1
    next_serial: int = 0
    cycle_due: float = 0.0
    # Whether anything but new submissions changed since the last cycle, and those jobs.
    sched_dirty: bool = True
    sched_new: list[str] = field(default_factory=list)
    server_down: bool = False
    trqauthd_down: bool = False
    # server_priv/node_status and node_note as last written: what a restart reads back.
    saved_offline_nodes: list[str] = field(default_factory=list)
    saved_node_notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Submission:
    owner: str
    queue: str | None
    resources: Mapping[str, str]
    name: str
    account: str | None
    array: str | None
    runtime: float
    hold: bool
    submit_args: str
    variables: tuple[str, ...] = ()
    submit_filter: str | None = None     # the filter that produced the script


class _QmgrError(Exception):
    """qmgr output for a refused command."""

    def __init__(self, stderr: str, status: int = 2) -> None:
        super().__init__(stderr)
        self.stderr = stderr
        self.status = status


@dataclass(frozen=True)
class _QmgrCommand:
    verb: str
    kind: str
    name: str | None
    attributes: tuple[tuple[str, str, str], ...]      # (name, operator, value)


class TorqueEmulator:
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
        # valid while nothing but new submissions happened (see _State.sched_dirty).
        self._free_after_cycle: dict[str, list[int]] = {}
        start = _epoch(clock.now())
        attributes = {
            "scheduling": "True", "acl_hosts": server_name, "managers": f"root@{server_name}",
            "operators": f"root@{server_name}", "default_queue": "batch",
            "log_events": "2047", "mail_from": "adm", "query_other_jobs": "True",
            "node_check_rate": "150", "tcp_timeout": "300", "job_stat_rate": "300",
            "poll_jobs": "True", "down_on_error": "True", "mom_job_sync": "True",
            "keep_completed": _number_text(keep_completed),
            "auto_node_np": "True" if auto_node_np else "False",
            "moab_array_compatible": "True", "nppcu": "1", "timeout_for_job_delete": "120",
            "timeout_for_job_requeue": "120", "note_append_on_error": "True"}
        if scheduler_iteration != 600.0:
            attributes["scheduler_iteration"] = _number_text(scheduler_iteration)
        self._state = _State(now=start, attributes=attributes)
        self._state.queues["batch"] = _Queue("batch", start, {
            "queue_type": "Execution", "resources_default.walltime": "01:00:00",
            "resources_default.nodes": "1", "enabled": "True", "started": "True"})
        self._state.queues["cloud"] = _Queue("cloud", start, {
            "queue_type": "Execution", "resources_default.neednodes": "1:CLOUD",
            "enabled": "True", "started": "True"})
        self._schedule_cycle(start + scheduler_iteration)

    # --- the Runner protocol --------------------------------------------------------------

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

    # --- simulation API -----------------------------------------------------------------

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
            problem = _check_job_name(name) or (_check_array(array) if array else None)
            if problem is not None:
                raise EmulatorError(2, problem)
            try:
                normalized = {key: _normalize_resource(key, value)
                              for key, value in resources.items()}
            except nodespec.RequestError as error:
                raise EmulatorError(2, f"[qsub: illegal -l value]\n{_QSUB_USAGE}\n") from error
            job_id = self._submit(_Submission(
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
                self._state.moms[hostname] = _Mom(hostname, ncpus, mem_mb, up=True,
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
                    self._push(now, _JOB_END, job.id, 0)
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
                self._push(node.down_due, _MARK_DOWN, hostname, node.serial)
            logger.info("mom down host=%s", hostname)

    def advance(self) -> None:
        """Bring the server up to clock.now(): node timers, job ends, scheduler cycles."""
        with self._lock:
            self._run_until(_epoch(self._clock.now()))

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
                skipped = {kind for kind, wanted in ((_PURGE, purges), (_CYCLE, cycles))
                           if not wanted}
                due = min((event[0] for event in events if event[1] not in skipped),
                          default=None)
            return None if due is None else _datetime(max(due, self._state.now))

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
                    self._push(node.down_due, _MARK_DOWN, node.name, node.serial)
            logger.info("server restarted offline=%s notes=%d", state.saved_offline_nodes,
                        len(state.saved_node_notes))

    # --- persistence ----------------------------------------------------------------------

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
            emulator._state = _state_from_plain(state)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a TorqueEmulator state: {error!r}") from error
        return emulator

    # --- inspection helpers ---------------------------------------------------------------

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
    def reading(self) -> Iterator[_State]:
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
            return _NodeEdits.count, len(self._state.nodes)

    def node(self, name: str) -> EmulatedNode:
        with self._lock:
            self.advance()
            return self._node_view(self._state.nodes[name])

    # --- events ---------------------------------------------------------------------------

    def _push(self, when: float, kind: int, key: str, serial: int) -> None:
        self._state.event_seq += 1
        heapq.heappush(self._state.events, (when, kind, self._state.event_seq, key, serial))

    def _schedule_cycle(self, when: float) -> None:
        self._state.cycle_due = when
        self._push(when, _CYCLE, "", 0)

    def _schedule_report(self, node: _NodeEntry, when: float) -> None:
        node.report_due = when
        self._push(when, _REPORT, node.name, node.serial)

    def _run_until(self, now: float) -> None:
        state = self._state
        while state.events and state.events[0][0] <= now + _EPSILON:
            when, kind, _, key, serial = heapq.heappop(state.events)
            if not self._is_live(when, kind, key, serial):
                continue
            state.now = max(state.now, when)
            if kind != _CYCLE:
                state.sched_dirty = True
            self._handle(kind, key)
        state.now = max(state.now, now)

    def _drop_stale_events(self) -> None:
        events = self._state.events
        while events and not self._is_live(*_event_fields(events[0])):
            heapq.heappop(events)

    def _is_live(self, when: float, kind: int, key: str, serial: int) -> bool:
        state = self._state
        if kind == _CYCLE:
            return when == state.cycle_due
        if kind in (_HIERARCHY, _REPORT, _MARK_DOWN):
            node = state.nodes.get(key)
            if node is None or node.serial != serial:
                return False
            due = {_HIERARCHY: node.hierarchy_at if node.list_not_sent else None,
                   _REPORT: node.report_due, _MARK_DOWN: node.down_due}[kind]
            return due == when
        job = state.jobs.get(key)
        if job is None:
            return False
        if kind == _JOB_END:
            return job.state == "R" and job.end_at == when
        return job.state == "C" and job.purge_at == when

    def _handle(self, kind: int, key: str) -> None:
        state = self._state
        if kind == _CYCLE:
            iteration = float(state.attributes.get("scheduler_iteration", "600"))
            self._schedule_cycle(state.now + iteration)
            state.sched_dirty = True
            self._cycle()
        elif kind == _HIERARCHY:
            node = state.nodes[key]
            # Sending the hierarchy clears offline too (source: checkAndSendHierarchy).
            node.list_not_sent = False
            node.offline = False
            logger.debug("node hierarchy sent node=%s", key)
        elif kind == _REPORT:
            self._mom_reports(state.nodes[key])
        elif kind == _MARK_DOWN:
            node = state.nodes[key]
            node.down_due = None
            node.down = True
            logger.info("node marked down node=%s reason=mom silent", key)
        elif kind == _JOB_END:
            self._job_ends(state.jobs[key])
        else:
            self._purge(state.jobs[key])

    def _mom_reports(self, node: _NodeEntry) -> None:
        node.report_due = None
        mom = self._state.moms.get(node.name)
        if mom is None or not mom.up:
            return
        now = self._state.now
        if node.list_not_sent:
            # pbs_server ignores a mom that has not got the hierarchy (process_state_str).
            self._schedule_report(node, node.hierarchy_at + self._mom_report_delay)
            return
        if node.reported_at is None or node.reported_at < mom.up_since:
            node.reported_at = now
        node.down = False
        node.down_due = None
        node.status_ncpus = mom.ncpus
        node.status_mem_kb = mom.mem_mb * 1024
        if _is_true(self._state.attributes.get("auto_node_np", "False")):
            node.np = mom.ncpus
        logger.debug("mom report node=%s ncpus=%d", node.name, mom.ncpus)

    def _next_status_send(self, mom: _Mom) -> float:
        """When `mom` next sends its status: at its start and every status interval after
        (the server answers even a refused one, so the mom keeps its pace)."""
        elapsed = self._state.now - mom.up_since
        return mom.up_since + (math.floor(elapsed / self._status_interval) + 1) \
            * self._status_interval

    def _next_periodic_report(self, node: _NodeEntry) -> float | None:
        """The next routine report of a reporting mom, which would reset np or `-r`."""
        mom = self._state.moms.get(node.name)
        if mom is None or not mom.up or node.reported_at is None:
            return None
        elapsed = self._state.now - node.reported_at
        return node.reported_at + (math.floor(elapsed / self._status_interval) + 1) \
            * self._status_interval

    def _mom_alive(self, hostname: str) -> bool:
        mom = self._state.moms.get(hostname)
        return mom is not None and mom.up

    # --- scheduling ------------------------------------------------------------------------

    def _cycle(self) -> None:
        """One pbs_sched cycle: FIFO over queued jobs, first fit over usable nodes.

        When nothing but new submissions changed since the last cycle, the jobs seen then
        would get the same answer again, so only the new ones are tried.
        """
        state = self._state
        if state.server_down or not _is_true(state.attributes.get("scheduling", "False")):
            return
        if state.sched_dirty:
            candidates = list(state.jobs.values())
            # Full nodes are left out: no job could take a core of theirs.
            free = {name: [core for core in range(node.np) if core not in node.slots]
                    for name, node in state.nodes.items()
                    if len(node.slots) < node.np and self._is_usable(node)}
        else:
            candidates = [state.jobs[job_id] for job_id in state.sched_new
                          if job_id in state.jobs]
            free = self._free_after_cycle
        state.sched_dirty = False
        state.sched_new.clear()
        running: dict[str, int] = {}
        # Free cores only shrink during a cycle: a request that did not fit will not fit
        # later in the same cycle, which keeps a cycle over 100k alike jobs cheap.
        refused: dict[tuple[str | None, str | None, str | None], str] = {}
        started = {name for name, queue in state.queues.items()
                   if _is_true(queue.attributes.get("started", "False"))}
        for job in candidates:
            if job.state != "Q" or job.children or job.queue not in started:
                continue
            parent = state.jobs.get(job.parent) if job.parent else None
            if parent is not None and parent.slot_limit is not None:
                if parent.id not in running:
                    running[parent.id] = sum(state.jobs[child].state == "R"
                                             for child in parent.children)
                if running[parent.id] >= parent.slot_limit:
                    continue
            resources = job.resources
            request = (resources.get("nodes"), resources.get("neednodes"),
                       resources.get("procs"))
            placement = refused.get(request) or self._place(job, free)
            if isinstance(placement, str):
                refused[request] = placement
                if job.comment != placement:
                    job.comment = placement
                    job.mtime = state.now
                continue
            self._start(job, placement)
            if parent is not None and parent.id in running:
                running[parent.id] += 1
        self._free_after_cycle = {name: cores for name, cores in free.items() if cores}

    def _is_usable(self, node: _NodeEntry) -> bool:
        return not (node.down or node.offline or node.list_not_sent) \
            and self._mom_alive(node.name)

    def _place(self, job: _JobEntry,
               free: dict[str, list[int]]) -> list[tuple[str, list[int]]] | str:
        """Cores for `job` taken out of `free`, or the comment saying why it cannot run.

        pbs_sched checks only Resource_List.nodes (hostnames count as properties there);
        a job it lets through is placed by pbs_server from neednodes, or `1` without one,
        and a refusal comes back as "PBS Error". That is why `neednodes=CLOUD` gets
        "Unknown node" and `ncpus=4` gets "1 requested, 0 available" in 12_.
        """
        resources = job.resources
        if "nodes" in resources:
            parts = _parse_parts(resources["nodes"])
            if parts is None or self._allocate(parts, free, None)[1]:
                return _NOT_ENOUGH_NODES
        spec = resources.get("neednodes") or resources.get("nodes")
        if spec is None and "procs" in resources:
            wanted = resources["procs"]
            taken = _take_anywhere(free, int(wanted)) if wanted.isdigit() else []
            return taken or _UNKNOWN_NODE_ATTRIBUTE
        parts = _parse_parts(spec or "1")
        if parts is None:
            return _UNKNOWN_NODE_ATTRIBUTE
        first = parts[0].hostname
        if first is not None and first not in self._state.nodes:
            return _UNKNOWN_NODE
        placement, missing = self._allocate(parts, free, first)
        if missing:
            requested = sum(part.count for part in parts)
            return (f"{_UNAVAILABLE} {requested} requested, {requested - missing} available")
        for name, cores in placement:
            del free[name][:len(cores)]
        return placement

    def _allocate(self, parts: Sequence[Chunk], free: Mapping[str, list[int]],
                  first: str | None) -> tuple[list[tuple[str, list[int]]], int]:
        """node_spec(): usable nodes in creation order (a named first host first), each
        serving every `+` part it fits once. Returns the placement and how many node
        slices are missing; `free` is not changed (a placement takes its lowest cores)."""
        order: Iterable[str] = free
        if first is not None:
            order = [first, *(name for name in free if name != first)]
        remaining = [part.count for part in parts]
        taken: dict[str, list[int]] = {}
        for name in order:
            cores = free.get(name)
            if not cores:
                continue
            offered = set(self._state.nodes[name].properties) | {name}
            for index, part in enumerate(parts):
                used = len(taken.get(name, ()))
                if remaining[index] and _fits(part, offered, len(cores) - used):
                    taken.setdefault(name, []).extend(cores[used:used + part.cores])
                    remaining[index] -= 1
            if not any(remaining):
                break
        return list(taken.items()), sum(remaining)

    def _start(self, job: _JobEntry, placement: list[tuple[str, list[int]]]) -> None:
        now = self._state.now
        for name, cores in placement:
            node = self._state.nodes[name]
            for core in cores:
                node.slots[core] = job.id
            node.touch()
        job.exec_slots = placement
        job.state = "R"
        job.start_time = now
        job.start_count += 1
        job.session_id = 10_000 + (job.seq * 37 + (job.array_index or 0)) % 50_000
        job.comment = f"Job started on {_datetime(now):%a %b %d at %H:%M}"
        job.mtime = now
        limit = _walltime_seconds(job.resources)
        duration = job.runtime if limit is None else min(job.runtime, limit)
        job.end_status = _EXIT_WALLTIME if limit is not None and job.runtime > limit else 0
        job.end_at = now + max(duration, 0.0)
        self._push(job.end_at, _JOB_END, job.id, 0)
        logger.info("job started job=%s exec_host=%s", job.id, _exec_host(placement))

    def _job_ends(self, job: _JobEntry) -> None:
        if not all(self._mom_alive(host) for host, _ in job.exec_slots):
            job.end_blocked = True
            job.end_at = None
            return
        self._complete(job, job.end_status)
        self._cycle()

    def _complete(self, job: _JobEntry, exit_status: int | None) -> None:
        now = self._state.now
        self._release_slots(job)
        job.state = "C"
        job.exit_status = exit_status
        job.comp_time = now
        job.mtime = now
        job.end_at = None
        job.end_blocked = False
        job.purge_at = now + float(self._state.attributes.get("keep_completed", "300"))
        self._push(job.purge_at, _PURGE, job.id, 0)
        logger.info("job completed job=%s exit_status=%s", job.id, exit_status)

    def _release_slots(self, job: _JobEntry) -> None:
        for name, cores in job.exec_slots:
            node = self._state.nodes.get(name)
            if node is None:
                continue
            for core in cores:
                if node.slots.get(core) == job.id:
                    del node.slots[core]
            node.touch()

    def _requeue(self, job: _JobEntry) -> None:
        """What pbs_server does to a job whose node is deleted under it (45_)."""
        self._release_slots(job)
        job.state = "Q"
        job.exec_slots = []
        job.session_id = None
        job.start_time = None
        job.end_at = None
        job.end_blocked = False
        job.exit_status = 0
        job.mtime = self._state.now
        logger.info("job requeued job=%s", job.id)

    def _purge(self, job: _JobEntry) -> None:
        jobs = self._state.jobs
        del jobs[job.id]
        if job.parent is not None and job.parent in jobs:
            parent = jobs[job.parent]
            parent.children.remove(job.id)
            if not parent.children:
                del jobs[parent.id]

    # --- submission ------------------------------------------------------------------------

    def _submit(self, submission: _Submission) -> str:
        state = self._state
        now = state.now
        # The server numbers a job before checking it: refused submissions use up ids (10_).
        seq = state.next_job_number
        state.next_job_number += 1
        queue = state.queues.get(submission.queue or state.attributes.get("default_queue", ""))
        if queue is None:
            raise EmulatorError(172, "qsub: submit error (Unknown queue MSG=requested queue "
                                     "not found)\n")
        for key in submission.resources:
            if key not in _KNOWN_RESOURCES:
                raise EmulatorError(189, "qsub: submit error (Unknown resource type  "
                                         f"Resource_List.{key})\n")
        resources, defaulted = _with_queue_defaults(submission.resources, queue)
        if "nodes" in resources and not self._is_feasible(resources["nodes"]):
            raise EmulatorError(190, _INFEASIBLE)
        state_letter = "H" if submission.hold else "Q"
        variables = [f"PBS_O_QUEUE={queue.name}", f"PBS_O_HOME=/home/{submission.owner}",
                     f"PBS_O_LOGNAME={submission.owner}",
                     _PATH_VARIABLE, "PBS_O_SHELL=/bin/bash",
                     "PBS_O_LANG=C.UTF-8",
                     *([f"PBS_O_SUBMIT_FILTER={submission.submit_filter}"]
                       if submission.submit_filter else []),
                     *submission.variables,
                     f"PBS_O_WORKDIR=/home/{submission.owner}",
                     f"PBS_O_HOST={self._server}", f"PBS_O_SERVER={self._server}"]

        def entry(job_id: str, name: str, extra: list[str]) -> _JobEntry:
            rank = state.next_rank
            state.next_rank += 1
            return _JobEntry(
                id=job_id, seq=seq, name=name, owner=submission.owner, queue=queue.name,
                state=state_letter, ctime=now, mtime=now, resources=dict(resources),
                defaulted=list(defaulted), submit_args=submission.submit_args,
                variables=extra + variables, queue_rank=rank, runtime=submission.runtime,
                hold_types="u" if submission.hold else "n", account=submission.account,
                qtime=now, etime=None if submission.hold else now)

        if submission.array is None:
            job_id = f"{seq}.{self._server}"
            state.jobs[job_id] = entry(job_id, submission.name, [])
        else:
            job_id = f"{seq}[].{self._server}"
            parent = entry(job_id, submission.name, [])
            parent.qtime = None
            parent.array_request = submission.array
            parent.slot_limit = nodespec.parse_array_spec(submission.array).slot_limit
            state.jobs[job_id] = parent
            for index in _array_indices(submission.array):
                child_id = f"{seq}[{index}].{self._server}"
                child = entry(child_id, f"{submission.name}-{index}", [f"PBS_ARRAYID={index}"])
                child.parent = job_id
                child.array_index = index
                parent.children.append(child_id)
                state.jobs[child_id] = child
        state.sched_new.extend(child for child in state.jobs[job_id].children or [job_id])
        logger.info("job submitted job=%s queue=%s resources=%s", job_id, queue.name, resources)
        self._cycle()
        return job_id

    def _is_feasible(self, spec: str) -> bool:
        """node_spec()'s submit-time check: could the node entries ever run this request?

        Every (node, part) pair a node could satisfy ignoring its state counts as eligible;
        free nodes also use up the part, and the scan stops once every part is met.
        """
        parts = _parse_parts(spec)
        if parts is None:
            return False
        nodes = self._state.nodes
        total = sum(part.count for part in parts)
        if total > len(nodes):
            return False
        remaining = [part.count for part in parts]
        eligible = 0
        for node in nodes.values():
            offered = set(node.properties) | {node.name}
            free_cores = node.np - len(node.slots)
            available = not (node.down or node.offline or free_cores <= 0)
            for index, part in enumerate(parts):
                if not remaining[index] or not _fits(part, offered, node.np):
                    continue
                eligible += 1
                if available and free_cores >= part.cores:
                    remaining[index] -= 1
            # The answer is `eligible >= total` and eligible only grows: stop once it holds.
            if eligible >= total or not any(remaining):
                break
        return eligible >= total

    # --- qsub ---------------------------------------------------------------------------

    def _qsub(self, args: list[str], stdin: bytes | None,
              submit_filter: str | None = None) -> tuple[int, str, str]:
        # With a filter, qsub checked the script file before running the filter.
        refusal = None if submit_filter is not None else script_file_refusal(args)
        if refusal is not None:
            return 1, "", refusal
        try:
            options, rest = parse_qsub_options(args)
        except QsubUsageError:
            return 2, "", _QSUB_USAGE.lstrip("\n")
        if any(option == "I" for option, _ in options):
            return _unsupported("qsub -I")
        if len(rest) > 1:
            return 2, "", _QSUB_USAGE.lstrip("\n")
        if submit_filter is not None:
            # The filter read the script file (or stdin); its output is the job script.
            script = stdin or b""
            default_name = Path(rest[0]).name if rest else "STDIN"
        elif rest:
            path = Path(rest[0])
            try:
                script = path.read_bytes()
            except OSError as error:
                return 1, "", (f"qsub: script file '{rest[0]}' cannot be loaded - "
                               f"{error.strerror}\n")
            default_name = path.name
        else:
            script = stdin or b""
            default_name = "STDIN"
        prefix = next((value for option, value in options if option == "C"), "#PBS")
        try:
            directives = _script_directives(script.decode(errors="replace"), prefix)
        except (QsubUsageError, ValueError):
            return 2, "", _QSUB_USAGE.lstrip("\n")
        merged = directives + options
        values: dict[str, str] = {}
        limits: list[str] = []
        variables: list[str] = []
        for option, value in merged:
            if option == "l":
                limits.append(value)
            elif option == "v":
                # The server splits the list at a newline too: `X=a\nb` shows `X=a,b` (51_).
                variables.extend(item for item in re.split("[,\n]", value) if item)
            else:
                values[option] = value
        name = values.get("N", default_name)
        problem = _check_job_name(name) if "N" in values else None
        if problem is None and "t" in values:
            problem = _check_array(values["t"])
        if problem is not None:
            return 2, "", problem
        try:
            resources = {key: _normalize_resource(key, value) for key, value
                         in nodespec.parse_qsub_resources(limits).items()}
        except nodespec.RequestError:
            return 2, "", f"[qsub: illegal -l value]\n{_QSUB_USAGE}\n"
        runtime = DEFAULT_RUNTIME
        for variable in variables:
            key, _, text = variable.partition("=")
            if key == RUNTIME_VARIABLE:
                try:
                    runtime = float(text)
                except ValueError:
                    return 2, "", f"qsub: {RUNTIME_VARIABLE} must be seconds, got {text!r}\n"
        submission = _Submission(
            owner=self._submit_user, queue=values.get("q"), resources=resources,
            name=name, account=values.get("A"), array=values.get("t"), runtime=runtime,
            hold="h" in values, submit_args=" ".join(args), variables=tuple(variables),
            submit_filter=submit_filter)
        if not script:
            # qsub prints an id for an empty script but the job is never committed (README).
            seq = self._state.next_job_number
            self._state.next_job_number += 1
            suffix = "[]" if submission.array else ""
            return 0, f"{seq}{suffix}.{self._server}\n", ""
        try:
            job_id = self._submit(submission)
        except EmulatorError as error:
            return error.status, "", error.stderr
        return 0, f"{job_id}\n", ""

    # --- qdel -----------------------------------------------------------------------------

    def _qdel(self, args: list[str], stdin: bytes | None) -> tuple[int, str, str]:
        try:
            options, rest = getopt.getopt(args, "acpm:t:W:b:")
        except getopt.GetoptError:
            options, rest = [], []
        if options or not rest or any(word.lower() == "all" for word in rest):
            return _unsupported(shlex.join(["qdel", *args]))
        status, errors = 0, []
        for word in rest:
            job = self._find_job(word)
            if job is None:
                status = 153
                errors.append(f"qdel: nonexistent job id: {word}\n")
                continue
            targets = [self._state.jobs[child] for child in job.children] or [job]
            if all(target.state == "C" for target in targets):
                status = 170
                errors.append("qdel: Request invalid for state of job MSG=invalid state for "
                              f"job - COMPLETE {job.id}\n")
                continue
            ended = False
            for target in targets:
                if target.state == "R":
                    self._complete(target, _EXIT_DELETED)
                    ended = True
                elif target.state in ("Q", "H"):
                    self._complete(target, None)
            if ended:
                self._cycle()
        return status, "", "".join(errors)

    # --- qstat ----------------------------------------------------------------------------

    def _qstat(self, args: list[str], stdin: bytes | None) -> tuple[int, str, str]:
        try:
            options, rest = getopt.getopt(args, "fxt1aeinrsuGMQBW:")
        except getopt.GetoptError:
            return 2, "", ("usage: qstat [-f [-1]] [-W site_specific] [-x] [-t] "
                           "[ job_identifier... ]\n")
        flags = {option for option, _ in options}
        if flags - {"-f", "-x", "-t"} or ("-f" in flags and "-x" not in flags):
            return _unsupported(shlex.join(["qstat", *args]))
        expand = "-t" in flags
        status, errors = 0, []
        if rest:
            selected: list[_JobEntry] = []
            for word in rest:
                job = self._find_job(word)
                if job is None:
                    status = 153
                    errors.append(f"qstat: Unknown Job Id Error {self._full_job_id(word)}\n")
                elif expand and job.children:
                    selected.extend(self._state.jobs[child] for child in job.children)
                else:
                    selected.append(job)
        elif expand:
            selected = [job for job in self._state.jobs.values() if not job.children]
        else:
            selected = [job for job in self._state.jobs.values() if job.parent is None]
        if "-x" in flags:
            if rest and not selected:
                return status, "", "".join(errors)
            body = "".join(self._job_xml(job) for job in selected)
            return status, f'<?xml version="1.0"?>\n<Data>{body}</Data>\n', "".join(errors)
        return status, self._qstat_table(selected), "".join(errors)

    def _qstat_table(self, jobs: list[_JobEntry]) -> str:
        if not jobs:
            return ""
        lines = ["Job ID                    Name             User            Time Use S Queue",
                 "------------------------- ---------------- --------------- -------- - -----"]
        for job in jobs:
            # Only a job that ran has resources_used; qstat shows "0" for the others (30_).
            used = "00:00:00" if self._job_state(job) == "C" and job.exec_slots else "0"
            lines.append(f"{job.id:<26} {job.name[:16]:<16} {job.owner[:15]:<15} {used:>8} "
                         f"{self._job_state(job)} {job.queue:<15}")
        return "\n".join(lines) + "\n"

    def _find_job(self, word: str) -> _JobEntry | None:
        return self._state.jobs.get(self._full_job_id(word))

    def _full_job_id(self, word: str) -> str:
        return word if word.endswith(f".{self._server}") else f"{word}.{self._server}"

    def _job_state(self, job: _JobEntry) -> str:
        if not job.children:
            return job.state
        states = {self._state.jobs[child].state for child in job.children}
        for letter in ("R", "Q", "H"):
            if letter in states:
                return letter
        return "C"

    def _job_xml(self, job: _JobEntry) -> str:
        server = self._server
        state = self._job_state(job)
        now = self._state.now
        jobs = self._state.jobs
        mtime = max([job.mtime, *(jobs[child].mtime for child in job.children)])
        base_name = jobs[job.parent].name if job.parent else job.name
        suffix = f"{job.seq}-{job.array_index}" if job.parent else f"{job.seq}"
        fields: list[tuple[str, str | list[tuple[str, str]]]] = [
            ("Job_Id", job.id), ("Job_Name", job.name), ("Job_Owner", f"{job.owner}@localhost")]
        if state == "C" and job.exec_slots:
            elapsed = (job.comp_time or now) - (job.start_time or now)
            used = [("cput", "00:00:00"), ("vmem", "0kb"), ("walltime", _hms(elapsed)),
                    ("mem", "0kb"), ("energy_used", "0")]
            if job.exit_status == _EXIT_DELETED:
                used.sort()     # a killed job's usage comes back sorted by name (30_)
            fields.append(("resources_used", used))
        fields += [("job_state", state), ("queue", job.queue), ("server", server)]
        if job.account:
            fields.append(("Account_Name", job.account))
        fields += [("Checkpoint", "u"), ("ctime", _int(job.ctime)),
                   ("Error_Path", f"{server}:/home/{job.owner}/{base_name}.e{suffix}")]
        if job.exec_slots:
            fields.append(("exec_host", _exec_host(job.exec_slots)))
        if job.parent is None:
            fields.append(("Hold_Types", job.hold_types))
        fields += [("Join_Path", "n"), ("Keep_Files", "n"), ("Mail_Points", "a"),
                   ("mtime", _int(mtime)),
                   ("Output_Path", f"{server}:/home/{job.owner}/{base_name}.o{suffix}"),
                   ("Priority", "0")]
        if job.qtime is not None:
            fields.append(("qtime", _int(job.qtime)))
        fields += [("Rerunable", "True"), ("Resource_List", list(job.resources.items()))]
        if job.session_id is not None and job.exec_slots:
            fields.append(("session_id", str(job.session_id)))
        fields += [("substate", str(_SUBSTATES[state])),
                   ("Variable_List", ",".join(_ARST_SPECIAL.sub(r"\\\g<0>", variable)
                                              for variable in job.variables)),
                   ("euser", job.owner), ("egroup", job.owner)]
        if job.start_count:
            fields.append(("hashname", job.id))
        fields += [("queue_rank", str(job.queue_rank)), ("queue_type", "E")]
        if job.comment is not None and not job.children:
            fields.append(("comment", job.comment))
        if job.etime is not None:
            fields.append(("etime", _int(job.etime)))
        if job.exit_status is not None:
            fields.append(("exit_status", str(job.exit_status)))
        fields.append(("submit_args", job.submit_args))
        if job.array_request is not None:
            fields.append(("job_array_request", job.array_request))
        if job.array_index is not None:
            fields.append(("job_array_id", str(job.array_index)))
        if job.start_time is not None:
            fields.append(("start_time", _int(job.start_time)))
            limit = _walltime_seconds(job.resources)
            if state == "R" and limit is not None:
                fields.append(("Walltime", [("Remaining",
                                             str(int(limit - (now - job.start_time))))]))
        if job.start_count:
            fields.append(("start_count", str(job.start_count)))
        fields.append(("fault_tolerant", "False"))
        if state == "C" and job.comp_time is not None and not job.children:
            fields.append(("comp_time", _int(job.comp_time)))
        fields.append(("job_radix", "0"))
        if state == "C" and job.start_time is not None and job.comp_time is not None:
            fields.append(("total_runtime", f"{job.comp_time - job.start_time:.6f}"))
        fields += [("submit_host", server), ("init_work_dir", f"/home/{job.owner}"),
                   ("request_version", "1")]
        return "<Job>" + "".join(_element(tag, value) for tag, value in fields) + "</Job>"

    def _job_view(self, job: _JobEntry) -> EmulatedJob:
        return EmulatedJob(
            id=job.id, name=job.name, owner=job.owner, queue=job.queue,
            state=self._job_state(job), resources=dict(job.resources),
            exec_host=_exec_host(job.exec_slots) if job.exec_slots else None,
            comment=job.comment, exit_status=job.exit_status, account=job.account,
            array_parent=job.parent)

    # --- pbsnodes -------------------------------------------------------------------------

    def _pbsnodes(self, args: list[str], stdin: bytes | None) -> tuple[int, str, str]:
        try:
            options, rest = getopt.getopt(args, "acdlopqrs:xN:n")
        except getopt.GetoptError:
            return 1, "", _PBSNODES_USAGE
        mode, xml, note, list_notes = "all", False, None, False
        for option, value in options:
            if option in ("-a", "-x"):
                mode, xml = "all", xml or option == "-x"
            elif option in ("-c", "-l", "-o", "-r", "-d", "-p"):
                mode = {"-c": "clear", "-l": "list", "-o": "offline", "-r": "reset",
                        "-d": "diag", "-p": "purge"}[option]
            elif option == "-N":
                mode = "note" if mode == "all" else mode
                note = "" if value == "n" else value
            elif option == "-n":
                list_notes = True
        if list_notes and mode != "list":
            return 1, "", "Error: -n requires -l\n" + _PBSNODES_USAGE
        if any(not word for word in rest):
            return 1, "", _PBSNODES_USAGE
        if mode in ("diag", "purge"):
            return _unsupported(shlex.join(["pbsnodes", *args]))
        if mode in ("clear", "reset", "offline", "note"):
            return 0, "", "".join(self._mark_node(name, mode, note) for name in rest)
        if mode == "list":
            list_type = None
            if rest and rest[0].lower() in _PBSNODES_LIST_TYPES:
                list_type = rest.pop(0).lower()
            nodes = self._stat_nodes(rest)
            if isinstance(nodes, str):
                return 1, "", nodes
            return 0, self._node_list(nodes, list_type, list_notes), ""
        nodes = self._stat_nodes(rest)
        if isinstance(nodes, str):
            return 1, "", nodes
        if xml:
            return 0, "<Data>" + "".join(self._node_xml(node) for node in nodes) + "</Data>\n", ""
        text = "".join(node.name + "\n" + "".join(f"     {key} = {value}\n" for key, value
                                                  in self._node_attributes(node)) + "\n"
                       for node in nodes)
        return 0, text, ""

    def _stat_nodes(self, names: list[str]) -> list[_NodeEntry] | str:
        nodes = self._state.nodes
        if not nodes:
            return _NO_NODE_LIST
        if not names:
            return list(nodes.values())
        for name in names:
            if name not in nodes:
                return "pbsnodes: Unknown node  MSG=cannot locate specified node\n"
        return [nodes[name] for name in names]

    def _mark_node(self, name: str, mode: str, note: str | None) -> str:
        """-o/-c/-r/-N on one node; pbsnodes reports a failure on stderr and exits 0."""
        node = self._state.nodes.get(name)
        if node is None:
            return f"Error setting note attribute for {name} - Unknown node \n"
        if mode != "note" and node.list_not_sent:
            # -o/-c/-r go as a `state` attribute in one request with -N's note, and
            # node_state() refuses any new state while the hierarchy is not sent, even an
            # unchanged one; the whole request fails (source: node_state ATR_ACTION_ALTER,
            # pbsnodes.c set_all_nodeattrs).
            return f"Error setting note attribute for {name} - {_HIERARCHY_NOT_SENT}\n"
        offline_before, note_before = node.offline, node.note
        if note is not None:
            node.note = note or None
        if mode == "offline":
            node.offline = True
        elif mode == "clear":
            node.offline = False
        elif mode == "reset":
            node.offline = False
            node.down = True
            due = self._next_periodic_report(node)
            if due is not None:
                self._schedule_report(node, due)
        self._save_changed_node_files(node, offline_before, note_before)
        logger.info("node marked node=%s mode=%s note=%s", name, mode, note)
        return ""

    def _save_changed_node_files(self, node: _NodeEntry, offline_before: bool,
                                 note_before: str | None) -> None:
        """mgr_node_set after a change to `node`: node_status is rewritten when its
        offline flag changed, node_note when its note did (source: chk_characteristic).
        Each holds every node at that moment, an entry in its creation window included."""
        if node.offline != offline_before:
            self._save_offline_nodes()
        if node.note != note_before:
            self._state.saved_node_notes = {name: entry.note for name, entry
                                            in self._state.nodes.items() if entry.note}

    def _save_offline_nodes(self) -> None:
        """write_node_state(): the names of the nodes offline now."""
        self._state.saved_offline_nodes = [name for name, node in self._state.nodes.items()
                                           if node.offline]

    def _node_state(self, node: _NodeEntry) -> str:
        flags = [flag for flag, on in (("down", node.down), ("offline", node.offline),
                                       ("MOM-list-not-sent", node.list_not_sent)) if on]
        if flags:
            return ",".join(flags)
        if node.slots and len(node.slots) >= node.np:
            return "job-exclusive"
        return "free"

    def _node_attributes(self, node: _NodeEntry, *, wrap_status: bool = False
                         ) -> list[tuple[str, str]]:
        pairs = [("state", self._node_state(node)), ("power_state", "Running"),
                 ("np", str(node.np))]
        if node.properties:
            pairs.append(("properties", ",".join(node.properties)))
        pairs.append(("ntype", "cluster"))
        if node.slots:
            pairs.append(("jobs", _node_jobs(node.slots)))
        if node.reported_at is not None:
            status = self._status_text(node)
            pairs.append(("status", _wrap_status(status) if wrap_status else status))
        if node.note:
            pairs.append(("note", node.note))
        pairs += [("mom_service_port", str(node.mom_service_port)),
                  ("mom_manager_port", str(node.mom_manager_port))]
        return pairs

    def _node_xml(self, node: _NodeEntry) -> str:
        return "<Node>" + _element("name", node.name) + "".join(
            _element(key, value) for key, value in self._node_attributes(node)) + "</Node>"

    def _node_list(self, nodes: list[_NodeEntry], list_type: str | None, notes: bool) -> str:
        lines = []
        for node in nodes:
            state = self._node_state(node)
            if not _list_type_matches(list_type, state):
                continue
            if notes and node.note:
                lines.append(f"{node.name[:20]:<20} {state[:26]:<26} {node.note}\n")
            else:
                lines.append(f"{node.name[:20]:<20} {state}\n")
        return "".join(lines)

    def _status_text(self, node: _NodeEntry) -> str:
        """The mom's last status report; kept as it was once the mom dies (17_, 46_)."""
        reported_at = node.reported_at if node.reported_at is not None else self._state.now
        mom = self._state.moms.get(node.name)
        until = reported_at                      # a restarted mom has not reported yet
        if mom is not None and mom.up and mom.up_since <= reported_at:
            until = self._state.now
        elif mom is not None and mom.down_since is not None:
            until = max(mom.down_since, reported_at)
        last = reported_at + math.floor((until - reported_at) / self._status_interval) \
            * self._status_interval
        up_since = min(mom.up_since, reported_at) if mom is not None else reported_at
        jobs = []
        for job_id in dict.fromkeys(node.slots.values()):
            job = self._state.jobs.get(job_id)
            if job is not None and job.start_time is not None and job.start_time <= last:
                jobs.append(job)
        sessions = [str(1000 + zlib.crc32(node.name.encode()) % 9000)]
        sessions += [str(job.session_id) for job in jobs]
        mem_kb = node.status_mem_kb
        items = [
            "opsys=linux", f"uname=Linux {node.name} 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC "
            "@0 x86_64", f"sessions={' '.join(sessions)}", f"nsessions={len(sessions)}",
            f"nusers={2 if jobs else 1}", f"idletime={int(last - up_since)}",
            f"totmem={mem_kb}kb", f"availmem={mem_kb * 95 // 100}kb", f"physmem={mem_kb}kb",
            f"ncpus={node.status_ncpus}", f"loadave={len(jobs):.2f}", "gres=",
            f"netload={int((last - up_since) * 1000)}", "state=free", "varattr= ",
            "cpuclock=Fixed", f"version={PBS_VERSION}", f"rectime={int(last)}",
            f"jobs={' '.join(job.id for job in jobs)}"]
        return ",".join(items)

    def _node_view(self, node: _NodeEntry) -> EmulatedNode:
        return EmulatedNode(
            name=node.name, state=self._node_state(node), np=node.np,
            properties=tuple(node.properties), note=node.note,
            jobs=tuple(dict.fromkeys(node.slots[core] for core in sorted(node.slots))),
            has_status=node.reported_at is not None, mom_up=self._mom_alive(node.name))

    # --- qmgr -----------------------------------------------------------------------------

    def _qmgr(self, args: list[str], stdin: bytes | None) -> tuple[int, str, str]:
        try:
            options, _ = getopt.getopt(args, "ac:enz")
        except getopt.GetoptError:
            return 1, "", "Usage: qmgr [-a] [-c command] [-e] [-n] [-z] [server...]\n"
        commands = [value for option, value in options if option == "-c"]
        if not commands:
            return _unsupported("qmgr reading commands from stdin")
        text = commands[-1]
        try:
            command = _parse_qmgr(text)
            handler = {"server": self._qmgr_server, "queue": self._qmgr_queue,
                       "node": self._qmgr_node}[command.kind]
            return handler(command)
        except _QmgrError as error:
            return error.status, "", error.stderr

    def _qmgr_server(self, command: _QmgrCommand) -> tuple[int, str, str]:
        attributes = self._state.attributes
        if command.verb == "print":
            return 0, self._print_queues(list(self._state.queues.values())) \
                + self._print_server(), ""
        if command.verb == "list":
            wanted = [name for name, _, _ in command.attributes]
            return 0, self._list_server(wanted), ""
        if command.verb == "unset":
            for name, _, _ in command.attributes:
                # `unset server scheduler_iteration` keeps the value (47_).
                if name != "scheduler_iteration":
                    attributes.pop(name, None)
            return 0, "", ""
        if command.verb != "set":
            return _unsupported(f"qmgr {command.verb} server")
        poke = False
        for name, operator, value in command.attributes:
            illegal = _QmgrError("qmgr obj= svr=default: Illegal attribute or resource value "
                                 f"for  {name}\n")
            if name in _BOOLEAN_SERVER_ATTRIBUTES:
                value = _boolean_text(value, "server", self._server)
            elif name in ("scheduler_iteration", "keep_completed", "next_job_number"):
                # A zero iteration would make the periodic cycle due again at once, forever.
                lowest = 1 if name == "scheduler_iteration" else 0
                if not value.isdigit() or int(value) < lowest:
                    raise illegal
            if operator != "=":
                if name in _BOOLEAN_SERVER_ATTRIBUTES or name == "next_job_number":
                    raise illegal
                # managers, operators, acl_hosts...: += and -= edit a comma list (02_).
                items = [item for item in attributes.get(name, "").split(",") if item]
                if operator == "+=":
                    items += [item for item in value.split(",") if item not in items]
                else:
                    items = [item for item in items if item not in value.split(",")]
                value = ",".join(items)
            if name == "next_job_number":
                self._state.next_job_number = int(value)
                continue
            attributes[name] = value
            if name == "scheduler_iteration":
                self._schedule_cycle(self._state.now + float(value))
            poke = poke or (name == "scheduling" and value == "True")
        if poke:
            # Setting scheduling starts a cycle at once (47_).
            self._cycle()
        return 0, "", ""

    def _print_server(self) -> str:
        attributes = dict(self._state.attributes)
        if self._state.next_job_number:
            attributes["next_job_number"] = str(self._state.next_job_number)
        names = [name for name in _SERVER_PRINT_ORDER if name in attributes]
        names += [name for name in attributes if name not in _SERVER_PRINT_ORDER]
        return "#\n# Set server attributes.\n#\n" + "".join(
            f"set server {name} = {attributes[name]}\n" for name in names)

    def _list_server(self, wanted: list[str]) -> str:
        counts = self._state_counts(self._state.jobs.values())
        attributes: dict[str, str] = {
            "server_state": "Active" if _is_true(self._state.attributes.get("scheduling", ""))
            else "Idle",
            "total_jobs": str(sum(counts.values())), "state_count": _state_count(counts)}
        for name in _SERVER_PRINT_ORDER:
            if name in self._state.attributes:
                attributes[name] = self._state.attributes[name]
            if name == "mom_job_sync":
                attributes["pbs_version"] = PBS_VERSION
        if self._state.next_job_number:
            attributes["next_job_number"] = str(self._state.next_job_number)
        for name, value in self._state.attributes.items():
            attributes.setdefault(name, value)
        if wanted:
            attributes = {name: attributes[name] for name in wanted if name in attributes}
        return f"Server {self._server}\n" + "".join(
            f"\t{name} = {value}\n" for name, value in attributes.items()) + "\n"

    @staticmethod
    def _state_counts(jobs: Iterable[_JobEntry]) -> dict[str, int]:
        """Jobs per state as qmgr counts them: array subjobs, not their parents (13_)."""
        counts = {"Q": 0, "H": 0, "R": 0, "C": 0}
        for job in jobs:
            if not job.children:
                counts[job.state] += 1
        return counts

    def _qmgr_queue(self, command: _QmgrCommand) -> tuple[int, str, str]:
        queues = self._state.queues
        name = command.name
        if command.verb in ("list", "print") and not name:
            selected = list(queues.values())
        elif command.verb == "create":
            if not name:
                raise _QmgrError("qmgr: Syntax error - no name specified\n")
            if name in queues:
                raise _QmgrError(f"qmgr obj={name} svr=default: Queue already exists\n")
            queues[name] = _Queue(name, self._state.now, {})
            self._apply_queue_attributes(queues[name], command.attributes)
            return 0, "", ""
        else:
            if not name or name not in queues:
                message = "Unknown queue"
                if command.verb == "list":
                    message += f" MSG=cannot locate queue {name}"
                raise _QmgrError(f"qmgr obj={name} svr=default: {message}\n")
            selected = [queues[name]]
        if command.verb == "print":
            return 0, self._print_queues(selected), ""
        if command.verb == "list":
            return 0, "".join(self._list_queue(queue) for queue in selected), ""
        queue = selected[0]
        if command.verb == "delete":
            if any(job.queue == queue.name for job in self._state.jobs.values()):
                raise _QmgrError(f"qmgr obj={queue.name} svr=default: Cannot delete busy "
                                 "queue\n")
            del queues[queue.name]
            return 0, "", ""
        if command.verb == "set":
            self._apply_queue_attributes(queue, command.attributes)
            return 0, "", ""
        if command.verb == "unset":
            for attribute, _, _ in command.attributes:
                queue.attributes.pop(attribute, None)
                self._propagate_default(queue, attribute, None)
            return 0, "", ""
        return _unsupported(f"qmgr {command.verb} queue")

    def _apply_queue_attributes(self, queue: _Queue,
                                attributes: tuple[tuple[str, str, str], ...]) -> None:
        for name, _, value in attributes:
            if name in ("enabled", "started"):
                value = _boolean_text(value, "queue", queue.name)
            elif name == "queue_type":
                value = {"e": "Execution", "r": "Route"}.get(value[:1].lower(), value)
            elif name.startswith("resources_"):
                try:
                    value = _normalize_resource(name.partition(".")[2], value)
                except nodespec.RequestError:
                    raise _QmgrError(f"qmgr obj={queue.name} svr=default: Illegal attribute "
                                     "or resource value for\n") from None
            queue.attributes[name] = value
            self._propagate_default(queue, name, value)

    def _propagate_default(self, queue: _Queue, attribute: str, value: str | None) -> None:
        """A changed default reaches queued jobs that took the old one (42_)."""
        prefix, _, resource = attribute.partition(".")
        if prefix != "resources_default":
            return
        for job in self._state.jobs.values():
            if job.queue != queue.name or job.state not in ("Q", "H") \
                    or resource not in job.defaulted:
                continue
            derived = ("nodect", "neednodes") if resource == "nodes" else ()
            for key in (resource, *derived):
                job.resources.pop(key, None)
            if value is None:
                job.defaulted.remove(resource)
                continue
            job.resources[resource] = value
            if resource == "nodes":
                job.resources["nodect"] = str(_node_count(value))
                job.resources["neednodes"] = value

    def _print_queues(self, queues: list[_Queue]) -> str:
        if not queues:
            return ""
        text = "#\n# Create queues and set their attributes.\n#\n"
        for queue in queues:
            text += f"#\n# Create and define queue {queue.name}\n#\ncreate queue {queue.name}\n"
            text += "".join(f"set queue {queue.name} {name} = {value}\n"
                            for name, value in self._queue_attribute_order(queue))
        return text

    def _queue_attribute_order(self, queue: _Queue) -> list[tuple[str, str]]:
        attributes = queue.attributes
        head = [("queue_type", attributes["queue_type"])] if "queue_type" in attributes else []
        tail = [(name, attributes[name]) for name in ("enabled", "started") if name in attributes]
        middle = [(name, value) for name, value in attributes.items()
                  if name not in ("queue_type", "enabled", "started")]
        return head + middle + tail

    def _list_queue(self, queue: _Queue) -> str:
        jobs = [job for job in self._state.jobs.values() if job.queue == queue.name]
        counts = self._state_counts(jobs)
        ordered = self._queue_attribute_order(queue)
        head = [pair for pair in ordered if pair[0] == "queue_type"]
        tail = [pair for pair in ordered if pair[0] in ("enabled", "started")]
        middle = [pair for pair in ordered if pair not in head and pair not in tail]
        lines = [*head, ("total_jobs", str(sum(counts.values()))),
                 ("state_count", _state_count(counts)), *middle,
                 ("mtime", f"{_datetime(queue.created):%a %b %d %H:%M:%S %Y}")]
        assigned = sum(int(job.resources.get("nodect", "0")) for job in jobs
                       if job.state == "R" and not job.children)
        if assigned:
            lines.append(("resources_assigned.nodect", str(assigned)))
        lines += tail
        return f"Queue {queue.name}\n" + "".join(f"\t{name} = {value}\n"
                                                 for name, value in lines) + "\n"

    def _qmgr_node(self, command: _QmgrCommand) -> tuple[int, str, str]:
        nodes = self._state.nodes
        names = [name for name in (command.name or "").split(",") if name]
        if command.verb in ("list", "print"):
            if not names:
                return 0, "", "No Active Nodes, nothing done.\n"
            if names == ["@default"]:
                selected = list(nodes.values())
            else:
                for name in names:
                    if name not in nodes:
                        raise _QmgrError(f"qmgr obj={name} svr=default: Unknown node  "
                                         "MSG=cannot locate specified node\n")
                selected = [nodes[name] for name in names]
            if command.verb == "list":
                return 0, "".join(
                    f"Node {node.name}\n" + "".join(
                        f"\t{key} = {value}\n"
                        for key, value in self._node_attributes(node, wrap_status=True)) + "\n"
                    for node in selected), ""
            return 0, self._print_nodes(selected), ""
        if not names:
            raise _QmgrError("qmgr: Syntax error - no name specified\n")
        if command.verb == "create":
            for name in names:
                self._create_node(name, command.attributes)
            return 0, "", ""
        for name in names:
            if name not in nodes:
                raise _QmgrError(f"qmgr obj={name} svr=default: Unknown node \n")
        for name in names:
            if command.verb == "delete":
                self._delete_node(nodes[name])
            elif command.verb == "set":
                self._set_node(nodes[name], command.attributes)
            elif command.verb == "unset":
                for attribute, _, _ in command.attributes:
                    if attribute == "note":
                        nodes[name].note = None
                    elif attribute == "properties":
                        nodes[name].properties = []
            else:
                return _unsupported(f"qmgr {command.verb} node")
        return 0, "", ""

    def _create_node(self, name: str, attributes: tuple[tuple[str, str, str], ...]) -> None:
        state = self._state
        if name in state.nodes:
            raise _QmgrError(f"qmgr obj={name} svr=default: Node name already exists\n")
        if self._resolvable is not None and not self._resolvable(name):
            raise _QmgrError(f"qmgr obj={name} svr=default: Unknown node \n")
        now = state.now
        state.next_serial += 1
        node = _NodeEntry(name=name, serial=state.next_serial, np=1, properties=[],
                          hierarchy_at=now + self._hierarchy_delay)
        self._apply_node_attributes(node, attributes, creating=True)
        state.nodes[name] = node
        self._push(node.hierarchy_at, _HIERARCHY, name, node.serial)
        mom = state.moms.get(name)
        if mom is not None and mom.up:
            # A running mom's statuses found no entry and were dropped ("address not
            # trusted"); the server hears the next one the mom sends on its cadence.
            self._schedule_report(node, self._next_status_send(mom) + self._mom_hello_delay)
        logger.info("node created node=%s np=%d properties=%s", name, node.np,
                    ",".join(node.properties))

    def _delete_node(self, node: _NodeEntry) -> None:
        """Succeeds with jobs on the node: they are killed and requeued (45_)."""
        for job_id in dict.fromkeys(node.slots.values()):
            job = self._state.jobs.get(job_id)
            if job is not None and job.state == "R":
                self._requeue(job)
        del self._state.nodes[node.name]
        # A delete rewrites node_status but leaves node_note as it was (mgr_node_delete).
        self._save_offline_nodes()
        logger.info("node deleted node=%s", node.name)

    def _set_node(self, node: _NodeEntry, attributes: tuple[tuple[str, str, str], ...]) -> None:
        np_before, offline_before, note_before = node.np, node.offline, node.note
        self._apply_node_attributes(node, attributes, creating=False)
        self._save_changed_node_files(node, offline_before, note_before)
        if node.np != np_before and _is_true(self._state.attributes.get("auto_node_np", "")):
            due = self._next_periodic_report(node)
            if due is not None:
                self._schedule_report(node, due)

    def _apply_node_attributes(self, node: _NodeEntry,
                               attributes: tuple[tuple[str, str, str], ...], *,
                               creating: bool) -> None:
        """Validate every attribute first: a refused command changes nothing (05_)."""
        bad_value = f"qmgr obj={node.name} svr=default: Illegal attribute or resource value for\n"
        changes: list[Callable[[], None]] = []
        for name, operator, value in attributes:
            if name not in _NODE_ATTRIBUTES:
                raise _QmgrError(f"qmgr obj={node.name} svr=default: Undefined attribute  "
                                 f"{name}\n")
            if name in ("np", "mom_service_port", "mom_manager_port"):
                if not value.isdigit() or int(value) < 1 or operator != "=":
                    raise _QmgrError(bad_value)
                changes.append(_setter(node, name, int(value)))
            elif name == "properties":
                words = [word for word in value.split(",") if word]
                changes.append(_property_change(node, operator, words))
            elif name == "note":
                changes.append(_setter(node, "note", value or None))
            elif name == "ntype":
                if value != "cluster":
                    raise _QmgrError(bad_value)
            else:
                flags = set(value.split(","))
                if not flags <= {"free", "down", "offline"}:
                    raise _QmgrError(bad_value)
                if node.list_not_sent and not creating:
                    raise _QmgrError(f"qmgr obj={node.name} svr=default: "
                                     f"{_HIERARCHY_NOT_SENT}\n")
                changes.append(_state_change(node, operator, flags))
        for change in changes:
            change()

    def _print_nodes(self, nodes: list[_NodeEntry]) -> str:
        text = "#\n# Create nodes and set their properties.\n#\n"
        for node in nodes:
            name = node.name
            text += f"#\n# Create and define node {name}\n#\ncreate node {name}\n"
            text += _print_list(f"set node {name} state", self._node_state(node).split(","))
            text += f"set node {name} np = {node.np}\n"
            text += _print_list(f"set node {name} properties", node.properties)
            text += f"set node {name} ntype = cluster\n"
            if node.reported_at is not None:
                text += _print_list(f"set node {name} status",
                                    self._status_text(node).split(","))
            if node.note:
                text += f"set node {name} note = {node.note}\n"
        return text

    # --- server down ----------------------------------------------------------------------

    def _unreachable(self, command: str) -> tuple[int, str, str]:
        """What each client prints when pbs_server (and maybe trqauthd) is down (48_)."""
        server = self._server
        if self._state.trqauthd_down:
            socket = "socket_connect_unix failed: 15137\n"
            reason = "(errno=15137) could not connect to trqauthd"
            if command == "qstat":
                return 33, "", (socket * 3 + f"qstat: cannot connect to server (null) {reason}\n"
                                "qstat: Error (15137 - could not connect to trqauthd) \n")
            if command == "pbsnodes":
                return 1, "", (socket + f"pbsnodes: cannot connect to server {server}, "
                               "error=15137 (could not connect to trqauthd)\n")
            if command == "qmgr":
                return 3, "", socket + f"qmgr: cannot connect to server  {reason}\n"
            return 33, "", socket + f"{command}: cannot connect to server (null) {reason}\n"
        attempt = (f"\nUnable to communicate with {server}({_SERVER_ADDRESS})\n"
                   f"Cannot connect to specified server host '{server}'.\n")
        if command == "qstat":
            return 111, "", (attempt * 3 + f"qstat: cannot connect to server {server} "
                             "(errno=111) Connection refused\n"
                             "qstat: Error (111 - Connection refused) \n")
        if command == "pbsnodes":
            return 1, "", (attempt + f"pbsnodes: cannot connect to server {server}, "
                           "error=111 (Connection refused)\n")
        if command == "qmgr":
            return 3, "", (attempt + "qmgr: cannot connect to server  (errno=111) "
                           "Connection refused\n")
        return 111, "", (attempt + f"{command}: cannot connect to server {server} (errno=111) "
                         "Connection refused\n")


# --- pure helpers --------------------------------------------------------------------------

class QsubUsageError(ValueError):
    """qsub prints its usage and submits nothing."""


def parse_qsub_options(args: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """qsub's options, as (letter, value) pairs, and its operands, read as glibc getopt()
    reads them with GETOPT_ARGS: options may follow the script name (getopt permutes),
    flags group, a value is attached or the next word, `--` ends the options, and a
    `--word` is the `-` option qsub refuses. tests/qsub_grammar.py holds the cases the
    submit filter is held to as well. Raises QsubUsageError where qsub prints its usage."""
    options: list[tuple[str, str]] = []
    operands: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            operands.extend(args[index:])
            break
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            continue
        position = 1
        while position < len(arg):
            letter = arg[position]
            position += 1
            spec = _QSUB_GETOPT_ARGS.find(letter)
            if letter == ":" or spec < 0:
                raise QsubUsageError(f"invalid option -- '{letter}'")
            if _QSUB_GETOPT_ARGS[spec + 1:spec + 2] != ":":
                options.append((letter, ""))
                continue
            if position < len(arg):
                value = arg[position:]
            elif index < len(args):
                value = args[index]
                index += 1
            else:
                raise QsubUsageError(f"option requires an argument -- '{letter}'")
            if letter == "-":
                raise QsubUsageError("a single - is not a valid option")
            options.append((letter, value))
            break
    return options, operands


def script_file_refusal(args: Sequence[str]) -> str | None:
    """What qsub prints when it refuses the script file its arguments name, before it
    parses its options or runs a submit filter; None when it takes the file (or there is
    none, or it cannot be read: qsub words that later). A script on stdin is not checked.

    get_script() first wants the first 50 bytes to be text (istext), then no line that
    ends in CR LF (isWindowsFormat)."""
    operand = _script_operand(args)
    if operand is None:
        return None
    try:
        script = Path(operand).read_bytes()
    except OSError:
        return None
    if not set(script[:_ASCII_CHECKED_BYTES]) <= _TEXT_BYTES:
        return _SCRIPT_NOT_ASCII
    if any(_is_dos_line(line) for line in _fgets_lines(script, _LINE_BUFFER)):
        return _SCRIPT_IN_DOS_FORMAT
    return None


def _script_operand(args: Sequence[str]) -> str | None:
    """find_job_script_index(): the first word that is neither an option nor the value
    of the option before it (a two-character option whose letter takes one)."""
    takes_value = False
    for word in args:
        if takes_value:
            takes_value = False
        elif not word.startswith("-"):
            return word
        elif word[1:2] != "I" and f"{word[1:2]}:" in _QSUB_GETOPT_ARGS:
            takes_value = len(word) <= 2
    return None


def _fgets_lines(data: bytes, size: int) -> Iterator[bytes]:
    """`data` as fgets() with a buffer of `size` reads it: up to a newline or size-1 bytes."""
    start = 0
    while start < len(data):
        newline = data.find(b"\n", start, start + size - 1)
        end = newline + 1 if newline >= 0 else min(start + size - 1, len(data))
        yield data[start:end]
        start = end


def _is_dos_line(line: bytes) -> bool:
    """isWindowsFormat()'s test: the byte before the last (as strlen counts) is a CR."""
    text = line.partition(b"\0")[0]
    return len(text) >= 2 and text[-2:-1] == b"\r"


def _state_from_plain(data: Mapping[str, Any]) -> _State:
    """Inverse of TorqueEmulator.to_state(): JSON turned tuples into lists and int keys
    into strings."""
    values = dict(data)
    queues, nodes, moms = values.pop("queues"), values.pop("nodes"), values.pop("moms")
    jobs, events = values.pop("jobs"), values.pop("events")
    state = _State(**values)
    state.queues = {name: _Queue(**queue) for name, queue in queues.items()}
    state.nodes = {name: _NodeEntry(**{**node, "slots": {int(core): job_id for core, job_id
                                                         in node["slots"].items()}})
                   for name, node in nodes.items()}
    state.moms = {name: _Mom(**mom) for name, mom in moms.items()}
    state.jobs = {job_id: _JobEntry(**{**job, "exec_slots": [
        (host, list(cores)) for host, cores in job["exec_slots"]]})
        for job_id, job in jobs.items()}
    state.events = [tuple(event) for event in events]     # a saved heap is still a heap
    # The free cores left by the last cycle are derived and not saved: recompute them.
    state.sched_dirty = True
    return state

def _epoch(moment: datetime) -> float:
    return moment.timestamp()


def _datetime(epoch: float) -> datetime:
    return _EPOCH + timedelta(seconds=epoch)


def _int(epoch: float) -> str:
    return str(int(epoch))


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _hms(seconds: float) -> str:
    whole = max(int(seconds), 0)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _is_true(text: str) -> bool:
    return text.strip().lower() in _TRUE_WORDS


def _boolean_text(value: str, kind: str, name: str) -> str:
    word = value.strip().lower()
    if word in _TRUE_WORDS:
        return "True"
    if word in _FALSE_WORDS:
        return "False"
    obj = "" if kind == "server" else name
    raise _QmgrError(f"qmgr obj={obj} svr=default: Illegal attribute or resource value for\n")


def _event_fields(event: tuple[float, int, int, str, int]) -> tuple[float, int, str, int]:
    when, kind, _, key, serial = event
    return when, kind, key, serial


def _element(tag: str, value: str | list[tuple[str, str]]) -> str:
    if isinstance(value, list):
        inner = "".join(_element(child, text) for child, text in value)
    else:
        # Every other byte goes out raw, control bytes included (51_).
        inner = escape(value, _QUOTES_ESCAPED)
    return f"<{tag}>{inner}</{tag}>"


def _unsupported(what: str) -> tuple[int, str, str]:
    return 2, "", f"torque emulator: not emulated: {what}\n"


def _check_job_name(name: str) -> str | None:
    if not name or any(character.isspace() for character in name):
        return f"[qsub: illegal -N value]\n{_QSUB_USAGE}\n"
    return None


def _check_array(text: str) -> str | None:
    try:
        nodespec.parse_array_spec(text)
    except nodespec.RequestError:
        return f"[qsub: illegal -t value]\n{_QSUB_USAGE}\n"
    return None


def _array_indices(text: str) -> list[int]:
    ranges = text.partition("%")[0]
    indices: list[int] = []
    for token in ranges.split(","):
        start, dash, end = token.strip().partition("-")
        indices.extend(range(int(start), int(end if dash else start) + 1))
    return sorted(indices)


def _normalize_resource(key: str, value: str) -> str:
    """A resource value as pbs_server stores it: times as HH:MM:SS, sizes with a unit."""
    value = value.strip()
    if key in _TIME_RESOURCES:
        return _hms(nodespec.parse_walltime(value))
    if key in _SIZE_RESOURCES:
        match = _SIZE.fullmatch(value)
        if match is None:
            raise nodespec.RequestError(f"{key}={value!r} is not a size")
        digits, prefix, unit = match.groups()
        return f"{int(digits)}{prefix.lower()}{(unit or 'b').lower()}"
    return value


def _walltime_seconds(resources: Mapping[str, str]) -> int | None:
    text = resources.get("walltime")
    return nodespec.parse_walltime(text) if text else None


def _node_count(spec: str) -> int:
    try:
        return sum(part.count for part in nodespec.parse_nodes_spec(spec))
    except nodespec.RequestError:
        return 1


def _with_queue_defaults(requested: Mapping[str, str],
                         queue: _Queue) -> tuple[dict[str, str], list[str]]:
    """Resource_List in pbs_server's order: the request, nodect/neednodes derived from
    nodes, then the queue's defaults for what is missing (10_, 15_, 42_). procs and ncpus
    jobs get no node defaults; a neednodes default only applies without a nodes spec."""
    resources = dict(requested)
    if "nodes" in resources:
        resources["nodect"] = str(_node_count(resources["nodes"]))
        resources.setdefault("neednodes", resources["nodes"])
    defaulted = []
    node_free = "procs" in resources or "ncpus" in resources
    for attribute, value in queue.attributes.items():
        prefix, _, key = attribute.partition(".")
        if prefix != "resources_default" or key in resources:
            continue
        if node_free and key in ("nodes", "neednodes", "nodect"):
            continue
        resources[key] = value
        defaulted.append(key)
        if key == "nodes":
            resources["nodect"] = str(_node_count(value))
            resources.setdefault("neednodes", value)
    return resources, defaulted


def _parse_parts(spec: str) -> tuple[Chunk, ...] | None:
    try:
        return nodespec.parse_nodes_spec(spec)
    except nodespec.RequestError:
        return None


def _fits(part: Chunk, offered: set[str], cores: int) -> bool:
    wanted = set(part.properties) | ({part.hostname} if part.hostname else set())
    return wanted <= offered and part.gpus == 0 and cores >= part.cores


def _take_anywhere(free: dict[str, list[int]], count: int) -> list[tuple[str, list[int]]]:
    if count < 1 or sum(len(cores) for cores in free.values()) < count:
        return []
    taken = []
    for name, cores in free.items():
        if count <= 0:
            break
        share = cores[:count]
        if share:
            taken.append((name, share))
            del cores[:len(share)]
            count -= len(share)
    return taken


def _core_ranges(cores: Sequence[int]) -> list[str]:
    runs: list[list[int]] = []
    for core in sorted(cores):
        if runs and core == runs[-1][1] + 1:
            runs[-1][1] = core
        else:
            runs.append([core, core])
    return [f"{first}-{last}" if last != first else f"{first}" for first, last in runs]


def _exec_host(placement: Sequence[tuple[str, list[int]]]) -> str:
    """`vm/0-1+cn01/0`: each host with its cores, as pbs_server writes exec_host."""
    return "+".join(f"{name}/{','.join(_core_ranges(cores))}" for name, cores in placement)


def _node_jobs(slots: Mapping[int, str]) -> str:
    """`0-1/1.vm,2/5.vm`: runs of cores held by one job, in core order (14_, 31_)."""
    entries: list[str] = []
    run: list[int] = []
    for core in sorted(slots):
        if run and (core != run[-1] + 1 or slots[core] != slots[run[-1]]):
            entries.append(f"{_core_ranges(run)[0]}/{slots[run[-1]]}")
            run = []
        run.append(core)
    if run:
        entries.append(f"{_core_ranges(run)[0]}/{slots[run[-1]]}")
    return ",".join(entries)


def _wrap_status(status: str) -> str:
    """`qmgr list node` folds status at column 80 under a 17-column indent (05b_)."""
    indent = 17
    lines: list[str] = []
    line = ""
    items = status.split(",")
    for index, item in enumerate(items):
        piece = item + ("," if index < len(items) - 1 else "")
        if line and indent + len(line) + len(piece) > _WRAP_COLUMN:
            lines.append(line)
            line = ""
        line += piece
    lines.append(line)
    return ("\n" + " " * indent).join(lines)


def _print_list(prefix: str, values: Sequence[str]) -> str:
    return "".join(f"{prefix} {'=' if index == 0 else '+='} {value}\n"
                   for index, value in enumerate(values))


def _list_type_matches(list_type: str | None, state: str) -> bool:
    """pbsnodes -l filters (pbsnodes.c filterbystate)."""
    if list_type is None:
        return any(word in state for word in ("down", "offline", "state-unknown"))
    if list_type == "all":
        return True
    if list_type == "active":
        return any(word in state for word in ("busy", "job-exclusive", "job-sharing"))
    if list_type == "up":
        return not any(word in state for word in ("down", "offline", "state-unknown"))
    if list_type == "down":
        return "down" in state or "state-unknown" in state
    return list_type in state


def _state_count(counts: Mapping[str, int]) -> str:
    return (f"Transit:0 Queued:{counts['Q']} Held:{counts['H']} Waiting:0 "
            f"Running:{counts['R']} Exiting:0 Complete:{counts['C']} ")


def _setter(node: _NodeEntry, name: str, value: object) -> Callable[[], None]:
    return lambda: setattr(node, name, value)


def _property_change(node: _NodeEntry, operator: str, words: list[str]) -> Callable[[], None]:
    def change() -> None:
        if operator == "=":
            node.properties = list(dict.fromkeys(words))
        elif operator == "+=":
            node.properties += [word for word in words if word not in node.properties]
        else:
            node.properties = [word for word in node.properties if word not in words]
    return change


def _state_change(node: _NodeEntry, operator: str, flags: set[str]) -> Callable[[], None]:
    """qmgr `set node X state`: it overwrites down, unlike pbsnodes -o (09_)."""
    def change() -> None:
        wanted = flags - {"free"}
        if operator == "=":
            node.down, node.offline = "down" in wanted, "offline" in wanted
        elif operator == "+=":
            node.down = node.down or "down" in wanted
            node.offline = node.offline or "offline" in wanted
        else:
            node.down = node.down and "down" not in wanted
            node.offline = node.offline and "offline" not in wanted
    return change


def _script_directives(script: str, prefix: str) -> list[tuple[str, str]]:
    """`#PBS` options of a job script, read up to its first command line, in order."""
    options: list[tuple[str, str]] = []
    for line in script.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        if stripped.startswith(prefix):
            words = shlex.split(stripped[len(prefix):], comments=True)
            found, _ = parse_qsub_options(words)
            options.extend(found)
    return options


def _parse_qmgr(text: str) -> _QmgrCommand:
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

    def syntax(problem: str) -> _QmgrError:
        return _QmgrError(f"qmgr: Syntax error - {problem}\n{text}\n{' ' * position}^\n")

    verb_word = word()
    verb = _abbreviation(verb_word.lower(), _QMGR_VERBS)
    if verb is None:
        raise _QmgrError(f"qmgr: Illegal operation: {verb_word}\n"
                         "Try 'help' if you are having trouble.\n", status=1)
    object_word = word()
    kind = _abbreviation(object_word.lower(), _QMGR_OBJECTS)
    if kind is None:
        raise _QmgrError(f"qmgr: Illegal object type: {object_word}.\n", status=1)
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
    return _QmgrCommand(verb=verb, kind=kind, name=name, attributes=tuple(attributes))


def _next_is_operator(text: str, position: int) -> bool:
    rest = text[position:].lstrip(" \t")
    return rest.startswith(("=", "+=", "-="))


def _abbreviation(word: str, choices: Sequence[str]) -> str | None:
    """qmgr accepts any prefix of a verb or object name: `p s`, `c n`, `l q`."""
    if not word:
        return None
    matches = [choice for choice in choices if choice.startswith(word)]
    return matches[0] if matches else None
