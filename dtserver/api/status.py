"""GET /status (plain text for curl, JSON or an HTML page on request) and GET /healthz.

Everything shown comes from the store, as the reconciler last recorded it. The plan is
the store's StoredPlan: queued demand is its job verdicts counted by status, next to its
actions counted by type and its notes. The HTML page (templates/status.html, autoescaped,
no external assets) adds the node list by state with ages, the pending jobs with their
reasons, recent failures and pending intents, and reloads itself every `?refresh=`
seconds.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, Iterable, Mapping

from flask import Blueprint, Response, jsonify, render_template, request

from dtserver.api.context import api_context
from dtserver.api.errors import ApiError
from dtserver.api.operation import JSON, TEXT, Operation, ref
from dtserver.api.serialize import format_time, to_jsonable
from dtserver.api.settings import ApiSettings
from dtserver.model import NodeState
from dtserver.store import EventKind, Store

bp = Blueprint("status", __name__, template_folder="templates")

DEFAULT_REFRESH_SECONDS = 10
MIN_REFRESH_SECONDS = 1
MAX_REFRESH_SECONDS = 3600
PAGE_JOBS = 200
PAGE_FAILURES = 10
FAILURE_SCAN_EVENTS = 500
# The page lists states in lifecycle order, the troubled ones last.
STATE_ORDER = (NodeState.LAUNCHING, NodeState.BOOTING, NodeState.REGISTERED, NodeState.IDLE,
               NodeState.BUSY, NodeState.OFFLINE, NodeState.DELETING, NodeState.FAILED,
               NodeState.UNKNOWN)


def _age_seconds(then: datetime, now: datetime) -> float:
    return round((now - then).total_seconds(), 3)


def _counted(values: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def status_summary(store: Store, settings: ApiSettings, now: datetime) -> dict[str, Any]:
    """The JSON form of /status; the text form is rendered from it."""
    records = store.records()
    health = store.pool_health()
    pools: dict[str, dict[str, Any]] = {}
    for name in sorted({record.pool for record in records} | set(health)):
        in_pool = [record for record in records if record.pool == name]
        pool_health = health.get(name)
        pools[name] = {
            "nodes": len(in_pool),
            # Failed and unknown nodes are not capacity anyone can use.
            "cores": sum(record.cores for record in in_pool
                         if record.state not in (NodeState.FAILED, NodeState.UNKNOWN)),
            "states": dict(sorted(Counter(record.state.value for record in in_pool).items())),
            "health": to_jsonable(pool_health) if pool_health is not None else None,
        }
    last_pass = store.last_pass()
    last_plan = store.last_plan()
    plan = None
    if last_plan is not None:
        plan = {
            "time": format_time(last_plan.time),
            "age_seconds": _age_seconds(last_plan.time, now),
            "jobs": _counted(verdict.status.value for verdict in last_plan.verdicts),
            "actions": _counted(type(action).__name__ for action in last_plan.actions),
            "notes": list(last_plan.notes),
        }
    return {
        "time": format_time(now),
        "sleeping": store.is_sleeping(),
        "last_pass": None if last_pass is None else {
            "time": format_time(last_pass.time),
            "age_seconds": _age_seconds(last_pass.time, now),
            "ok": last_pass.ok,
            "duration_seconds": last_pass.duration_seconds,
            "summary": to_jsonable(last_pass.summary),
        },
        "nodes": dict(sorted(Counter(record.state.value for record in records).items())),
        "pools": pools,
        "plan": plan,
        "events": to_jsonable(store.events(settings.status_events)),
    }


def _counts(states: Mapping[str, int]) -> str:
    total = sum(states.values())
    detail = ", ".join(f"{state} {count}" for state, count in states.items())
    return f"{total} ({detail})" if detail else "0"


def render_status_text(summary: Mapping[str, Any]) -> str:
    lines = [f"dynamictorque status at {summary['time']}",
             "mode: " + ("SLEEPING (no new launches)" if summary["sleeping"] else "active")]
    last_pass = summary["last_pass"]
    if last_pass is None:
        lines.append("last pass: none recorded")
    else:
        error = last_pass["summary"].get("error")
        lines.append(f"last pass: {last_pass['age_seconds']:.0f} s ago, "
                     f"{'ok' if last_pass['ok'] else 'FAILED'}, "
                     f"took {last_pass['duration_seconds']:.2f} s"
                     + (f": {error}" if error else ""))
    lines.append(f"nodes: {_counts(summary['nodes'])}")
    lines.append("pools:" if summary["pools"] else "pools: none yet")
    for name, pool in summary["pools"].items():
        line = f"  {name}: {_counts(pool['states'])}, {pool['cores']} cores"
        health = pool["health"]
        if health is not None:
            if health["consecutive_failures"]:
                line += f", {health['consecutive_failures']} failures ({health['last_error']})"
            if health["backoff_until"]:
                line += f", backoff until {health['backoff_until']}"
            if health["stopped"]:
                line += ", STOPPED until an admin resets it"
        lines.append(line)
    plan = summary["plan"]
    if plan is None:
        lines.append("plan: none recorded")
    else:
        lines.append(f"plan: {plan['age_seconds']:.0f} s ago")
        lines.append(f"  queued jobs: {_counts(plan['jobs'])}")
        lines.append(f"  actions: {_counts(plan['actions'])}")
        lines.extend(f"  note: {note}" for note in plan["notes"])
    lines.append("recent events:" if summary["events"] else "recent events: none")
    for event in summary["events"]:
        words = [event["time"], event["kind"]]
        if event["hostname"]:
            words.append(event["hostname"])
        if event["pool"]:
            words.append(f"({event['pool']})")
        lines.append("  " + " ".join([*words, event["message"]]))
    return "\n".join(lines) + "\n"


def format_age(seconds: float) -> str:
    """45s, 12m05s, 3h05m, 2d04h: short enough for a table column."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _refresh_seconds() -> int:
    text = request.args.get("refresh", str(DEFAULT_REFRESH_SECONDS))
    # isascii: "²" is a digit to isdigit() but not to int().
    if not (text.isascii() and text.isdigit()) or \
            not MIN_REFRESH_SECONDS <= int(text) <= MAX_REFRESH_SECONDS:
        raise ApiError(400, "invalid_value", f"refresh: whole seconds from "
                                             f"{MIN_REFRESH_SECONDS} to {MAX_REFRESH_SECONDS}")
    return int(text)


