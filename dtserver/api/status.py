"""GET /status (plain text for curl, JSON on request) and GET /healthz.

Everything shown comes from the store, as the reconciler last recorded it. The plan is
the reconciler's JSON (dtserver.serialize.plan_as_data): queued demand is its job verdicts
counted by status, next to its actions counted by type and its notes.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, Mapping

from flask import Blueprint, Response, jsonify, request

from dtserver.api.context import api_context
from dtserver.api.serialize import format_time, to_jsonable
from dtserver.api.settings import ApiSettings
from dtserver.model import NodeState
from dtserver.store import Store

bp = Blueprint("status", __name__)


def _age_seconds(then: datetime, now: datetime) -> float:
    return round((now - then).total_seconds(), 3)


def _count_by(items: Any, key: str) -> dict[str, int]:
    """{value of `key`: count} over a stored list of objects; tolerant of older shapes."""
    if not isinstance(items, list):
        return {}
    counts = Counter(str(item.get(key)) for item in items if isinstance(item, Mapping))
    return dict(sorted(counts.items()))


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
        plan_time, body = last_plan
        plan = {
            "time": format_time(plan_time),
            "age_seconds": _age_seconds(plan_time, now),
            "jobs": _count_by(body.get("verdicts"), "status"),
            "actions": _count_by(body.get("actions"), "type"),
            "notes": [str(note) for note in body.get("notes") or ()],
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
        lines.append(f"last pass: {last_pass['age_seconds']:.0f} s ago, "
                     f"{'ok' if last_pass['ok'] else 'FAILED'}, "
                     f"took {last_pass['duration_seconds']:.2f} s")
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


@bp.get("/status")
def status() -> Response:
    context = api_context()
    summary = status_summary(context.store, context.settings, context.clock.now())
    # curl sends */*, which picks the first offer: plain text.
    if request.accept_mimetypes.best_match(["text/plain", "application/json"]) == \
            "application/json":
        return jsonify(summary)
    return Response(render_status_text(summary), mimetype="text/plain")


@bp.get("/healthz")
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
