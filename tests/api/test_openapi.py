"""GET /v1/openapi.json matches the code: routes, methods, hint schema, security, records."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec

from dtserver.api import create_app
from dtserver.api.errors import ApiError
from dtserver.api.hints import HINT_EXAMPLE, validate_hint
from dtserver.api.openapi import UndeclaredOperation, openapi_document
from dtserver.api.operation import ADMIN, HINT, PUBLIC, Operation, declared
from dtserver.api.settings import ApiSettings
from dtserver.clock import FakeClock
from dtserver.model import DrainKind, IntentKind, NodeState
from dtserver.store import PassReport
from dtserver.store.sqlite import SqliteStore
from tests.api.builders import T0, record
from tests.api.conftest import ADMIN_TOKEN, HINT_TOKEN, write_token

# Values that satisfy every path parameter of the app, to call each route for real.
PATH_VALUES = {"name": "cloud-001", "job_id": "12.vm", "intent_id": "1"}


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def schema_validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    """A validator for one component schema, its $refs resolved inside the document."""
    root = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def concrete(path: str) -> str:
    for name, value in PATH_VALUES.items():
        path = path.replace(f"{{{name}}}", value)
    return path


def views(app: Flask) -> dict[str, Any]:
    """Every view of the app but the static files Flask may add by itself."""
    return {endpoint: view for endpoint, view in app.view_functions.items()
            if endpoint != "static"}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, operation) for path, item in document["paths"].items()
            for method, operation in item.items()]


# -- the document against the routes -----------------------------------------------------------

def test_document_is_a_valid_openapi_3_1_document(document: dict[str, Any]) -> None:
    validate_spec(document)

    assert document["openapi"] == "3.1.0"


def test_every_route_is_documented_with_each_of_its_methods(
        app: Flask, document: dict[str, Any]) -> None:
    rules = [rule for endpoint in views(app) for rule in app.url_map.iter_rules(endpoint)]
    assert rules
    for rule in rules:
        path = re.sub(r"<(?:[^<>]+:)?(\w+)>", r"{\1}", rule.rule)
        methods = {method.lower() for method in rule.methods or ()} - {"head", "options"}
        assert set(document["paths"][path]) == methods, rule.rule


def test_every_documented_operation_is_what_the_view_serving_it_declares(
        app: Flask, document: dict[str, Any]) -> None:
    adapter = app.url_map.bind("localhost")
    for path, method, operation in operations(document):
        endpoint, _ = adapter.match(concrete(path), method=method.upper())
        declaration = declared(app.view_functions[endpoint])
        assert operation["operationId"] == endpoint.replace(".", "_"), path
        assert declaration is not None and operation["summary"] == declaration.summary, path
        assert str(declaration.status) in operation["responses"], path


def test_each_view_declares_its_operation_next_to_its_route(app: Flask) -> None:
    for endpoint, view in views(app).items():
        assert isinstance(declared(view), Operation), endpoint


def test_a_view_without_a_declaration_fails_the_document(app: Flask) -> None:
    app.add_url_rule("/v1/undeclared", "undeclared", lambda: {"served": True})

    with pytest.raises(UndeclaredOperation, match="undeclared"):
        openapi_document(app)


def test_path_parameters_follow_the_route_converters(document: dict[str, Any]) -> None:
    [intent_id] = document["paths"]["/v1/intents/{intent_id}"]["get"]["parameters"]
    [name] = document["paths"]["/v1/nodes/{name}/kill"]["post"]["parameters"]

    assert intent_id == {"name": "intent_id", "in": "path", "required": True,
                         "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}}
    assert name["schema"] == {"type": "string", "minLength": 1}


def test_every_error_response_uses_the_one_error_shape(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400 and path != "/healthz":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)


# -- the hint body schema against the validator --------------------------------------------------

def test_hint_example_passes_the_real_validator_and_the_schema(
        client: FlaskClient, document: dict[str, Any]) -> None:
    body = document["paths"]["/v1/hints"]["post"]["requestBody"]["content"]["application/json"]

    assert body["example"] == HINT_EXAMPLE
    assert document["components"]["schemas"]["Hint"]["examples"] == [HINT_EXAMPLE]
    validate_hint(copy.deepcopy(HINT_EXAMPLE))
    schema_validator(document, "Hint").validate(HINT_EXAMPLE)
    assert client.post("/v1/hints", json=HINT_EXAMPLE).status_code == 202


def with_fields(**fields: Any) -> dict[str, Any]:
    return {"user": "alice", **fields}


# Each body: what the validator and the schema must both say about it. The schema cannot
# parse the request grammar, so only shape, type, length and character errors are here.
HINT_BODIES = [
    (with_fields(), True),
    ({"user": "a" * 64}, True),
    ({"user": "a" * 65}, False),
    ({"user": "svc$"}, True),
    ({"user": "-alice"}, False),
    ({"user": ""}, False),
    ({"user": None}, False),
    ({}, False),
    (with_fields(colour="blue"), False),
    (with_fields(queue="batch@server:15001"), True),
    (with_fields(queue="batch queue"), False),
    (with_fields(queue=None, account=None, array=None, submit_host=None, job_name=None), True),
    (with_fields(account="x" * 255), True),
    (with_fields(account="x" * 256), False),
    (with_fields(account="tab\tis fine"), True),
    (with_fields(account="new\nline"), False),
    (with_fields(account="del\x7f"), False),
    (with_fields(job_name=7), False),
    (with_fields(submit_host="host/evil"), False),
    (with_fields(resources=[]), True),
    (with_fields(resources=None), False),
    (with_fields(resources="nodes=1"), False),
    (with_fields(resources=["nodes=1"] * 64), True),
    (with_fields(resources=["nodes=1"] * 65), False),
    (with_fields(resources=["nodes=1:" + "p" * 1016]), True),
    (with_fields(resources=["nodes=1:" + "p" * 1017]), False),
    (with_fields(directives=["#PBS -N x\x00"]), False),
    (with_fields(directives=["#PBS -N x"] * 257), False),
]


@pytest.mark.parametrize("body, valid", HINT_BODIES)
def test_hint_schema_and_validator_agree(document: dict[str, Any], body: dict[str, Any],
                                         valid: bool) -> None:
    try:
        validate_hint(body)
        accepted = True
    except ApiError as error:
        assert error.code not in ("invalid_resources", "invalid_array"), error.message
        accepted = False

    assert accepted is valid
    assert schema_validator(document, "Hint").is_valid(body) is valid


# -- security as the code enforces it ----------------------------------------------------------

def call(client: FlaskClient, path: str, method: str, headers: dict[str, str] | None = None
         ) -> Any:
    return client.open(concrete(path), method=method.upper(), headers=headers or {},
                       json=HINT_EXAMPLE if path == "/v1/hints" else None)


def access_of(operation: dict[str, Any]) -> str:
    schemes = [set(requirement) for requirement in operation["security"]]
    if schemes == []:
        return PUBLIC
    if schemes == [{"adminToken"}]:
        return ADMIN
    assert schemes == [set(), {"hintToken"}, {"adminToken"}]
    return HINT


@pytest.fixture
def guarded_client(tmp_path: Path, settings: ApiSettings, store: SqliteStore,
                   clock: FakeClock) -> FlaskClient:
    """Both tokens configured, and a node record for the kill route to find."""
    store.insert_record(record("cloud-001"))
    hint_file = write_token(tmp_path / "hint.token", HINT_TOKEN, 0o644)
    app = create_app(ApiSettings(db_path=settings.db_path, token_file=settings.token_file,
                                 hint_token_file=hint_file), store=store, clock=clock)
    return app.test_client()


def test_documented_security_is_what_each_route_enforces(
        guarded_client: FlaskClient, document: dict[str, Any]) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for path, method, operation in operations(document):
        access = access_of(operation)
        without = call(guarded_client, path, method)
        with_hint_token = call(guarded_client, path, method,
                               {"Authorization": f"Bearer {HINT_TOKEN}"})
        with_admin_token = call(guarded_client, path, method, admin)
        assert with_admin_token.status_code not in (401, 403), (path, method)
        if access == PUBLIC:
            assert without.status_code not in (401, 403), (path, method)
        else:
            assert without.status_code == 401, (path, method)
            assert "401" in operation["responses"], (path, method)
            assert (with_hint_token.status_code == 401) is (access == ADMIN), (path, method)


def test_admin_routes_answer_403_when_no_admin_token_is_configured(
        tmp_path: Path, store: SqliteStore, clock: FakeClock,
        document: dict[str, Any]) -> None:
    client = create_app(ApiSettings(db_path=tmp_path / "dt.db"), store=store,
                        clock=clock).test_client()
    admin_operations = [(path, method, operation)
                        for path, method, operation in operations(document)
                        if access_of(operation) == ADMIN]

    assert admin_operations
    for path, method, operation in admin_operations:
        assert call(client, path, method).status_code == 403, (path, method)
        assert "403" in operation["responses"], (path, method)


# -- response schemas against real answers -------------------------------------------------------

def test_records_intents_and_events_as_served_match_their_schemas(
        client: FlaskClient, store: SqliteStore, document: dict[str, Any],
        admin_headers: dict[str, str]) -> None:
    store.insert_record(record("cloud-001", instance_id="i-1", address="10.0.0.5",
                               drain=DrainKind.ADMIN, down_since=T0, reason="draining"))
    store.insert_record(record("cloud-002", state=NodeState.DELETED))
    store.add_event(T0, "launch", "cloud-001 launching", hostname="cloud-001", pool="cloud")
    store.save_pass(PassReport(time=T0, duration_seconds=0.5, ok=True, summary={"actions": 0}))
    intent = store.add_intent(IntentKind.KILL, "cloud-001", T0)

    answers = {
        "NodeRecord": client.get("/v1/nodes?include_deleted=true").get_json()["nodes"],
        "Event": client.get("/v1/nodes/cloud-001").get_json()["history"],
        "Intent": [client.get(f"/v1/intents/{intent.id}").get_json()["intent"]],
        "IntentAccepted": [client.post("/v1/drain-all", headers=admin_headers).get_json()],
        "Status": [client.get("/status", headers={"Accept": "application/json"}).get_json()],
        "Health": [client.get("/healthz").get_json()],
    }

    assert len(answers["NodeRecord"]) == 2 and answers["Event"]
    for name, items in answers.items():
        for item in items:
            schema_validator(document, name).validate(item)


def test_record_schemas_list_every_model_field(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]

    assert schemas["NodeRecord"]["required"][:3] == ["id", "hostname", "pool"]
    assert schemas["NodeState"]["enum"] == [state.value for state in NodeState]
    assert schemas["NodeRecord"]["properties"]["drain"] == {
        "anyOf": [{"$ref": "#/components/schemas/DrainKind"}, {"type": "null"}]}
