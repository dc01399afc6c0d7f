"""The shared vocabulary: frozen values that cross every boundary.

Job and Node are what TORQUE says; Instance is what Nova says; NodeRecord is what we
own and remember. Nothing here does I/O.
"""
from __future__ import annotations

import enum
import statistics
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Mapping


class DtError(Exception):
    """Base of every error dynamictorque raises on purpose."""


class NodeState(enum.StrEnum):
    """Lifecycle of a node the scaler owns; the same strings go to SQLite and JSON."""

    LAUNCHING = "launching"    # record written, servers.create sent or about to be
    BOOTING = "booting"        # Nova has the instance; not yet a TORQUE node
    REGISTERED = "registered"  # node entry bound to the instance; mom has not reported yet
    IDLE = "idle"
    BUSY = "busy"
    OFFLINE = "offline"        # draining: pbsnodes -o, no new jobs
    DELETING = "deleting"      # node released, instance delete sent
    DELETED = "deleted"
    FAILED = "failed"          # boot timeout, ERROR, never joined, down too long
    UNKNOWN = "unknown"        # never treated as idle


LIVE_STATES = frozenset(NodeState) - {NodeState.DELETED}
# States in which the instance is still coming and counts as capacity for planning.
UPCOMING_STATES = frozenset({NodeState.LAUNCHING, NodeState.BOOTING, NodeState.REGISTERED})


class DrainKind(enum.StrEnum):
    """Why a node was taken offline; decides whether a late job clears it again."""

    IDLE = "idle"      # idle timeout: a job that slipped in brings it back to busy
    ADMIN = "admin"    # dtadmin kill / drain-all: wait for jobs, then delete
    REPAIR = "repair"  # down too long or failed: delete once empty


class JobState(enum.StrEnum):
    """TORQUE job_state letters."""

    QUEUED = "Q"
    RUNNING = "R"
    HELD = "H"
    WAITING = "W"
    EXITING = "E"
    COMPLETED = "C"
    TRANSIT = "T"
    SUSPENDED = "S"
    # Ours, not TORQUE's: qstat listed the job but its entry could not be read. It may be
    # running, so the hosts it names stay busy; it is never demand.
    UNKNOWN = "?"


class ErrorKind(enum.StrEnum):
    """Error classes that drive per-pool backoff (as cluster-autoscaler's error classes)."""

    CAPACITY = "capacity"    # quota exceeded, NoValidHost
    AUTH = "auth"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    CONFLICT = "conflict"
    TRANSIENT = "transient"  # 5xx, timeouts, connection errors
    BOOT = "boot"            # ERROR status, boot timeout, never joined
    OTHER = "other"


# --- resource requests (produced by nodespec, the one parser) -------------------------

@dataclass(frozen=True)
class Chunk:
    """`count` alike node-slices of a request: `nodes=2:ppn=4` is Chunk(count=2, cores=4)."""

    count: int
    cores: int = 1
    mem_mb: int = 0                        # per node-slice; 0 = not requested
    gpus: int = 0
    properties: frozenset[str] = frozenset()
    hostname: str | None = None            # nodes=HOST pins to one node
    distinct: bool = True                  # slices must land on different nodes


@dataclass(frozen=True)
class ArraySpec:
    """`-t 1-10%2`: `size` subjobs, at most `slot_limit` running at once (None = no limit)."""

    size: int
    slot_limit: int | None = None


@dataclass(frozen=True)
class Request:
    chunks: tuple[Chunk, ...]
    walltime_seconds: int | None = None
    array: ArraySpec | None = None

    @property
    def cores(self) -> int:
        return sum(chunk.count * chunk.cores for chunk in self.chunks)

    @property
    def node_slices(self) -> int:
        return sum(chunk.count for chunk in self.chunks)


