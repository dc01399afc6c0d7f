"""GET /v1/openapi.json: the OpenAPI 3.1 document of this API, built from the app itself.

apispec assembles it: FlaskPlugin takes each view's path from its route declaration, and
the operation is what the view declares with @Operation (dtserver/api/operation.py) next
to that route, so a new endpoint is documented in the file that serves it, and a view
without a declaration fails the document. Path parameters follow the route converters.
Record schemas (nodes, intents, events) come from the model dataclasses, which apispec
cannot read; the hint body schema from hints.py, built from the rules its validator
applies. tests/api/test_openapi.py checks the document against the running code.
"""
from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import types
import typing
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from apispec import APISpec
from apispec_webframeworks.flask import FlaskPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify
from werkzeug.routing import Rule, parse_converter_args
from werkzeug.routing.converters import IntegerConverter

import dtserver
from dtserver.api import hints
from dtserver.api.operation import (ADMIN, HINT, JSON, TIME, Operation, closed_object,
                                    declared, nullable, ref)
from dtserver.model import Intent, NodeRecord, NodeState
from dtserver.store import Event

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
# Methods every route answers by itself; they are not operations of ours.
_IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})
# <converter(arguments):name>, the rule syntax of werkzeug.routing.
_RULE_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\((?P<arguments>.*?)\))?:)?(?P<name>\w+)>")

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
_BEARER = "Authorization: Bearer <token>"
SECURITY_SCHEMES = {
    "adminToken": {"type": "http", "scheme": "bearer",
                   "description": f"{_BEARER}: the admin token (DT_TOKEN_FILE); every "
                                  "mutation but hints needs it"},
    "hintToken": {"type": "http", "scheme": "bearer",
                  "description": f"{_BEARER}: the hint token (DT_HINT_TOKEN_FILE), needed by "
                                 "POST /v1/hints only when configured"},
}


class UndeclaredOperation(LookupError):
    """A route whose view has no @Operation: it would be served undocumented."""


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
            return ref(annotation.__name__)
        # bool before int: True is an int to Python, not to JSON Schema.
        for python_type, schema in ((bool, {"type": "boolean"}), (str, {"type": "string"}),
                                    (int, {"type": "integer"}), (float, {"type": "number"}),
                                    (datetime, TIME), (timedelta, {"type": "number"})):
            if issubclass(annotation, python_type):
                return dict(schema)
        if dataclasses.is_dataclass(annotation):
            return ref(annotation.__name__)
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
    schemas["Error"] = closed_object({"error": closed_object(
        {"code": {"type": "string", "minLength": 1}, "message": {"type": "string"}})})
    schemas["Hint"] = {**hints.hint_schema(), "examples": [hints.HINT_EXAMPLE]}
    schemas["HintAccepted"] = {
        **hints.answer_schema(),
        "description": "id: the stored hint, null when it was not stored. servable: true "
                       "when some pool could run the job; false when no pool ever could "
                       "(reason says why; the hint is not stored); null when that is not "
                       "ours to judge (no pool catalogue yet, a queue no pool serves, no "
                       "queue named while pools depend on it, a job pinned to a host).",
        "examples": [example["value"] for example in hints.ANSWER_EXAMPLES.values()]}
    schemas["IntentAccepted"] = closed_object({"intent": ref("Intent")})
    schemas["Health"] = closed_object(
        {"status": {"enum": ["ok", "stale", "store_unavailable"]},
         "limit_seconds": {"type": "number"}},
        {"reason": {"type": "string"}, "age_seconds": {"type": "number"},
         "last_pass_ok": {"type": "boolean"}})
    schemas["Status"] = closed_object(
        {"time": TIME, "sleeping": {"type": "boolean"},
         "last_pass": nullable({"type": "object"}),
         "nodes": {"type": "object", "additionalProperties": {"type": "integer"}},
         "pools": {"type": "object"}, "plan": nullable({"type": "object"}),
         "events": {"type": "array", "items": ref("Event")}})
    return dict(sorted(schemas.items()))


# --- the document -----------------------------------------------------------------------

