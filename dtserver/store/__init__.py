"""The Store: what dynamictorque remembers between passes and across crashes.

The API writes hints and intents; the reconciler owns node records, pool health, plans
and the pool catalogue. `SqliteStore` (sqlite.py) is the implementation; the interface
keeps PostgreSQL possible.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Protocol

from dtserver.model import (
    DtError, ErrorKind, Flavor, Intent, IntentKind, IntentStatus, NodeRecord, PoolHealth)


class StoreError(DtError):
    """The store could not be read or written."""


class RecordNotFound(StoreError):
    pass


@dataclass(frozen=True)
class StoredHint:
    """A hint as the filter posted it (validated JSON); the reconciler parses the request."""

    id: int
    received: datetime
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Event:
    id: int
    time: datetime
    kind: str            # "launch", "join", "drain", "delete", "failure", "intent", ...
    message: str
    hostname: str | None = None
    pool: str | None = None
    error_kind: ErrorKind | None = None   # the class of a "failure" event


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
    dtserver.planning.demand.eligible_pools reads). Flavors carry no Nova id."""

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
    # node records --------------------------------------------------------------
    def insert_record(self, record: NodeRecord) -> None: ...

    def update_record(self, record_id: str, **changes: Any) -> NodeRecord:
        """Change fields of a record; raises RecordNotFound."""

    def record(self, record_id: str) -> NodeRecord: ...

    def records(self, *, include_deleted: bool = False) -> tuple[NodeRecord, ...]: ...

    # hints ---------------------------------------------------------------------
    def add_hint(self, received: datetime, payload: Mapping[str, Any]) -> int: ...

    def hints(self) -> tuple[StoredHint, ...]: ...

    def delete_hints(self, hint_ids: list[int]) -> None: ...

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
    def add_event(self, time: datetime, kind: str, message: str, *,
                  hostname: str | None = None, pool: str | None = None,
                  error_kind: ErrorKind | None = None) -> None: ...

    def events(self, limit: int = 50) -> tuple[Event, ...]:
        """Newest first."""

    def save_plan(self, time: datetime, plan: Mapping[str, Any]) -> None:
        """The last plan as JSON-ready data (for /v1/plan and `dtadmin why`)."""

    def last_plan(self) -> tuple[datetime, Mapping[str, Any]] | None: ...

    def save_pass(self, report: PassReport) -> None: ...

    def last_pass(self) -> PassReport | None: ...

    # pool catalogue ------------------------------------------------------------
    def save_pool_catalogue(self, written: datetime, catalogue: PoolCatalogue) -> None:
        """Replace the published catalogue; `written` is when the reconciler published it."""

    def pool_catalogue(self) -> tuple[datetime, PoolCatalogue] | None:
        """The latest catalogue and when it was written; None before the first."""