# --- TORQUE side ----------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    id: str                                  # "12.vm", "14[2].vm"
    owner: str                               # user name without @host
    queue: str
    state: JobState
    created: datetime                        # ctime
    request: Request | None                  # None when request_error says why
    resources: Mapping[str, str] = field(default_factory=dict)  # raw Resource_List
    account: str | None = None
    exec_hosts: tuple[str, ...] = ()         # hostnames from exec_host, in order
    hold_types: str = "n"
    depend: str | None = None
    comment: str | None = None
    request_error: str | None = None
    started: datetime | None = None          # start_time, while it runs

    @property
    def expected_end(self) -> datetime | None:
        """When a running job ends at the latest: TORQUE kills it at its walltime."""
        if self.started is None or self.request is None \
                or self.request.walltime_seconds is None:
            return None
        return self.started + timedelta(seconds=self.request.walltime_seconds)


@dataclass(frozen=True)
class Node:
    """A TORQUE node as pbsnodes shows it."""

    name: str
    states: frozenset[str]                   # {"free"}, {"down", "offline"}, ...
    np: int
    properties: frozenset[str] = frozenset()
    jobs: tuple[str, ...] = ()               # job ids from <jobs>, deduplicated, in order
    used_cores: int = 0                      # cores the <jobs> core ranges occupy
    note: str | None = None
    has_reported: bool = False               # <status> present: a mom reported at least once
    ncpus: int | None = None                 # from status, when reported

    # Cached: the planner asks every node on every pass, and a node value is kept
    # across passes while it does not change.
    @cached_property
    def is_down(self) -> bool:
        return "down" in self.states

    @cached_property
    def is_offline(self) -> bool:
        return "offline" in self.states

    @cached_property
    def is_settling(self) -> bool:
        """A new entry the server has not yet announced to the moms: it refuses every state
        change (pbsnodes -o/-c) and every mom report until then (about 10 s)."""
        return "MOM-list-not-sent" in self.states

    @cached_property
    def is_ready(self) -> bool:
        """The mom reports and the server would schedule onto it (offline aside)."""
        return self.has_reported and not self.is_down and not (
            self.states & {"MOM-list-not-sent", "unknown"})


# --- Cloud side -----------------------------------------------------------------------

@dataclass(frozen=True)
class Flavor:
    name: str
    cores: int
    mem_mb: int
    gpus: int = 0
    id: str | None = None


# Instance metadata the reconciler sets once the instance's TORQUE node entry is usable;
# the worker user-data waits for it before starting pbs_mom (see actions.MarkEntryReady).
ENTRY_READY_KEY = "dynamictorque:entry"
ENTRY_READY = "ready"


def announces_entry(metadata: Mapping[str, str] | None) -> bool:
    return (metadata or {}).get(ENTRY_READY_KEY) == ENTRY_READY


@dataclass(frozen=True)
class Instance:
    id: str
    name: str
    status: str                               # Nova status: BUILD, ACTIVE, ERROR, ...
    created: datetime
    flavor_id: str | None = None
    addresses: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    zone: str | None = None
    fault: str | None = None
    pool: str | None = None                   # from ownership metadata
    record_id: str | None = None              # from ownership metadata

    @property
    def entry_announced(self) -> bool:
        return announces_entry(self.metadata)


@dataclass(frozen=True)
class InstanceSpec:
    """What the reconciler asks the cloud to boot; the adapter adds ownership tags."""

    name: str
    pool: str
    record_id: str
    flavor: str
    image: str
    zone: str | None = None
    key_name: str | None = None
    security_groups: tuple[str, ...] = ()
    network: str | None = None
    user_data: str | None = None


@dataclass(frozen=True)
class Quota:
    """What is still free in the pool's project; None fields mean unlimited."""

    cores: int | None = None
    instances: int | None = None
    ram_mb: int | None = None


# --- our own records --------------------------------------------------------------------

@dataclass(frozen=True)
class NodeRecord:
    """One node the scaler owns. Written before the external call it describes."""

    id: str                                  # idempotency key; also in instance metadata
    hostname: str                            # the node slot name
    pool: str
    flavor: str
    cores: int
    state: NodeState
    created: datetime
    state_since: datetime
    instance_id: str | None = None
    address: str | None = None
    drain: DrainKind | None = None
    down_since: datetime | None = None
    reason: str = ""
    # Launched for hints alone and has run no job yet: hints only pre-warm, so such a node
    # is idle-released sooner (Policy.hints.idle_timeout).
    prewarm: bool = False


