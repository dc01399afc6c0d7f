"""POST /v1/hints: validation, storage, size limit, hint token, reconciler wakeup."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dtserver.api import create_app
from dtserver.api.settings import ApiSettings
from dtserver.clock import FakeClock
from dtserver.store import HintLimits
from dtserver.store.sqlite import SqliteStore
from tests.api.builders import T0, hint
from tests.api.conftest import ADMIN_TOKEN, HINT_TOKEN, write_token


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.data
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_valid_hint_is_stored_as_posted_and_answered_202(
        client: FlaskClient, store: SqliteStore) -> None:
    body = hint(array="1-10%2", account="physics")

    response = client.post("/v1/hints", json=body)

    assert response.status_code == 202
    stored = store.hints()
    assert [item.id for item in stored] == [response.get_json()["id"]]
    assert stored[0].payload == body
    assert stored[0].received == T0


def test_minimal_hint_needs_only_the_user(client: FlaskClient, store: SqliteStore) -> None:
    response = client.post("/v1/hints", json={"user": "bob"})

    assert response.status_code == 202
    assert store.hints()[0].payload == {"user": "bob"}


def test_each_hint_gets_its_own_id(client: FlaskClient) -> None:
    first = client.post("/v1/hints", json=hint()).get_json()["id"]
    second = client.post("/v1/hints", json=hint()).get_json()["id"]

    assert first != second


@pytest.mark.parametrize("body, code, fragment", [
    ({"user": "alice", "colour": "blue"}, "unknown_field", "colour"),
    ({"queue": "batch"}, "missing_field", "user"),
    ({"user": None}, "missing_field", "user"),
    ({"user": 42}, "invalid_type", "user"),
    ({"user": ""}, "invalid_value", "user"),
    ({"user": "-alice"}, "invalid_value", "user"),
    ({"user": "al ice"}, "invalid_value", "user"),
    ({"user": "root;rm"}, "invalid_value", "user"),
    ({"user": "a" * 65}, "invalid_value", "longer than 64"),
    ({"user": "alice", "queue": 7}, "invalid_type", "queue"),
    ({"user": "alice", "queue": ""}, "invalid_value", "queue"),
    ({"user": "alice", "queue": "batch queue"}, "invalid_value", "queue"),
    ({"user": "alice", "account": ["a"]}, "invalid_type", "account"),
    ({"user": "alice", "account": "a\nb"}, "invalid_value", "control characters"),
    ({"user": "alice", "submit_host": "host/evil"}, "invalid_value", "submit_host"),
    ({"user": "alice", "job_name": True}, "invalid_type", "job_name"),
    ({"user": "alice", "job_name": "x" * 256}, "invalid_value", "255"),
    ({"user": "alice", "array": 10}, "invalid_type", "array"),
    ({"user": "alice", "array": "5-1"}, "invalid_array", "backwards"),
    ({"user": "alice", "resources": "nodes=1"}, "invalid_type", "resources"),
    ({"user": "alice", "resources": None}, "invalid_type", "resources"),
    ({"user": "alice", "resources": [1]}, "invalid_type", "resources"),
    ({"user": "alice", "resources": ["nodes=1"] * 65}, "invalid_value", "64"),
    ({"user": "alice", "resources": ["walltime=" + "1" * 1025]}, "invalid_value", "resources[0]"),
    ({"user": "alice", "resources": ["nodes=1\x00"]}, "invalid_value", "control characters"),
    ({"user": "alice", "resources": ["nodes=2:ppn=0"]}, "invalid_resources", "ppn"),
    ({"user": "alice", "resources": ["nodes=2+"]}, "invalid_resources", "nodes"),
    ({"user": "alice", "resources": ["garbage"]}, "invalid_resources", "garbage"),
    ({"user": "alice", "resources": ["mem=12parsecs"]}, "invalid_resources", "mem"),
    ({"user": "alice", "directives": {"a": 1}}, "invalid_type", "directives"),
    ({"user": "alice", "directives": ["#PBS -N x"] * 257}, "invalid_value", "256"),
    ({"user": "alice", "directives": ["#PBS -N " + "x" * 1024]}, "invalid_value", "directives[0]"),
])
def test_invalid_hint_is_refused_with_400_and_stores_nothing(
        client: FlaskClient, store: SqliteStore, body: dict[str, Any], code: str,
        fragment: str) -> None:
    error = assert_error(client.post("/v1/hints", json=body), 400, code)

    assert fragment in error["message"]
    assert store.hints() == ()


@pytest.mark.parametrize("data", [
    b"{not json",
    b"",
    b"\xff\xfe\xfa",
    b'{"user": "alice", "user": "mallory"}',
    b"[" * 5000 + b"]" * 5000,
    b'{"user": "alice", "job_name": ' + b"9" * 4400 + b"}",
], ids=["broken", "empty", "not-utf8", "duplicate-key", "deep", "huge-int"])
def test_body_that_is_not_one_clean_json_document_is_a_400(
        settings: ApiSettings, store: SqliteStore, clock: FakeClock, data: bytes) -> None:
    # The size limit stays out of the way so the JSON parser sees the whole body.
    app = create_app(ApiSettings(db_path=settings.db_path, max_body_bytes=64 * 1024),
                     store=store, clock=clock)

    response = app.test_client().post("/v1/hints", data=data, content_type="application/json")

    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize("body", [[], "alice", 3, None], ids=["list", "string", "number", "null"])
def test_json_that_is_not_an_object_is_a_400(client: FlaskClient, body: Any) -> None:
    response = client.post("/v1/hints", data=json.dumps(body), content_type="application/json")

    assert_error(response, 400, "invalid_type")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_body_that_is_not_declared_json_is_a_415(
        client: FlaskClient, content_type: str | None) -> None:
    response = client.post("/v1/hints", data=json.dumps(hint()), content_type=content_type)

    assert_error(response, 415, "unsupported_media_type")


def test_json_with_charset_parameter_is_accepted(client: FlaskClient) -> None:
    response = client.post("/v1/hints", data=json.dumps(hint()),
                           content_type="application/json; charset=utf-8")

    assert response.status_code == 202


def test_body_over_the_size_limit_is_a_413(client: FlaskClient, store: SqliteStore) -> None:
    body = hint(job_name="x" * 200, directives=["#PBS -N " + "y" * 1000] * 4)  # > 4096 bytes

    assert_error(client.post("/v1/hints", json=body), 413, "request_entity_too_large")
    assert store.hints() == ()


def test_body_just_under_the_size_limit_is_accepted(client: FlaskClient) -> None:
    body = hint(directives=["#PBS -N " + "y" * 1000] * 3)
    assert len(json.dumps(body)) < 4096

    assert client.post("/v1/hints", json=body).status_code == 202


def test_hints_need_no_token_when_no_hint_token_is_configured(client: FlaskClient) -> None:
    assert client.post("/v1/hints", json=hint()).status_code == 202


@pytest.fixture
def hint_token_client(tmp_path: Path, settings: ApiSettings, store: SqliteStore,
                      clock: FakeClock) -> FlaskClient:
    # 0644: the filter runs as the submitting user, who must be able to read it.
    hint_file = write_token(tmp_path / "hint.token", HINT_TOKEN, 0o644)
    app = create_app(ApiSettings(db_path=settings.db_path, token_file=settings.token_file,
                                 hint_token_file=hint_file), store=store, clock=clock)
    return app.test_client()


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"Authorization": "Bearer wrong"}, 401),
    ({"Authorization": f"Basic {HINT_TOKEN}"}, 401),
    ({"Authorization": f"Bearer {HINT_TOKEN}"}, 202),
    ({"Authorization": f"bearer {HINT_TOKEN}"}, 202),
    ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, 202),
], ids=["missing", "wrong", "basic", "hint-token", "lowercase-scheme", "admin-token"])
def test_configured_hint_token_is_required_for_hints(
        hint_token_client: FlaskClient, store: SqliteStore, headers: dict[str, str],
        status: int) -> None:
    response = hint_token_client.post("/v1/hints", json=hint(), headers=headers)

    assert response.status_code == status
    if status == 401:
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert store.hints() == ()


def test_stored_hint_wakes_the_reconciler_through_its_fifo(
        tmp_path: Path, settings: ApiSettings, store: SqliteStore, clock: FakeClock) -> None:
    fifo = tmp_path / "wakeup"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        app = create_app(ApiSettings(db_path=settings.db_path, wakeup_path=fifo),
                         store=store, clock=clock)

        assert app.test_client().post("/v1/hints", json=hint()).status_code == 202

        assert os.read(reader, 16) == b"\n"
    finally:
        os.close(reader)


def test_hint_is_stored_when_nobody_listens_on_the_fifo(
        tmp_path: Path, settings: ApiSettings, store: SqliteStore, clock: FakeClock) -> None:
    fifo = tmp_path / "wakeup"
    os.mkfifo(fifo)
    app = create_app(ApiSettings(db_path=settings.db_path, wakeup_path=fifo),
                     store=store, clock=clock)

    assert app.test_client().post("/v1/hints", json=hint()).status_code == 202
    assert len(store.hints()) == 1


def test_hint_is_stored_when_the_wakeup_path_does_not_exist(
        tmp_path: Path, settings: ApiSettings, store: SqliteStore, clock: FakeClock) -> None:
    missing = tmp_path / "no-such-fifo"
    app = create_app(ApiSettings(db_path=settings.db_path, wakeup_path=missing),
                     store=store, clock=clock)

    assert app.test_client().post("/v1/hints", json=hint()).status_code == 202
    assert not missing.exists()
    assert len(store.hints()) == 1


def test_get_on_hints_is_a_json_405(app: Flask) -> None:
    response = app.test_client().get("/v1/hints")

    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def limited_client(settings: ApiSettings, store: SqliteStore, clock: FakeClock,
                   limits: HintLimits) -> FlaskClient:
    app = create_app(replace(settings, hint_limits=limits, hint_retry_seconds=20),
                     store=store, clock=clock)
    return app.test_client()


def test_hints_beyond_a_users_limit_are_refused_with_429_and_retry_after(
        settings: ApiSettings, store: SqliteStore, clock: FakeClock) -> None:
    client = limited_client(settings, store, clock, HintLimits(per_user=2))
    for _ in range(2):
        assert client.post("/v1/hints", json=hint(user="mallory")).status_code == 202

    response = client.post("/v1/hints", json=hint(user="mallory"))

    assert_error(response, 429, "too_many_hints")
    assert response.headers["Retry-After"] == "20"
    assert len(store.hints()) == 2
    # Another user is not held back by mallory's hints.
    assert client.post("/v1/hints", json=hint(user="alice")).status_code == 202
    assert [stored.source for stored in store.hints()] == ["127.0.0.1"] * 3


def test_hint_bytes_are_bounded_per_user_and_in_total(
        settings: ApiSettings, store: SqliteStore, clock: FakeClock) -> None:
    directives = ["#PBS -N " + "x" * 140] * 20                # about 3 KB a hint
    size = len(json.dumps(hint(user="user0", directives=directives), separators=(",", ":")))
    client = limited_client(settings, store, clock, HintLimits(
        bytes_per_user=int(2.5 * size), bytes_total=int(4.5 * size)))
    statuses = [client.post("/v1/hints", json=hint(user="user0", directives=directives)
                            ).status_code for _ in range(3)]
    assert statuses == [202, 202, 429]
    statuses = [client.post("/v1/hints", json=hint(user=f"user{index}", directives=directives)
                            ).status_code for index in range(1, 4)]
    assert statuses == [202, 202, 429]
    assert len(store.hints()) == 4
