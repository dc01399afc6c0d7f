"""The database file deleted under a running API: /healthz goes red and writes answer 503
instead of landing in a file nobody will ever read."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask.testing import FlaskClient

from dtserver.clock import FakeClock
from dtserver.store import PassReport
from dtserver.store.sqlite import SqliteStore
from tests.api.builders import T0, hint
from tests.api.test_hints import assert_error


def fresh_pass(store: SqliteStore, clock: FakeClock) -> None:
    store.save_pass(PassReport(time=T0, duration_seconds=0.1, ok=True, summary={}))
    clock.advance(timedelta(seconds=5))


def test_healthz_is_503_once_the_database_file_is_gone(
        client: FlaskClient, store: SqliteStore, clock: FakeClock) -> None:
    fresh_pass(store, clock)
    assert client.get("/healthz").status_code == 200

    Path(store.path).unlink()

    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "store_unavailable" and "dt.db" in body["reason"]


def test_writes_are_503_once_the_database_file_is_gone(
        client: FlaskClient, store: SqliteStore, clock: FakeClock,
        admin_headers: dict[str, str]) -> None:
    fresh_pass(store, clock)
    assert client.post("/v1/hints", json=hint()).status_code == 202

    Path(store.path).unlink()

    assert_error(client.post("/v1/hints", json=hint()), 503, "store_unavailable")
    assert_error(client.post("/v1/sleep", headers=admin_headers), 503, "store_unavailable")
