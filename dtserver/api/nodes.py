"""GET /v1/nodes and /v1/nodes/<hostname>: the node records the scaler owns."""
from __future__ import annotations

from flask import Blueprint, request

from dtserver.api.context import api_context
from dtserver.api.errors import ApiError
from dtserver.model import NodeRecord, NodeState

bp = Blueprint("nodes", __name__)

_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _include_deleted() -> bool:
    text = request.args.get("include_deleted", "false").lower()
    if text not in _BOOLEANS:
        raise ApiError(400, "invalid_value", "include_deleted: use true or false")
    return _BOOLEANS[text]


@bp.get("/v1/nodes")
def list_nodes() -> dict[str, tuple[NodeRecord, ...]]:
    return {"nodes": api_context().store.records(include_deleted=_include_deleted())}


@bp.get("/v1/nodes/<name>")
def show_node(name: str) -> dict[str, NodeRecord]:
    """The live record of a node slot; once it has none, the newest deleted one."""
    records = [record for record in api_context().store.records(include_deleted=True)
               if record.hostname == name]
    if not records:
        raise ApiError(404, "not_found", f"no node record for {name!r}")
    # A slot name is reused by later instances; a live record beats any deleted one.
    newest = max(records, key=lambda record: (record.state != NodeState.DELETED,
                                              record.state_since, record.created))
    return {"node": newest}
