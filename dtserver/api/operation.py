"""@Operation(...): what a view answers, declared on the view under its route decorator.

dtserver/api/openapi.py turns every declaration into the view's entry in /v1/openapi.json,
so a new endpoint is documented where it is written. This module imports no view: the
views and openapi.py both import it. tests/api/test_openapi.py checks each declaration
against the running code (status codes, security, schemas).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, TypeVar

JSON = "application/json"
TEXT = "text/plain"

# Who may call: nobody needs a token to read; hints need the hint token only when one is
# configured (the admin token also works); every other mutation needs the admin token.
Access = Literal["public", "hint", "admin"]
PUBLIC: Access = "public"
HINT: Access = "hint"
ADMIN: Access = "admin"

View = TypeVar("View", bound=Callable[..., Any])
_ATTRIBUTE = "openapi_operation"


def ref(name: str) -> dict[str, str]:
    """A reference to a schema of components/schemas (dtserver/api/openapi.py)."""
    return {"$ref": f"#/components/schemas/{name}"}


def closed_object(required: Mapping[str, Any], optional: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """A JSON object with exactly these properties, `required` always present."""
    return {"type": "object", "properties": {**required, **(optional or {})},
            "required": list(required), "additionalProperties": False}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def boolean_query(name: str, description: str) -> dict[str, Any]:
    """A ?name=true/false parameter; the views lower-case the value before looking it up."""
    words = ("1", "true", "yes", "0", "false", "no")
    any_case = "|".join("".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in word)
                        for word in words)
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string", "pattern": f"^(?:{any_case})$", "default": "false"}}


TIME = {"type": "string", "format": "date-time"}
INTENT_ACCEPTED = ref("IntentAccepted")
LOCATION = {"Location": "Where GET /v1/intents/{intent_id} reports the outcome"}


@dataclass(frozen=True)
class Operation:
    """What one endpoint answers; used as a decorator, it marks the view it decorates.

    `ok` maps media types to the schema of the `status` answer (None: any body). Error
    statuses answer the one error shape; `other` holds answers of another shape, by status.
    """

    summary: str
    status: int
    ok: Mapping[str, dict[str, Any] | None]
    errors: tuple[int, ...] = (503,)
    access: Access = PUBLIC
    query: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | None = None
    body_example: dict[str, Any] | None = None
    ok_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    other: Mapping[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # Named examples of the JSON answer.
    ok_examples: Mapping[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __call__(self, view: View) -> View:
        # An attribute, not a registry: it follows the function through functools.wraps.
        setattr(view, _ATTRIBUTE, self)
        return view


def declared(view: Callable[..., Any]) -> Operation | None:
    """The Operation a view was decorated with, None when it has none."""
    found = getattr(view, _ATTRIBUTE, None)
    return found if isinstance(found, Operation) else None
