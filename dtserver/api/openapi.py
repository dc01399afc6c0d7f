"""GET /v1/openapi.json: the OpenAPI 3.1 document of this API, built from the app itself.

Paths, methods and path parameters come from app.url_map, so no route is served
undocumented. The hint body schema comes from hints.py, built from the rules its validator
applies; record schemas (nodes, intents, events) from the model dataclasses. What is
written by hand is OPERATIONS: per endpoint, what it answers and whether it needs the
admin token. tests/api/test_openapi.py checks each of these against the running code.
"""
from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import types
import typing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from flask import Blueprint, Flask, Response, current_app, jsonify
from werkzeug.routing import Rule
from werkzeug.routing.converters import IntegerConverter

import dtserver
from dtserver.api import hints
from dtserver.model import Intent, NodeRecord, NodeState
from dtserver.store import Event

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
# Methods every route answers by itself; they are not operations of ours.
_IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})
_RULE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

# Who may call: nobody needs a token to read; hints need the hint token only when one is
# configured (the admin token also works); every other mutation needs the admin token.
PUBLIC = "public"
HINT = "hint"
ADMIN = "admin"

_ERROR_DESCRIPTIONS = {
    400: "Invalid input (error.code names the problem: invalid_value, unknown_field, ...)",
    401: "Bearer token missing or wrong",
    403: "No admin token is configured, so mutations are disabled",
    404: "Not found",
    413: "Body larger than the configured limit (max_body_bytes, 64 KiB by default)",
    415: "Body is not application/json",
    429: "Too many hints waiting for this user or in all (max_hints_per_user, max_hints and "
         "their byte limits); retry after Retry-After seconds",
    503: "The state database is unavailable; retry",
}