def status_page(store: Store, settings: ApiSettings, now: datetime, refresh: int) -> str:
    """The HTML page: the /status summary plus what a person scanning it wants to see."""
    summary = status_summary(store, settings, now)
    records = store.records()
    groups = []
    for state in STATE_ORDER:
        members = sorted((record for record in records if record.state is state),
                         key=lambda record: (record.pool, record.hostname))
        if members:
            groups.append({"state": state.value, "nodes": [
                {**to_jsonable(record),
                 "age": format_age((now - record.state_since).total_seconds())}
                for record in members]})
    stored_plan = store.last_plan()
    verdicts = stored_plan.verdicts if stored_plan is not None else ()
    failures = [event for event in store.events(FAILURE_SCAN_EVENTS)
                if event.kind is EventKind.FAILURE][:PAGE_FAILURES]
    return render_template(
        "status.html", summary=summary, refresh=refresh, groups=groups,
        jobs=verdicts[:PAGE_JOBS], jobs_total=len(verdicts),
        failures=[{**to_jsonable(event),
                   "age": format_age((now - event.time).total_seconds())} for event in failures],
        intents=to_jsonable(store.intents(pending_only=True, limit=20)),
        age=format_age)


@bp.get("/status")
@Operation("Service summary: text for curl, JSON, or the HTML status page", 200,
           {TEXT: {"type": "string"}, JSON: ref("Status"), "text/html": {"type": "string"}},
           errors=(400, 503),
           query=({"name": "refresh", "in": "query", "required": False,
                   "description": "HTML page only: reload every N seconds (1 to 3600); "
                                  "ignored by the text and JSON forms",
                   "schema": {"type": "string", "default": "10"}},))
def status() -> Response:
    """Plain text by default (curl sends */*, which picks the first offer), JSON for
    Accept: application/json, the auto-refreshing HTML page for browsers (text/html)."""
    context = api_context()
    now = context.clock.now()
    wanted = request.accept_mimetypes.best_match(["text/plain", "application/json",
                                                  "text/html"])
    if wanted == "text/html":
        page = status_page(context.store, context.settings, now, _refresh_seconds())
        return Response(page, mimetype="text/html")
    summary = status_summary(context.store, context.settings, now)
    if wanted == "application/json":
        return jsonify(summary)
    return Response(render_status_text(summary), mimetype="text/plain")


@bp.get("/healthz")
@Operation("Health: 200 while the last reconciler pass is recent and the store answers, "
           "else 503", 200, {JSON: ref("Health")}, errors=(),
           other={503: {"description": "No reconciler pass recorded, the last one is older "
                                       "than healthz_stale_seconds, or the state database "
                                       "is gone (deleted or replaced under the API)",
                        "content": {JSON: {"schema": ref("Health")}}}})
def healthz() -> tuple[Response, int]:
    context = api_context()
    last_pass = context.store.last_pass()
    limit = context.settings.healthz_stale_seconds
    if last_pass is None:
        return jsonify({"status": "stale", "reason": "no reconciler pass recorded",
                        "limit_seconds": limit}), 503
    age = _age_seconds(last_pass.time, context.clock.now())
    body = {"age_seconds": age, "limit_seconds": limit, "last_pass_ok": last_pass.ok}
    if age > limit:
        return jsonify({"status": "stale", **body}), 503
    return jsonify({"status": "ok", **body}), 200
