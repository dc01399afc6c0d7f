"""Actions are values: what the planner decided, for the reconciler to apply."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from dtserver.model import DrainKind, ErrorKind, IntentStatus, NodeState


@dataclass(frozen=True)
class RegisterSlot:
    """Create a missing node slot in TORQUE: offline with a note until an instance takes it."""

    hostname: str
    pool: str
    np: int
    properties: frozenset[str]
    reason: str = "node slot missing"


@dataclass(frozen=True)
class LaunchInstance:
    """Write a launching record, then boot one instance into the node slot `hostname`."""

    hostname: str
    pool: str
    flavor: str
    cores: int
    reason: str
    group: str = ""        # nodes of one multi-node job share a group
    prewarm: bool = False  # only hints want it: no queued job is behind it yet


@dataclass(frozen=True)
class AdoptInstance:
    """A launching record whose servers.create reached Nova before a crash."""

    record_id: str
    instance_id: str
    reason: str = "instance found by record id"


@dataclass(frozen=True)
class JoinNode:
    """Bind the slot name to the instance address and bring the node entry online."""

    record_id: str
    hostname: str
    address: str
    np: int
    properties: frozenset[str]
    reason: str = "instance active"


@dataclass(frozen=True)
class MarkEntryReady:
    """Tell the instance (Nova metadata) that its node entry is ready: the worker user-data
    starts pbs_mom only then, because a mom that reports before its entry is usable is
    refused and reports again only at its status interval (45 s)."""

    record_id: str
    instance_id: str
    hostname: str
    reason: str = "node entry settled"


@dataclass(frozen=True)
class PokeScheduler:
    """pbs_sched ignores nodes turning free; `set server scheduling = True` starts a cycle."""

    reason: str


@dataclass(frozen=True)
class Transition:
    """A record changes state; no external call."""

    record_id: str
    state: NodeState
    reason: str
    failure: ErrorKind | None = None     # set when the transition is a boot failure


@dataclass(frozen=True)
class MarkDown:
    """Start (since=datetime) or stop (since=None) the down timer of a record."""

    record_id: str
    since: datetime | None


@dataclass(frozen=True)
class OfflineNode:
    record_id: str
    hostname: str
    drain: DrainKind
    reason: str


@dataclass(frozen=True)
class ClearNode:
    record_id: str
    hostname: str
    reason: str


@dataclass(frozen=True)
class ReleaseNode:
    """Return the node entry to an empty slot; the adapter re-checks that no job runs."""

    record_id: str
    hostname: str
    np: int
    properties: frozenset[str]
    reason: str


@dataclass(frozen=True)
class DeleteInstance:
    """Delete an owned instance; `record_id` is None for an orphan with no live record."""

    record_id: str | None
    instance_id: str
    reason: str


@dataclass(frozen=True)
class ExpireHint:
    hint_id: int
    reason: str
    # Set when it expired unmatched: a strike against its claimed user and its source.
    strike_user: str | None = None
    strike_source: str | None = None


@dataclass(frozen=True)
class CompleteIntent:
    intent_id: int
    status: IntentStatus
    message: str


@dataclass(frozen=True)
class SetSleeping:
    sleeping: bool
    reason: str


@dataclass(frozen=True)
class ResetPool:
    pool: str
    reason: str


Action = (RegisterSlot | LaunchInstance | AdoptInstance | JoinNode | MarkEntryReady
          | PokeScheduler | Transition | MarkDown | OfflineNode | ClearNode | ReleaseNode
          | DeleteInstance | ExpireHint | CompleteIntent | SetSleeping | ResetPool)


class VerdictStatus(enum.StrEnum):
    """Where a job stands (docs/api.md, GET /v1/jobs/ID/why)."""

    LAUNCHING = "launching"
    WAITING_BOOT = "waiting-boot"            # on nodes still joining
    WAITING_SCHEDULER = "waiting-scheduler"  # fits ready nodes now
    WAITING_JOB_END = "waiting-job-end"      # on busy nodes whose jobs end within a boot
    WAITING_CAPACITY = "waiting-capacity"    # a limit holds it
    UNSERVABLE = "unservable"                # no pool could ever run it
    NOT_ELIGIBLE = "not-eligible"            # not ours to serve: held, other queue, pinned...


@dataclass(frozen=True)
class JobVerdict:
    """Why a queued job is or is not being served; shown by `dtadmin why`."""

    job_id: str
    status: VerdictStatus
    reason: str
    pool: str | None = None
    cores: int | None = None   # cores the job requests; /metrics sums the queued demand
    hosts: tuple[str, ...] = ()   # waiting-scheduler: the nodes it fits on now


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    verdicts: tuple[JobVerdict, ...] = ()
    notes: tuple[str, ...] = ()
    # Look again this soon rather than at the next regular pass: node entries are settling
    # or moms are about to report, and the next step waits on that.
    revisit_after: timedelta | None = None
    # When the first time-based rule of the planner falls due if nothing else changes
    # (lifecycle timers, idle checks, the scheduler-stall poke, a busy node coming within a
    # boot of freeing while jobs wait); None: none is pending. The simulator wakes at it.
    next_due: datetime | None = None

    def of_type(self, kind: type) -> list:
        return [action for action in self.actions if isinstance(action, kind)]