@dataclass(frozen=True)
class DemandHint:
    """Demand announced by the submit filter before qsub has a job id."""

    id: int
    received: datetime
    user: str
    queue: str | None
    request: Request
    account: str | None = None
    count: int = 1                           # array size (bounded by its slot limit)
    source: str | None = None                # the address it was posted from


@dataclass(frozen=True)
class HintStrikes:
    """Hints that expired before any job matched them, within the hint penalty window:
    counted by claimed user and by the address they were posted from."""

    by_user: Mapping[str, int] = field(default_factory=dict)
    by_source: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PoolHealth:
    pool: str
    consecutive_failures: int = 0
    backoff_until: datetime | None = None
    last_error: ErrorKind | None = None
    last_message: str = ""
    stopped: bool = False                    # too many boot failures: admin must reset


class IntentKind(enum.StrEnum):
    KILL = "kill"
    DRAIN_ALL = "drain-all"
    RESET_POOL = "reset-pool"


class IntentStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"


@dataclass(frozen=True)
class Intent:
    id: int
    kind: IntentKind
    created: datetime
    target: str | None = None
    status: IntentStatus = IntentStatus.PENDING
    message: str = ""
    finished: datetime | None = None


@dataclass(frozen=True)
class NodeEvent:
    """Something an operator's event command may want to hear about."""

    name: str        # post_vm_provision | post_add_node | post_remove_node | post_vm_destroy
                     # | boot_failed | capacity_error
    hostname: str
    address: str = ""
    record_id: str = ""
    pool: str = ""
    reason: str = ""


@dataclass(frozen=True)
class RecentDemand:
    """What arrived lately and how long boots took: demand-following idle time predicts
    from it whether an idle node will be wanted again within a boot. Kept in memory by the
    reconciler since `since`; nothing is known of the time before it."""

    since: datetime
    arrivals: tuple[Job, ...] = ()            # by ctime, oldest first
    boot_seconds: tuple[float, ...] = ()      # servers.create to ready, latest last

    def boot_time(self, estimate: timedelta) -> timedelta:
        """The median of the boots seen, or `estimate` before the first."""
        if not self.boot_seconds:
            return estimate
        return timedelta(seconds=statistics.median(self.boot_seconds))


@dataclass(frozen=True)
class Snapshot:
    """One coherent view for one pass. None means "could not be read": unknown, not empty."""

    jobs: tuple[Job, ...] | None
    nodes: tuple[Node, ...] | None
    instances: tuple[Instance, ...] | None
    records: tuple[NodeRecord, ...] = ()
    hints: tuple[DemandHint, ...] = ()
    intents: tuple[Intent, ...] = ()
    pool_health: Mapping[str, PoolHealth] = field(default_factory=dict)
    quotas: Mapping[str, Quota] = field(default_factory=dict)   # by cloud project
    sleeping: bool = False
    hint_strikes: HintStrikes = HintStrikes()
    recent: RecentDemand | None = None        # None: not kept; idle time is max_idle_time

    # Indexes built once per pass for every planning step (read only).
    @cached_property
    def node_by_name(self) -> Mapping[str, Node] | None:
        """Each node with every job on it that pbsnodes or qstat names: a server that has
        just restarted, or a mom that has not reported a job yet, can leave a running job
        out of one of the two, and a node with a job must never look idle."""
        if self.nodes is None:
            return None
        running: dict[str, list[str]] = {}
        for job in self.jobs or ():
            if job.state in (JobState.RUNNING, JobState.EXITING, JobState.SUSPENDED,
                             JobState.UNKNOWN):
                for host in dict.fromkeys(job.exec_hosts):
                    running.setdefault(host, []).append(job.id)
        by_name = {}
        for node in self.nodes:
            missing = [job for job in running.get(node.name, ()) if job not in node.jobs]
            by_name[node.name] = replace(node, jobs=node.jobs + tuple(missing)) if missing \
                else node
        return by_name

    @cached_property
    def instance_by_id(self) -> Mapping[str, Instance] | None:
        return (None if self.instances is None
                else {instance.id: instance for instance in self.instances})

    @cached_property
    def instance_by_record(self) -> Mapping[str, Instance]:
        return {instance.record_id: instance for instance in self.instances or ()
                if instance.record_id}
