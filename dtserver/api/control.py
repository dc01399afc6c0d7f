"""Admin control: sleep mode, intents (kill, drain-all, reset-pool) and the last plan.

Mutations need the admin token. Kill, drain-all and reset-pool are recorded as intents
and answered 202 at once: the API never talks to TORQUE, so whether a node is really
idle is decided by the reconciler on its next pass, which completes the intent (done,
refused with the reason, or failed). GET /v1/intents/ID reports that outcome.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from dtserver.api.auth import admin_required
from dtserver.api.context import api_context
from dtserver.api.errors import ApiError
from dtserver.api.operation import (ADMIN, INTENT_ACCEPTED, JSON, LOCATION, TIME, Operation,
                                    boolean_query, closed_object, nullable, ref)
from dtserver.model import Intent, IntentKind
from dtserver.serialize import plan_as_data
from dtserver.store import EventKind, RecordNotFound
from dtserver.wakeup import wake_reconciler

log = logging.getLogger(__name__)

bp = Blueprint("control", __name__)

# Node slot and pool names as config allows them; anything else cannot name one of ours.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
_MAX_INTENTS = 1000


def _set_sleeping(sleeping: bool) -> dict[str, bool]:
    context = api_context()
    now = context.clock.now()
    context.store.set_sleeping(sleeping, now)
    context.store.add_event(now, EventKind.SLEEP if sleeping else EventKind.WAKE,
                            "sleep mode on: no new launches" if sleeping else "sleep mode off")
    log.info("sleep mode changed sleeping=%s", sleeping)
    # Waking may release launches that waited; no reason to wait for the next poll.
    wake_reconciler(context.settings.wakeup_path)
    return {"sleeping": sleeping}


@bp.post("/v1/sleep")
@Operation("Sleep mode on: no new launches; deletions continue", 200,
           {JSON: closed_object({"sleeping": {"const": True}})}, errors=(401, 403, 503),
           access=ADMIN)
@admin_required
def sleep() -> dict[str, bool]:
    """Sleep mode on: no new launches; deletions continue. 200 {sleeping: true}."""
    return _set_sleeping(True)


@bp.post("/v1/wake")
@Operation("Sleep mode off", 200, {JSON: closed_object({"sleeping": {"const": False}})},
           errors=(401, 403, 503), access=ADMIN)
@admin_required
def wake() -> dict[str, bool]:
    """Sleep mode off. 200 {sleeping: false}."""
    return _set_sleeping(False)


@bp.get("/v1/plan")
@Operation("The plan of the last reconciler pass (nulls before the first)", 200,
           {JSON: closed_object({"time": nullable(TIME),
                                 "plan": nullable({"type": "object"})})})
def last_plan() -> dict[str, Any]:
    """The plan of the last reconciler pass; nulls before the first one."""
    stored = api_context().store.last_plan()
    if stored is None:
        return {"time": None, "plan": None}
    return {"time": stored.time, "plan": plan_as_data(stored)}


# -- intents ---------------------------------------------------------------------------------

def _checked_name(what: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ApiError(400, "invalid_value", f"{what}: not a valid name: {name[:40]!r}")
    return name


def _record_intent(kind: IntentKind, target: str | None, *,
                   hostname: str | None = None, pool: str | None = None) -> tuple[Response, int]:
    """Store the intent (or return the identical one still pending) and wake the reconciler."""
    context = api_context()
    now = context.clock.now()
    pending = [intent for intent in context.store.intents(pending_only=True, limit=_MAX_INTENTS)
               if intent.kind is kind and intent.target == target]
    # A repeated request (an impatient admin, a retried POST) must not queue the work twice.
    intent = pending[0] if pending else context.store.add_intent(kind, target, now)
    if not pending:
        what = f"{kind.value} {target}" if target else kind.value
        context.store.add_event(now, EventKind.INTENT, f"intent {intent.id} recorded: {what}",
                                hostname=hostname, pool=pool)
        log.info("intent recorded id=%d kind=%s target=%s remote=%s", intent.id, kind.value,
                 target, request.remote_addr)
    wake_reconciler(context.settings.wakeup_path)
    response = jsonify({"intent": intent})
    response.headers["Location"] = url_for("control.show_intent", intent_id=intent.id)
    return response, 202


@bp.post("/v1/nodes/<name>/kill")
@Operation("Delete an owned node once the reconciler has checked it runs no job", 202,
           {JSON: INTENT_ACCEPTED}, errors=(400, 401, 403, 404, 503), access=ADMIN,
           ok_headers=LOCATION)
@admin_required
def kill_node(name: str) -> tuple[Response, int]:
    """Delete one owned node once the reconciler has checked it runs no job.

    202 {intent}; 404 when dynamictorque has no live record of that hostname. A busy node
    is refused by the reconciler (the intent ends "refused", naming the job), because only
    a fresh read of TORQUE can say whether a job runs there.
    """
    name = _checked_name("node", name)
    live = [record for record in api_context().store.records() if record.hostname == name]
    if not live:
        raise ApiError(404, "not_found",
                       f"no live node record for {name!r}: dynamictorque only kills nodes it "
                       "launched (see GET /v1/nodes)")
    return _record_intent(IntentKind.KILL, name, hostname=name, pool=live[0].pool)


@bp.post("/v1/drain-all")
@Operation("Offline every owned node, sleep, and delete each once its jobs end", 202,
           {JSON: INTENT_ACCEPTED}, errors=(401, 403, 503), access=ADMIN, ok_headers=LOCATION)
@admin_required
def drain_all() -> tuple[Response, int]:
    """Offline every owned node, sleep, and delete each node once its jobs end. 202 {intent}."""
    return _record_intent(IntentKind.DRAIN_ALL, None)


@bp.post("/v1/pools/<name>/reset")
@Operation("Clear a pool's backoff and boot-failure stop", 202, {JSON: INTENT_ACCEPTED},
           errors=(400, 401, 403, 503), access=ADMIN, ok_headers=LOCATION)
@admin_required
def reset_pool(name: str) -> tuple[Response, int]:
    """Clear a pool's backoff and boot-failure stop. 202 {intent}; the reconciler refuses
    a pool name the configuration does not have."""
    name = _checked_name("pool", name)
    return _record_intent(IntentKind.RESET_POOL, name, pool=name)


@bp.get("/v1/intents")
@Operation("The latest admin intents, oldest first", 200,
           {JSON: closed_object({"intents": {"type": "array", "items": ref("Intent")}})},
           errors=(400, 503), query=(boolean_query("pending", "Only the intents still waiting"),))
def list_intents() -> dict[str, tuple[Intent, ...]]:
    """The latest intents, oldest first; ?pending=true for those still waiting."""
    text = request.args.get("pending", "false").lower()
    if text not in _BOOLEANS:
        raise ApiError(400, "invalid_value", "pending: use true or false")
    return {"intents": api_context().store.intents(pending_only=_BOOLEANS[text], limit=100)}


# SQLite integers are 64-bit: a larger id matches no route (404) instead of overflowing.
@bp.get(f"/v1/intents/<int(max={2**63 - 1}):intent_id>")
@Operation("One intent and its outcome", 200,
           {JSON: closed_object({"intent": ref("Intent")},
                                {"target_state": nullable(ref("NodeState"))})},
           errors=(404, 503))
def show_intent(intent_id: int) -> dict[str, Any]:
    """One intent: status (pending, done, refused, failed), created, finished, message.

    `target_state` is the current state of a killed node's record, so a client can wait
    for the deletion itself, not only for the decision."""
    context = api_context()
    try:
        intent = context.store.intent(intent_id)
    except RecordNotFound as error:
        raise ApiError(404, "not_found", f"no intent {intent_id}") from error
    body: dict[str, Any] = {"intent": intent}
    if intent.kind is IntentKind.KILL:
        # The record the kill was about existed before the intent; a later one reuses the slot.
        before = [record for record in context.store.records(include_deleted=True)
                  if record.hostname == intent.target and record.created <= intent.created]
        newest = max(before, key=lambda record: record.created, default=None)
        body["target_state"] = None if newest is None else newest.state
    return body