@dataclass(frozen=True)
class OperationDoc:
    """What one endpoint answers. `ok` maps media types to schemas (None: any body)."""

    summary: str
    status: int
    ok: Mapping[str, dict[str, Any] | None]
    errors: tuple[int, ...] = (503,)
    access: str = PUBLIC
    query: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | None = None
    ok_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Answers that are not the error shape, by status.
    other: Mapping[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # Named examples of the JSON answer.
    ok_examples: Mapping[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: Mapping[str, Any], optional: Mapping[str, Any] | None = None,
            *, closed: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {**required, **(optional or {})},
                              "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _boolean_query(name: str, description: str) -> dict[str, Any]:
    # The views lower-case the value before looking it up.
    words = ("1", "true", "yes", "0", "false", "no")
    any_case = "|".join("".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in word)
                        for word in words)
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string", "pattern": f"^(?:{any_case})$", "default": "false"}}


_TIME = {"type": "string", "format": "date-time"}
_TEXT_PLAIN = {"type": "string"}
_INTENT_ACCEPTED = _ref("IntentAccepted")
_LOCATION = {"Location": "Where GET /v1/intents/{intent_id} reports the outcome"}

OPERATIONS: dict[str, OperationDoc] = {
    "hints.post_hint": OperationDoc(
        "Announce a job before qsub has a job id (the submit filter); the answer says "
        "whether any pool could ever run it", 202,
        {JSON: _ref("HintAccepted")},
        errors=(400, 401, 413, 415, 429, 503), access=HINT, body=_ref("Hint"),
        ok_examples=hints.ANSWER_EXAMPLES),
    "status.status": OperationDoc(
        "Service summary: text for curl, JSON, or the HTML status page", 200,
        {"text/plain": _TEXT_PLAIN, JSON: _ref("Status"), "text/html": _TEXT_PLAIN},
        errors=(400, 503),
        query=({"name": "refresh", "in": "query", "required": False,
                "description": "HTML page only: reload every N seconds (1 to 3600); "
                               "ignored by the text and JSON forms",
                "schema": {"type": "string", "default": "10"}},)),
    "status.healthz": OperationDoc(
        "Health: 200 while the last reconciler pass is recent and the store answers, else 503",
        200,
        {JSON: _ref("Health")}, errors=(),
        other={503: {"description": "No reconciler pass recorded, the last one is older "
                                    "than healthz_stale_seconds, or the state database is "
                                    "gone (deleted or replaced under the API)",
                     "content": {JSON: {"schema": _ref("Health")}}}}),
    "nodes.list_nodes": OperationDoc(
        "Node records the scaler owns", 200,
        {JSON: _object({"time": _TIME, "nodes": {"type": "array", "items": _ref("NodeRecord")}})},
        errors=(400, 503),
        query=(_boolean_query("include_deleted", "Also list deleted records"),)),
    "nodes.show_node": OperationDoc(
        "One node record and its recent events", 200,
        {JSON: _object({"time": _TIME, "node": _ref("NodeRecord"),
                        "history": {"type": "array", "items": _ref("Event")}})},
        errors=(404, 503)),
    "control.sleep": OperationDoc(
        "Sleep mode on: no new launches; deletions continue", 200,
        {JSON: _object({"sleeping": {"const": True}})}, errors=(401, 403, 503), access=ADMIN),
    "control.wake": OperationDoc(
        "Sleep mode off", 200,
        {JSON: _object({"sleeping": {"const": False}})}, errors=(401, 403, 503), access=ADMIN),
    "control.last_plan": OperationDoc(
        "The plan of the last reconciler pass (nulls before the first)", 200,
        {JSON: _object({"time": _nullable(_TIME), "plan": _nullable({"type": "object"})})}),
    "control.kill_node": OperationDoc(
        "Delete an owned node once the reconciler has checked it runs no job", 202,
        {JSON: _INTENT_ACCEPTED}, errors=(400, 401, 403, 404, 503), access=ADMIN,
        ok_headers=_LOCATION),
    "control.drain_all": OperationDoc(
        "Offline every owned node, sleep, and delete each once its jobs end", 202,
        {JSON: _INTENT_ACCEPTED}, errors=(401, 403, 503), access=ADMIN, ok_headers=_LOCATION),
    "control.reset_pool": OperationDoc(
        "Clear a pool's backoff and boot-failure stop", 202,
        {JSON: _INTENT_ACCEPTED}, errors=(400, 401, 403, 503), access=ADMIN,
        ok_headers=_LOCATION),
    "control.list_intents": OperationDoc(
        "The latest admin intents, oldest first", 200,
        {JSON: _object({"intents": {"type": "array", "items": _ref("Intent")}})},
        errors=(400, 503),
        query=(_boolean_query("pending", "Only the intents still waiting"),)),
    "control.show_intent": OperationDoc(
        "One intent and its outcome", 200,
        {JSON: _object({"intent": _ref("Intent")},
                       {"target_state": _nullable(_ref("NodeState"))})},
        errors=(404, 503)),
    "jobs.why": OperationDoc(
        "The planner's verdict on a queued job in the last pass", 200,
        {JSON: _object({"job_id": {"type": "string"}, "time": _TIME,
                        "verdicts": {"type": "array", "items": {"type": "object"}}})},
        errors=(400, 404, 503)),
    "metrics.metrics": OperationDoc(
        "Prometheus metrics", 200,
        {"text/plain": _TEXT_PLAIN, "application/openmetrics-text": _TEXT_PLAIN}),
    "openapi.openapi": OperationDoc(
        "This document", 200, {JSON: {"type": "object"}}, errors=()),
}


# --- schemas generated from the model ---------------------------------------------------

def type_schema(annotation: Any) -> dict[str, Any]:
    """JSON Schema of a model annotation as dtserver.serialize.to_jsonable encodes it."""
    if annotation is type(None):
        return {"type": "null"}
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        return {"anyOf": [type_schema(member) for member in typing.get_args(annotation)]}
    if origin in (tuple, list):
        arguments = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return {"type": "array", "items": type_schema(arguments[0]) if arguments else {}}
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        return {"type": "object"}
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return _ref(annotation.__name__)
        # bool before int: True is an int to Python, not to JSON Schema.
        for python_type, schema in ((bool, {"type": "boolean"}), (str, {"type": "string"}),
                                    (int, {"type": "integer"}), (float, {"type": "number"}),
                                    (datetime, _TIME), (timedelta, {"type": "number"})):
            if issubclass(annotation, python_type):
                return dict(schema)
        if dataclasses.is_dataclass(annotation):
            return _ref(annotation.__name__)
    raise TypeError(f"no JSON Schema for {annotation!r}")


def dataclass_schema(cls: type) -> dict[str, Any]:
    """Every field of a model dataclass, all present in the JSON, nothing else."""
    annotations = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    return {"type": "object",
            "properties": {field.name: type_schema(annotations[field.name]) for field in fields},
            "required": [field.name for field in fields],
            "additionalProperties": False}


def _enum_schema(cls: type[enum.Enum]) -> dict[str, Any]:
    return {"type": "string", "enum": [member.value for member in cls]}


def _enums_of(*classes: type) -> set[type[enum.Enum]]:
    found: set[type[enum.Enum]] = {NodeState}
    for cls in classes:
        for annotation in typing.get_type_hints(cls).values():
            for member in (*typing.get_args(annotation), annotation):
                if isinstance(member, type) and issubclass(member, enum.Enum):
                    found.add(member)
    return found


def component_schemas() -> dict[str, Any]:
    models = (NodeRecord, Intent, Event)
    schemas: dict[str, Any] = {cls.__name__: dataclass_schema(cls) for cls in models}
    schemas.update({cls.__name__: _enum_schema(cls) for cls in _enums_of(*models)})
    schemas["Error"] = _object({"error": _object({"code": {"type": "string", "minLength": 1},
                                                  "message": {"type": "string"}})})
    schemas["Hint"] = {**hints.hint_schema(), "examples": [hints.HINT_EXAMPLE]}
    schemas["HintAccepted"] = {
        **hints.answer_schema(),
        "description": "id: the stored hint, null when it was not stored. servable: true "
                       "when some pool could run the job; false when no pool ever could "
                       "(reason says why; the hint is not stored); null when that is not "
                       "ours to judge (no pool catalogue yet, a queue no pool serves, no "
                       "queue named while pools depend on it, a job pinned to a host).",
        "examples": [example["value"] for example in hints.ANSWER_EXAMPLES.values()]}
    schemas["IntentAccepted"] = _object({"intent": _ref("Intent")})
    schemas["Health"] = _object(
        {"status": {"enum": ["ok", "stale", "store_unavailable"]},
         "limit_seconds": {"type": "number"}},
        {"reason": {"type": "string"}, "age_seconds": {"type": "number"},
         "last_pass_ok": {"type": "boolean"}})
    schemas["Status"] = _object(
        {"time": _TIME, "sleeping": {"type": "boolean"},
         "last_pass": _nullable({"type": "object"}),
         "nodes": {"type": "object", "additionalProperties": {"type": "integer"}},
         "pools": {"type": "object"}, "plan": _nullable({"type": "object"}),
         "events": {"type": "array", "items": _ref("Event")}})
    return dict(sorted(schemas.items()))


# --- the document -----------------------------------------------------------------------

def openapi_path(rule: Rule) -> str:
    """/v1/nodes/<name>/kill -> /v1/nodes/{name}/kill."""
    return _RULE_ARGUMENT.sub(r"{\1}", rule.rule)


def _path_parameter(rule: Rule, name: str) -> dict[str, Any]:
    # The converters bound to a rule; werkzeug has no public accessor for them.
    converter = rule._converters[name]
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if isinstance(converter, IntegerConverter):
        schema = {"type": "integer"}
        if not converter.signed:
            schema["minimum"] = 0
        if converter.min is not None:
            schema["minimum"] = max(converter.min, schema.get("minimum", converter.min))
        if converter.max is not None:
            schema["maximum"] = converter.max
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": _ERROR_DESCRIPTIONS[status],
                                "content": {JSON: {"schema": _ref("Error")}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {
            "description": 'Bearer realm="dynamictorque"', "schema": {"type": "string"}}}
    if status == 429:
        response["headers"] = {"Retry-After": {
            "description": "Seconds until waiting hints have left (one hint TTL)",
            "schema": {"type": "string"}}}
    return response


def _security(access: str) -> list[dict[str, list[str]]]:
    if access == ADMIN:
        return [{"adminToken": []}]
    if access == HINT:
        return [{}, {"hintToken": []}, {"adminToken": []}]
    return []


def _operation(app: Flask, rule: Rule, doc: OperationDoc) -> dict[str, Any]:
    view = app.view_functions[rule.endpoint]
    description = inspect.getdoc(view)
    ok_response: dict[str, Any] = {
        "description": doc.summary,
        "content": {media: {"schema": schema} if schema is not None else {}
                    for media, schema in doc.ok.items()}}
    if doc.ok_examples:
        ok_response["content"][JSON]["examples"] = dict(doc.ok_examples)
    if doc.ok_headers:
        ok_response["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                                  for name, text in doc.ok_headers.items()}
    responses: dict[str, Any] = {str(doc.status): ok_response}
    responses.update({str(status): response for status, response in doc.other.items()})
    for status in doc.errors:
        responses[str(status)] = _error_response(status)
    if rule.arguments and 404 not in doc.errors:
        # A path parameter that matches nothing is a 404 before the view runs.
        responses["404"] = _error_response(404)
    operation: dict[str, Any] = {
        "operationId": rule.endpoint.replace(".", "_"),
        "tags": [rule.endpoint.split(".", 1)[0]],
        "summary": doc.summary,
        "security": _security(doc.access),
        "responses": dict(sorted(responses.items())),
    }
    if description:
        operation["description"] = description
    parameters = [_path_parameter(rule, name) for name in sorted(rule.arguments)]
    parameters.extend(doc.query)
    if parameters:
        operation["parameters"] = parameters
    if doc.body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {
            "schema": doc.body, "example": hints.HINT_EXAMPLE}}}
    return operation


