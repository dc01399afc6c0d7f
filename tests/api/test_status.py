"""GET /status, /healthz, /v1/nodes, /v1/plan and the sleep switch, all from the store."""
from __future__ import annotations

from datetime import timedelta

import pytest
from flask.testing import FlaskClient

from dtserver.actions import ExpireHint, JobVerdict, LaunchInstance, Plan, VerdictStatus
from dtserver.clock import FakeClock
from dtserver.model import ErrorKind, NodeState, PoolHealth
from dtserver.store import PassReport
from dtserver.store.sqlite import SqliteStore
from tests.api.builders import T0, record
from tests.api.test_hints import assert_error


def fill_store(store: SqliteStore) -> None:
    store.insert_record(record("cloud-001", state=NodeState.IDLE))
    store.insert_record(record("cloud-002", state=NodeState.BUSY))
    store.insert_record(record("cloud-003", state=NodeState.BOOTING))
    store.insert_record(record("gpu-001", pool="gpu", state=NodeState.FAILED, cores=8))
    store.insert_record(record("cloud-004", state=NodeState.DELETED))
    store.save_pool_health(PoolHealth(pool="gpu", consecutive_failures=3,
                                      backoff_until=T0 + timedelta(minutes=5),
                                      last_error=ErrorKind.CAPACITY, last_message="quota",
                                      stopped=True))
    store.save_pass(PassReport(time=T0, duration_seconds=0.25, ok=True, summary={"launched": 1}))
    store.save_plan(T0, Plan(
        actions=(LaunchInstance("cloud-005", "cloud", "m1.large", 4, "demand: 1 job"),
                 LaunchInstance("cloud-006", "cloud", "m1.large", 4, "demand: 1 job"),
                 ExpireHint(7, "matched")),
        verdicts=(JobVerdict("12.vm", VerdictStatus.LAUNCHING, "cloud-005"),
                  JobVerdict("13.vm", VerdictStatus.LAUNCHING, "cloud-006"),
                  JobVerdict("14.vm", VerdictStatus.NOT_ELIGIBLE, "held")),
        notes=("gpu pool stopped",)))
    store.add_event(T0, "launch", "launch requested", hostname="cloud-003", pool="cloud")
    store.add_event(T0 + timedelta(seconds=1), "failure", "boot timeout", hostname="gpu-001",
                    pool="gpu")


def test_status_is_plain_text_for_curl(client: FlaskClient, store: SqliteStore,
                                       clock: FakeClock) -> None:
    fill_store(store)
    clock.advance(12)

    response = client.get("/status", headers={"Accept": "*/*"})

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert "dynamictorque status at 2026-01-02T03:04:17Z" in text
    assert "mode: active" in text
    assert "last pass: 12 s ago, ok, took 0.25 s" in text
    assert "nodes: 4 (booting 1, busy 1, failed 1, idle 1)" in text
    assert "  cloud: 3 (booting 1, busy 1, idle 1), 12 cores" in text
    assert "  gpu: 1 (failed 1), 0 cores, 3 failures (capacity)" in text
    assert "STOPPED" in text
    assert "plan: 12 s ago" in text
    assert "  queued jobs: 3 (launching 2, not-eligible 1)" in text
    assert "  actions: 3 (ExpireHint 1, LaunchInstance 2)" in text
    assert "  note: gpu pool stopped" in text
    assert "2026-01-02T03:04:06Z failure gpu-001 (gpu) boot timeout" in text
    assert "cloud-004" not in text


def test_status_on_an_empty_store_says_nothing_is_recorded(client: FlaskClient) -> None:
    text = client.get("/status").get_data(as_text=True)

    assert "last pass: none recorded" in text
    assert "nodes: 0" in text
    assert "plan: none recorded" in text
    assert "recent events: none" in text


def test_status_shows_sleep_mode(client: FlaskClient, store: SqliteStore) -> None:
    store.set_sleeping(True, T0)

    assert "SLEEPING" in client.get("/status").get_data(as_text=True)


def test_status_is_json_when_asked(client: FlaskClient, store: SqliteStore,
                                   clock: FakeClock) -> None:
    fill_store(store)
    clock.advance(30)

    response = client.get("/status", headers={"Accept": "application/json"})

    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["time"] == "2026-01-02T03:04:35Z"
    assert body["sleeping"] is False
    assert body["nodes"] == {"booting": 1, "busy": 1, "failed": 1, "idle": 1}
    assert body["last_pass"] == {"time": "2026-01-02T03:04:05Z", "age_seconds": 30.0,
                                 "ok": True, "duration_seconds": 0.25,
                                 "summary": {"launched": 1}}
    assert body["pools"]["cloud"] == {"nodes": 3, "cores": 12, "health": None,
                                      "states": {"booting": 1, "busy": 1, "idle": 1}}
    assert body["pools"]["gpu"]["health"] == {
        "pool": "gpu", "consecutive_failures": 3, "backoff_until": "2026-01-02T03:09:05Z",
        "last_error": "capacity", "last_message": "quota", "stopped": True}
    assert body["plan"] == {"time": "2026-01-02T03:04:05Z", "age_seconds": 30.0,
                            "jobs": {"launching": 2, "not-eligible": 1},
                            "actions": {"ExpireHint": 1, "LaunchInstance": 2},
                            "notes": ["gpu pool stopped"]}
    assert [event["kind"] for event in body["events"]] == ["failure", "launch"]


