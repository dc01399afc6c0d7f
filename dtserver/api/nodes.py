"""GET /v1/nodes and /v1/nodes/<hostname>: the node records the scaler owns.

Both answers carry the server's `time`, so a client computes ages (time - state_since)
on the service's clock rather than on its own.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from dtserver.api.context import api_context
from dtserver.api.errors import ApiError
from dtserver.api.operation import JSON, TIME, Operation, boolean_query, closed_object, ref
from dtserver.model import NodeState

bp = Blueprint("nodes", __name__)

_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
# How far back a node's history is looked for among all recent events.
HISTORY_SCAN_EVENTS = 2000
HISTORY_EVENTS = 20


def _include_deleted() -> bool:
    text = request.args.get("include_deleted", "false").lower()
    if text not in _BOOLEANS:
        raise ApiError(400, "invalid_value", "include_deleted: use true or false")
    return _BOOLEANS[text]


@bp.get("/v1/nodes")
@Operation("Node records the scaler owns", 200,
           {JSON: closed_object({"time": TIME,
                                 "nodes": {"type": "array", "items": ref("NodeRecord")}})},
           errors=(400, 503),
           query=(boolean_query("include_deleted", "Also list deleted records"),))
def list_nodes() -> dict[str, Any]:
    """{time, nodes: [record]}: live records; ?include_deleted=true adds deleted ones."""
    context = api_context()
    return {"time": context.clock.now(),
            "nodes": context.store.records(include_deleted=_include_deleted())}


@bp.get("/v1/nodes/<name>")
@Operation("One node record and its recent events", 200,
           {JSON: closed_object({"time": TIME, "node": ref("NodeRecord"),
                                 "history": {"type": "array", "items": ref("Event")}})},
           errors=(404, 503))
def show_node(name: str) -> dict[str, Any]:
    """{time, node, history}: the live record of a node slot (once it has none, the newest
    deleted one) and the recent events of that hostname, newest first."""
    context = api_context()
    records = [record for record in context.store.records(include_deleted=True)
               if record.hostname == name]
    if not records:
        raise ApiError(404, "not_found", f"no node record for {name!r}")
    # A slot name is reused by later instances; a live record beats any deleted one.
    newest = max(records, key=lambda record: (record.state != NodeState.DELETED,
                                              record.state_since, record.created))
    history = [event for event in context.store.events(HISTORY_SCAN_EVENTS)
               if event.hostname == name][:HISTORY_EVENTS]
    return {"time": context.clock.now(), "node": newest, "history": history}