def _path_parameters(app: Flask, rule: Rule) -> list[dict[str, Any]]:
    """One parameter per rule argument, its schema from the converter the rule names."""
    parameters = []
    for match in sorted(_RULE_ARGUMENT.finditer(rule.rule), key=lambda m: m["name"]):
        args, kwargs = parse_converter_args(match["arguments"] or "")
        converter = app.url_map.converters[match["converter"] or "default"](
            app.url_map, *args, **kwargs)
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if isinstance(converter, IntegerConverter):
            schema = {"type": "integer"}
            if not converter.signed:
                schema["minimum"] = 0
            if converter.min is not None:
                schema["minimum"] = max(converter.min, schema.get("minimum", converter.min))
            if converter.max is not None:
                schema["maximum"] = converter.max
        parameters.append({"name": match["name"], "in": "path", "required": True,
                           "schema": schema})
    return parameters


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": _ERROR_DESCRIPTIONS[status],
                                "content": {JSON: {"schema": ref("Error")}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {
            "description": 'Bearer realm="dynamictorque"', "schema": {"type": "string"}}}
    if status == 429:
        response["headers"] = {"Retry-After": {
            "description": "Seconds until waiting hints have left (one hint TTL)",
            "schema": {"type": "string"}}}
    return response


def _security(operation: Operation) -> list[dict[str, list[str]]]:
    if operation.access == ADMIN:
        return [{"adminToken": []}]
    if operation.access == HINT:
        return [{}, {"hintToken": []}, {"adminToken": []}]
    return []


def _operation(app: Flask, rule: Rule, view: Callable[..., Any], declaration: Operation
               ) -> dict[str, Any]:
    ok_response: dict[str, Any] = {
        "description": declaration.summary,
        "content": {media: {"schema": schema} if schema is not None else {}
                    for media, schema in declaration.ok.items()}}
    if declaration.ok_examples:
        ok_response["content"][JSON]["examples"] = dict(declaration.ok_examples)
    if declaration.ok_headers:
        ok_response["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                                  for name, text in declaration.ok_headers.items()}
    responses: dict[str, Any] = {str(declaration.status): ok_response}
    responses.update({str(status): answer for status, answer in declaration.other.items()})
    for status in declaration.errors:
        responses[str(status)] = _error_response(status)
    if rule.arguments and 404 not in declaration.errors:
        # A path parameter that matches nothing is a 404 before the view runs.
        responses["404"] = _error_response(404)
    operation: dict[str, Any] = {
        "operationId": rule.endpoint.replace(".", "_"),
        "tags": [rule.endpoint.split(".", 1)[0]],
        "summary": declaration.summary,
        "security": _security(declaration),
        "responses": dict(sorted(responses.items())),
    }
    description = inspect.getdoc(view)
    if description:
        operation["description"] = description
    parameters = [*_path_parameters(app, rule), *declaration.query]
    if parameters:
        operation["parameters"] = parameters
    if declaration.body is not None:
        body: dict[str, Any] = {"schema": declaration.body}
        if declaration.body_example is not None:
            body["example"] = declaration.body_example
        operation["requestBody"] = {"required": True, "content": {JSON: body}}
    return operation


def openapi_document(app: Flask) -> dict[str, Any]:
    """Every view of `app` but Flask's static files; UndeclaredOperation names one that
    has no @Operation."""
    spec = APISpec(
        title="dynamictorque", version=dtserver.__version__, openapi_version=OPENAPI_VERSION,
        plugins=[FlaskPlugin()],
        info={"description": "Elastic TORQUE/PBS autoscaler. The API records hints and admin "
                             "intents for the reconciler and reports what it last stored. "
                             "Every error is {\"error\": {\"code\", \"message\"}}."})
    for name, schema in component_schemas().items():
        spec.components.schema(name, schema)
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    for endpoint, view in sorted(app.view_functions.items()):
        if endpoint == "static":
            continue
        declaration = declared(view)
        if declaration is None:
            raise UndeclaredOperation(
                f"{endpoint} has no @Operation (dtserver/api/operation.py)")
        # FlaskPlugin documents the first rule of a view; ours have one each.
        [rule] = app.url_map.iter_rules(endpoint)
        methods = sorted((rule.methods or set()) - _IMPLICIT_METHODS)
        spec.path(view=view, app=app, operations={
            method.lower(): _operation(app, rule, view, declaration) for method in methods})
    return spec.to_dict()


@bp.get("/v1/openapi.json")
@Operation("This document", 200, {JSON: {"type": "object"}}, errors=())
def openapi() -> Response:
    """The OpenAPI 3.1 document of the running app."""
    return jsonify(openapi_document(current_app))
