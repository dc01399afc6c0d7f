"""The Store: what dynamictorque remembers between passes and across crashes.

The API writes hints and intents; the reconciler owns node records, pool health, plans
and the pool catalogue. `SqliteStore` (sqlite.py) is the implementation; the interface
keeps PostgreSQL possible.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Protocol

from dtserver.actions import Action, JobVerdict, Plan
from dtserver.model import (
    DrainKind, DtError, ErrorKind, Flavor, HintStrikes, Intent, IntentKind, IntentStatus,
    NodeRecord, NodeState, PoolHealth)


class StoreError(DtError):
    """The store could not be read or written."""


class RecordNotFound(StoreError):
    pass


class HintLimitReached(DtError):
    """A hint beyond what one user, or everybody, may have stored: nothing was written."""


@dataclass(frozen=True)
class HintLimits:
    """How many hints, and how many bytes of them, may wait in the store: per claimed user
    and in total. Matched or expired hints leave within a pass or a hint TTL, so a user
    submitting normally never comes near these."""

    per_user: int = 200
    bytes_per_user: int = 1024 * 1024
    total: int = 10_000
    bytes_total: int = 32 * 1024 * 1024


@dataclass(frozen=True)
class StoredHint:
    """A hint as the filter posted it (validated JSON); the reconciler parses the request."""

    id: int
    received: datetime
    payload: Mapping[str, Any]
    source: str | None = None        # the client address it was posted from


class EventKind(enum.StrEnum):
    """What an event records; the same strings go to SQLite and JSON."""

    LAUNCH = "launch"
    JOIN = "join"
    ENTRY = "entry"          # the instance was told its node entry is ready
    READY = "ready"          # the mom reported: the node takes jobs
    DRAIN = "drain"
    CLEAR = "clear"
    DELETE = "delete"        # the instance delete was sent
    DELETED = "deleted"
    FAILURE = "failure"
    INTENT = "intent"
    SLEEP = "sleep"
    WAKE = "wake"
    FOREIGN = "foreign"      # instances of another installation share the project


class Keep(enum.Enum):
    """The default of every field of Store.update_record: leave it as it is (None is a
    value some fields take)."""

    KEEP = "keep"


KEEP = Keep.KEEP


def given(**fields: object) -> dict[str, object]:
    """The fields of an update_record call that change something."""
    return {name: value for name, value in fields.items() if value is not KEEP}


@dataclass(frozen=True)
class Event:
    id: int
    time: datetime
    kind: EventKind
    message: str
    hostname: str | None = None
    pool: str | None = None
    error_kind: ErrorKind | None = None   # the class of a "failure" event


@dataclass(frozen=True)
class StoredPlan:
    """The last plan as the API shows it (/v1/plan, /status, /metrics, `dtadmin why`), dated
    by the last pass that planned the same."""

    time: datetime
    actions: tuple[Action, ...]
    verdicts: tuple[JobVerdict, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class PassReport:
    """The outcome of the last reconciler pass, for /status and /healthz."""

    time: datetime
    duration_seconds: float
    ok: bool
    summary: Mapping[str, Any]


@dataclass(frozen=True)
class CataloguePool:
    """What the API needs of a pool to tell that a job could never run there (the fields
    dtserver.planning.eligibility.eligible_pools reads). Flavors carry no Nova id."""

    name: str
    flavors: tuple[Flavor, ...]
    max_nodes: int
    max_cores: int | None = None
    properties: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()      # empty: any monitored queue
    accounts: frozenset[str] = frozenset()    # empty: any account


@dataclass(frozen=True)
class PoolCatalogue:
    """The pools the reconciler runs with, published for the API's hint verdicts: flavor
    sizes come from Nova, which only the reconciler reads."""

    pools: tuple[CataloguePool, ...]
    queues: frozenset[str] = frozenset()      # monitored queues; empty: all
    max_cores: int | None = None              # across all pools


class Store(Protocol):
    # meta ----------------------------------------------------------------------
    def installation_id(self) -> str:
        """A random id made with the store and kept for its life: which instances in a
        shared cloud project are this installation's (dtserver.cloud.nova)."""

    # node records --------------------------------------------------------------
    def insert_record(self, record: NodeRecord) -> None: ...

    def update_record(self, record_id: str, *, state: NodeState | Keep = KEEP,
                      state_since: datetime | Keep = KEEP, reason: str | Keep = KEEP,
                      instance_id: str | Keep = KEEP, address: str | Keep = KEEP,
                      drain: DrainKind | None | Keep = KEEP,
                      down_since: datetime | None | Keep = KEEP,
                      prewarm: bool | Keep = KEEP) -> NodeRecord:
        """Change fields of a record; raises RecordNotFound."""

    def record(self, record_id: str) -> NodeRecord: ...

    def records(self, *, include_deleted: bool = False) -> tuple[NodeRecord, ...]: ...

    # hints ---------------------------------------------------------------------
    def add_hint(self, received: datetime, payload: Mapping[str, Any], *,
                 source: str | None = None, limits: HintLimits | None = None) -> int:
        """Store a hint; HintLimitReached, with nothing written, beyond `limits`."""

    def hints(self, *, after_id: int = 0) -> tuple[StoredHint, ...]:
        """Oldest first; only those with an id above `after_id`."""

    def hint_ids(self) -> frozenset[int]: ...

    def delete_hints(self, hint_ids: list[int]) -> None: ...

    def add_hint_strike(self, user: str, source: str | None, at: datetime, *,
                        forget_before: datetime) -> None:
        """Remember that a hint of `user` posted from `source` expired unmatched; strikes
        older than `forget_before` are dropped."""

    def hint_strikes(self, since: datetime) -> HintStrikes:
        """Strikes since `since`, counted by user and by source."""

    # intents -------------------------------------------------------------------
    def add_intent(self, kind: IntentKind, target: str | None, now: datetime) -> Intent: ...

    def intent(self, intent_id: int) -> Intent: ...

    def intents(self, *, pending_only: bool = False, limit: int = 100) -> tuple[Intent, ...]: ...

    def complete_intent(self, intent_id: int, status: IntentStatus, message: str,
                        now: datetime) -> None: ...

    # flags, pool health --------------------------------------------------------
    def set_sleeping(self, sleeping: bool, now: datetime) -> None: ...

    def is_sleeping(self) -> bool: ...

    def pool_health(self) -> dict[str, PoolHealth]: ...

    def save_pool_health(self, health: PoolHealth) -> None: ...

    # history -------------------------------------------------------------------
    def add_event(self, time: datetime, kind: EventKind, message: str, *,
                  hostname: str | None = None, pool: str | None = None,
                  error_kind: ErrorKind | None = None) -> None: ...

    def events(self, limit: int = 50) -> tuple[Event, ...]:
        """Newest first."""

    def save_plan(self, time: datetime, plan: Plan) -> None:
        """Keep what the API shows of `plan` (StoredPlan), in place of the last one."""

    def touch_plan(self, time: datetime) -> None:
        """The last plan is still the plan at `time` (a pass that changed nothing need not
        write it again: on a deep queue it is megabytes)."""

    def last_plan(self) -> StoredPlan | None: ...

    def save_pass(self, report: PassReport) -> None: ...

    def last_pass(self) -> PassReport | None: ...

    # pool catalogue ------------------------------------------------------------
    def save_pool_catalogue(self, written: datetime, catalogue: PoolCatalogue) -> None:
        """Replace the published catalogue; `written` is when the reconciler published it."""

    def pool_catalogue(self) -> tuple[datetime, PoolCatalogue] | None:
        """The latest catalogue and when it was written; None before the first."""

    # health --------------------------------------------------------------------
    def check(self) -> None:
        """Raise StoreError unless the store is there and answers (GET /healthz)."""
