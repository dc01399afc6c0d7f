"""The emulated server's state as plain values, and the values the emulator hands out.

Plain values only (numbers, strings, lists, dicts in dataclasses), so that
TorqueEmulator.to_state() and state_from_plain() can save and restore a server as JSON
(persistence.py keeps it in a file shared by the CLI executables).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from dtserver import nodespec
from dtserver.model import DtError

PBS_VERSION = "6.1.3.h5"
RUNTIME_VARIABLE = "DT_EMULATOR_RUNTIME"
DEFAULT_RUNTIME = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MOM_SERVICE_PORT = 15002
_MOM_MANAGER_PORT = 15003
EXIT_DELETED = 271          # qdel of a running job (30_)
# Event kinds, in the order they are handled when due at the same instant.
HIERARCHY, REPORT, MARK_DOWN, JOB_END, PURGE, CYCLE = range(6)
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})


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


@dataclass(slots=True)
class Mom:
    """A pbs_mom process (a worker VM). It exists whether or not its node entry does."""

    hostname: str
    ncpus: int
    mem_mb: int
    up: bool
    up_since: float
    down_since: float | None = None


@dataclass(slots=True)
class NodeEntry:
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
        NodeEdits.count += 1


class NodeEdits:
    """Changes to any node entry of any emulator in this process: a reader that sees the
    same count and the same number of entries knows that no entry changed."""

    count = 0


@dataclass(slots=True)
class JobEntry:
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
class QueueEntry:
    name: str
    created: float
    attributes: dict[str, str]


@dataclass(slots=True)
class ServerState:
    now: float
    attributes: dict[str, str]
    queues: dict[str, QueueEntry] = field(default_factory=dict)
    nodes: dict[str, NodeEntry] = field(default_factory=dict)
    moms: dict[str, Mom] = field(default_factory=dict)
    jobs: dict[str, JobEntry] = field(default_factory=dict)
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
class Submission:
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


def state_from_plain(data: Mapping[str, Any]) -> ServerState:
    """Inverse of TorqueEmulator.to_state(): JSON turned tuples into lists and int keys
    into strings."""
    values = dict(data)
    queues, nodes, moms = values.pop("queues"), values.pop("nodes"), values.pop("moms")
    jobs, events = values.pop("jobs"), values.pop("events")
    state = ServerState(**values)
    state.queues = {name: QueueEntry(**queue) for name, queue in queues.items()}
    state.nodes = {name: NodeEntry(**{**node, "slots": {int(core): job_id for core, job_id
                                                        in node["slots"].items()}})
                   for name, node in nodes.items()}
    state.moms = {name: Mom(**mom) for name, mom in moms.items()}
    state.jobs = {job_id: JobEntry(**{**job, "exec_slots": [
        (host, list(cores)) for host, cores in job["exec_slots"]]})
        for job_id, job in jobs.items()}
    state.events = [tuple(event) for event in events]     # a saved heap is still a heap
    # The free cores left by the last cycle are derived and not saved: recompute them.
    state.sched_dirty = True
    return state


def epoch_seconds(moment: datetime) -> float:
    return moment.timestamp()


def utc_datetime(epoch: float) -> datetime:
    return _EPOCH + timedelta(seconds=epoch)


def epoch_text(epoch: float) -> str:
    return str(int(epoch))


def number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def hms(seconds: float) -> str:
    whole = max(int(seconds), 0)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def is_true(text: str) -> bool:
    return text.strip().lower() in TRUE_WORDS


def event_fields(event: tuple[float, int, int, str, int]) -> tuple[float, int, str, int]:
    when, kind, _, key, serial = event
    return when, kind, key, serial


def walltime_seconds(resources: Mapping[str, str]) -> int | None:
    text = resources.get("walltime")
    return nodespec.parse_walltime(text) if text else None