@pytest.mark.parametrize("age, status", [(0, 200), (59, 200), (60, 200), (61, 503), (3600, 503)])
def test_healthz_follows_the_age_of_the_last_pass(
        client: FlaskClient, store: SqliteStore, clock: FakeClock, age: int, status: int) -> None:
    store.save_pass(PassReport(time=T0, duration_seconds=0.1, ok=True, summary={}))
    clock.advance(age)

    response = client.get("/healthz")

    assert response.status_code == status
    body = response.get_json()
    assert body["status"] == ("ok" if status == 200 else "stale")
    assert body["age_seconds"] == age
    assert body["limit_seconds"] == 60


def test_healthz_is_503_before_the_first_pass(client: FlaskClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.get_json()["status"] == "stale"


def test_a_pass_that_raised_shows_failed_with_its_error(
        client: FlaskClient, store: SqliteStore) -> None:
    store.save_pass(PassReport(time=T0, duration_seconds=0.1, ok=False,
                               summary={"error": "KeyError: 'state'", "pass_errors": 2}))

    text = client.get("/status", headers={"Accept": "*/*"}).get_data(as_text=True)
    body = client.get("/status", headers={"Accept": "application/json"}).get_json()
    page = client.get("/status", headers={"Accept": "text/html"}).get_data(as_text=True)

    assert "last pass: 0 s ago, FAILED, took 0.10 s: KeyError: 'state'" in text
    assert body["last_pass"]["ok"] is False
    assert body["last_pass"]["summary"]["error"] == "KeyError: 'state'"
    assert "FAILED (KeyError: &#39;state&#39;)" in page


def test_healthz_reports_a_failed_but_recent_pass_as_alive(
        client: FlaskClient, store: SqliteStore) -> None:
    store.save_pass(PassReport(time=T0, duration_seconds=0.1, ok=False, summary={}))

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json()["last_pass_ok"] is False


def test_nodes_lists_live_records_as_json(client: FlaskClient, store: SqliteStore) -> None:
    fill_store(store)

    nodes = client.get("/v1/nodes").get_json()["nodes"]

    assert [node["hostname"] for node in nodes] == ["cloud-001", "cloud-002", "cloud-003",
                                                    "gpu-001"]
    assert nodes[0] == {
        "id": "rec-cloud-001", "hostname": "cloud-001", "pool": "cloud", "flavor": "m1.large",
        "cores": 4, "state": "idle", "created": "2026-01-02T03:04:05Z",
        "state_since": "2026-01-02T03:04:05Z", "instance_id": None, "address": None,
        "drain": None, "down_since": None, "reason": "", "prewarm": False}


def test_nodes_include_deleted_records_on_request(client: FlaskClient, store: SqliteStore) -> None:
    fill_store(store)

    nodes = client.get("/v1/nodes?include_deleted=true").get_json()["nodes"]

    assert "cloud-004" in [node["hostname"] for node in nodes]


def test_nodes_refuse_a_bad_include_deleted_value(client: FlaskClient) -> None:
    assert_error(client.get("/v1/nodes?include_deleted=maybe"), 400, "invalid_value")


def test_node_by_name_prefers_the_live_record_of_a_reused_slot(
        client: FlaskClient, store: SqliteStore) -> None:
    store.insert_record(record("cloud-001", record_id="new", state=NodeState.BUSY))
    store.insert_record(record("cloud-001", record_id="old", state=NodeState.DELETED,
                               since=T0 + timedelta(hours=1)))

    node = client.get("/v1/nodes/cloud-001").get_json()["node"]

    assert node["id"] == "new"


def test_node_by_name_falls_back_to_the_newest_deleted_record(
        client: FlaskClient, store: SqliteStore) -> None:
    store.insert_record(record("cloud-001", record_id="older", state=NodeState.DELETED))
    store.insert_record(record("cloud-001", record_id="newer", state=NodeState.DELETED,
                               since=T0 + timedelta(hours=1)))

    assert client.get("/v1/nodes/cloud-001").get_json()["node"]["id"] == "newer"


def test_unknown_node_is_a_json_404(client: FlaskClient) -> None:
    assert_error(client.get("/v1/nodes/nowhere"), 404, "not_found")


def test_plan_is_null_before_the_first_pass(client: FlaskClient) -> None:
    assert client.get("/v1/plan").get_json() == {"time": None, "plan": None}


def test_plan_returns_the_last_saved_plan(client: FlaskClient, store: SqliteStore) -> None:
    store.save_plan(T0, Plan(actions=(ExpireHint(3, "matched job 12.vm"),),
                             verdicts=(JobVerdict("12.vm", VerdictStatus.LAUNCHING,
                                                  "launching cloud-005", "cloud", 2),),
                             notes=("nothing else to do",)))

    assert client.get("/v1/plan").get_json() == {
        "time": "2026-01-02T03:04:05Z", "plan": {
            "actions": [{"type": "ExpireHint", "hint_id": 3, "reason": "matched job 12.vm",
                         "strike_user": None, "strike_source": None}],
            "verdicts": [{"job_id": "12.vm", "status": "launching",
                          "reason": "launching cloud-005", "pool": "cloud", "cores": 2,
                          "hosts": []}],
            "notes": ["nothing else to do"]}}


def test_sleep_then_wake_toggles_the_flag_and_records_events(
        client: FlaskClient, store: SqliteStore, admin_headers: dict[str, str]) -> None:
    slept = client.post("/v1/sleep", headers=admin_headers)
    assert (slept.status_code, slept.get_json()) == (200, {"sleeping": True})
    assert store.is_sleeping() is True

    woke = client.post("/v1/wake", headers=admin_headers)
    assert (woke.status_code, woke.get_json()) == (200, {"sleeping": False})
    assert store.is_sleeping() is False
    assert [event.kind for event in store.events()] == ["wake", "sleep"]
