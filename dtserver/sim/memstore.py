"""MemoryStore: the Store protocol in plain dicts, for simulations.

A simulated year is hundreds of thousands of passes and nothing of it has to survive the
process, so the reconciler's memory can live in RAM. It behaves as SqliteStore does
(tests/sim/test_memstore.py runs both through the same calls); it keeps no history of
plans, passes and pool catalogues beyond the last one, and at most `max_events` events.
"""
from __future__ import annotations

import itertools
import json
import uuid
from collections import deque
from dataclasses import replace
from datetime import datetime
from typing import Any, Mapping

from dtserver.actions import Plan
from dtserver.model import (
    DrainKind, ErrorKind, HintStrikes, Intent, IntentKind, IntentStatus, NodeRecord, NodeState,
    PoolHealth)
from dtserver.store import (
    KEEP, Event, EventKind, HintLimitReached, HintLimits, Keep, PassReport, PoolCatalogue,
    RecordNotFound, StoredHint, StoredPlan, StoreError, given)

_EVERYONE = "\0"           # hint usage of all users: not a valid user name


class MemoryStore:
    def __init__(self, *, max_events: int = 1000) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, not {max_events}")
        self._records: dict[str, NodeRecord] = {}
        self._live: dict[str, NodeRecord] = {}       # records not DELETED
        self._hints: dict[int, StoredHint] = {}
        self._hint_bytes: dict[int, int] = {}
        self._hint_usage: dict[str, tuple[int, int]] = {}   # user -> count, bytes
        self._strikes: list[tuple[str, str | None, datetime]] = []
        self._intents: dict[int, Intent] = {}
        self._health: dict[str, PoolHealth] = {}
        self._events: deque[Event] = deque(maxlen=max_events)
        self._ids = itertools.count(1)
        self._sleeping = False
        self._plan: StoredPlan | None = None
        self._pass: PassReport | None = None
        self._catalogue: tuple[datetime, PoolCatalogue] | None = None
        self._installation = uuid.uuid4().hex

    # meta ----------------------------------------------------------------------
    def installation_id(self) -> str:
        return self._installation

    # node records --------------------------------------------------------------
    def insert_record(self, record: NodeRecord) -> None:
        if record.id in self._records:
            raise StoreError(f"node record exists id={record.id}")
        self._keep(record)

    def update_record(self, record_id: str, *, state: NodeState | Keep = KEEP,
                      state_since: datetime | Keep = KEEP, reason: str | Keep = KEEP,
                      instance_id: str | Keep = KEEP, address: str | Keep = KEEP,
                      drain: DrainKind | None | Keep = KEEP,
                      down_since: datetime | None | Keep = KEEP,
                      prewarm: bool | Keep = KEEP) -> NodeRecord:
        changes = given(state=state, state_since=state_since, reason=reason,
                        instance_id=instance_id, address=address, drain=drain,
                        down_since=down_since, prewarm=prewarm)
        updated = replace(self.record(record_id), **changes)
        self._keep(updated)
        return updated

    def record(self, record_id: str) -> NodeRecord:
        record = self._records.get(record_id)
        if record is None:
            raise RecordNotFound(f"no node record id={record_id}")
        return record

    def records(self, *, include_deleted: bool = False) -> tuple[NodeRecord, ...]:
        chosen = self._records if include_deleted else self._live
        return tuple(sorted(chosen.values(), key=lambda record: (record.created, record.id)))

    def _keep(self, record: NodeRecord) -> None:
        self._records[record.id] = record
        if record.state is NodeState.DELETED:
            self._live.pop(record.id, None)
        else:
            self._live[record.id] = record

    # hints ---------------------------------------------------------------------
    def add_hint(self, received: datetime, payload: Mapping[str, Any], *,
                 source: str | None = None, limits: HintLimits | None = None) -> int:
        user = str(payload.get("user", ""))
        size = len(json.dumps(payload, separators=(",", ":")).encode())
        if limits is not None:
            mine, mine_bytes = self._hint_usage.get(user, (0, 0))
            all_bytes = self._hint_usage.get(_EVERYONE, (0, 0))[1]
            if (mine + 1 > limits.per_user or mine_bytes + size > limits.bytes_per_user
                    or len(self._hints) + 1 > limits.total
                    or all_bytes + size > limits.bytes_total):
                raise HintLimitReached(f"hint limit reached for user {user}")
        hint_id = next(self._ids)
        self._hints[hint_id] = StoredHint(hint_id, received, dict(payload), source)
        self._hint_bytes[hint_id] = size
        self._count_hint(user, size, +1)
        return hint_id

    def hints(self, *, after_id: int = 0) -> tuple[StoredHint, ...]:
        return tuple(hint for hint in self._hints.values() if hint.id > after_id)

    def hint_ids(self) -> frozenset[int]:
        return frozenset(self._hints)

    def delete_hints(self, hint_ids: list[int]) -> None:
        for hint_id in hint_ids:
            hint = self._hints.pop(hint_id, None)
            if hint is not None:
                self._count_hint(str(hint.payload.get("user", "")),
                                 self._hint_bytes.pop(hint_id), -1)

    def _count_hint(self, user: str, size: int, sign: int) -> None:
        for key in (user, _EVERYONE):
            count, total = self._hint_usage.get(key, (0, 0))
            self._hint_usage[key] = (count + sign, total + sign * size)

    def add_hint_strike(self, user: str, source: str | None, at: datetime, *,
                        forget_before: datetime) -> None:
        self._strikes = [strike for strike in self._strikes if strike[2] >= forget_before]
        self._strikes.append((user, source, at))

    def hint_strikes(self, since: datetime) -> HintStrikes:
        by_user: dict[str, int] = {}
        by_source: dict[str, int] = {}
        for user, source, when in self._strikes:
            if when >= since:
                by_user[user] = by_user.get(user, 0) + 1
                if source is not None:
                    by_source[source] = by_source.get(source, 0) + 1
        return HintStrikes(by_user, by_source)

    # intents -------------------------------------------------------------------
    def add_intent(self, kind: IntentKind, target: str | None, now: datetime) -> Intent:
        intent = Intent(id=next(self._ids), kind=IntentKind(kind), created=now, target=target)
        self._intents[intent.id] = intent
        return intent

    def intent(self, intent_id: int) -> Intent:
        intent = self._intents.get(intent_id)
        if intent is None:
            raise RecordNotFound(f"no intent id={intent_id}")
        return intent

    def intents(self, *, pending_only: bool = False, limit: int = 100) -> tuple[Intent, ...]:
        _check_limit(limit)
        if pending_only:
            pending = [intent for intent in self._intents.values()
                       if intent.status is IntentStatus.PENDING]
            return tuple(pending[:limit])
        return tuple(list(self._intents.values())[-limit:]) if limit else ()

    def complete_intent(self, intent_id: int, status: IntentStatus, message: str,
                        now: datetime) -> None:
        status = IntentStatus(status)
        if status is IntentStatus.PENDING:
            raise ValueError("an intent completes as done, refused or failed, not pending")
        intent = self.intent(intent_id)
        self._intents[intent_id] = replace(intent, status=status, message=message,
                                           finished=now)

    # flags, pool health --------------------------------------------------------
    def set_sleeping(self, sleeping: bool, now: datetime) -> None:
        self._sleeping = sleeping

    def is_sleeping(self) -> bool:
        return self._sleeping

    def pool_health(self) -> dict[str, PoolHealth]:
        return dict(sorted(self._health.items()))

    def save_pool_health(self, health: PoolHealth) -> None:
        self._health[health.pool] = health

    # history -------------------------------------------------------------------
    def add_event(self, time: datetime, kind: EventKind, message: str, *,
                  hostname: str | None = None, pool: str | None = None,
                  error_kind: ErrorKind | None = None) -> None:
        self._events.append(Event(next(self._ids), time, EventKind(kind), message, hostname, pool,
                                  None if error_kind is None else ErrorKind(error_kind)))

    def events(self, limit: int = 50) -> tuple[Event, ...]:
        _check_limit(limit)
        return tuple(itertools.islice(reversed(self._events), limit))

    def save_plan(self, time: datetime, plan: Plan) -> None:
        self._plan = StoredPlan(time, plan.actions, plan.verdicts, plan.notes)

    def touch_plan(self, time: datetime) -> None:
        if self._plan is not None:
            self._plan = replace(self._plan, time=time)

    def last_plan(self) -> StoredPlan | None:
        return self._plan

    def save_pass(self, report: PassReport) -> None:
        self._pass = report

    def last_pass(self) -> PassReport | None:
        return self._pass

    # pool catalogue ------------------------------------------------------------
    def save_pool_catalogue(self, written: datetime, catalogue: PoolCatalogue) -> None:
        self._catalogue = (written, catalogue)

    def pool_catalogue(self) -> tuple[datetime, PoolCatalogue] | None:
        return self._catalogue

    # health --------------------------------------------------------------------
    def check(self) -> None:
        """Memory cannot be deleted under us."""


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")