def _undocumented(rule: Rule) -> OperationDoc:
    # Still listed, so a new route is at least visible; the tests insist on a real entry.
    return OperationDoc(f"{rule.endpoint} (undocumented)", 200, {JSON: None}, errors=())


def documented_rules(app: Flask) -> list[Rule]:
    """Every route of the app except the static files Flask adds by itself."""
    return [rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"]


def openapi_document(app: Flask) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for rule in documented_rules(app):
        doc = OPERATIONS.get(rule.endpoint) or _undocumented(rule)
        for method in sorted((rule.methods or set()) - _IMPLICIT_METHODS):
            paths.setdefault(openapi_path(rule), {})[method.lower()] = _operation(app, rule, doc)
    bearer = "Authorization: Bearer <token>"
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "dynamictorque",
            "version": dtserver.__version__,
            "description": "Elastic TORQUE/PBS autoscaler. The API records hints and admin "
                           "intents for the reconciler and reports what it last stored. "
                           "Every error is {\"error\": {\"code\", \"message\"}}.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": f"{bearer}: the admin token (DT_TOKEN_FILE); "
                                              "every mutation but hints needs it"},
                "hintToken": {"type": "http", "scheme": "bearer",
                              "description": f"{bearer}: the hint token (DT_HINT_TOKEN_FILE), "
                                             "needed by POST /v1/hints only when configured"},
            },
        },
    }


@bp.get("/v1/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of the running app."""
    return jsonify(openapi_document(current_app))
