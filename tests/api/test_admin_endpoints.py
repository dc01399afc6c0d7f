"""Admin endpoints: kill, drain-all, reset-pool as intents; intents; why; the status page."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from flask.testing import FlaskClient

from dtserver.actions import JobVerdict, Plan, VerdictStatus
from dtserver.clock import FakeClock
from dtserver.model import IntentKind, IntentStatus, NodeState
from dtserver.store.sqlite import SqliteStore
from tests.api.builders import T0, record
from tests.api.test_hints import assert_error

BROWSER_ACCEPT = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                  "image/webp,*/*;q=0.8")


def save_verdicts(store: SqliteStore, *verdicts: JobVerdict) -> None:
    store.save_plan(T0, Plan(actions=(), verdicts=verdicts))


# -- intents -------------------------------------------------------------------------------

def test_kill_records_an_intent_and_answers_202(client: FlaskClient, store: SqliteStore,
                                                admin_headers: dict[str, str]) -> None:
    store.insert_record(record("cloud-001"))

    response = client.post("/v1/nodes/cloud-001/kill", headers=admin_headers)

    assert response.status_code == 202
    intent = response.get_json()["intent"]
    assert intent == {"id": intent["id"], "kind": "kill", "target": "cloud-001",
                      "status": "pending", "message": "", "created": "2026-01-02T03:04:05Z",
                      "finished": None}
    assert response.headers["Location"] == f"/v1/intents/{intent['id']}"
    (stored,) = store.intents(pending_only=True)
    assert (stored.kind, stored.target) == (IntentKind.KILL, "cloud-001")
    assert store.events()[0].message == f"intent {intent['id']} recorded: kill cloud-001"


@pytest.mark.parametrize("method, path", [("POST", "/v1/nodes/cloud-001/kill"),
                                          ("POST", "/v1/drain-all"),
                                          ("POST", "/v1/pools/cloud/reset")])
def test_every_intent_needs_the_admin_token(client: FlaskClient, store: SqliteStore,
                                            method: str, path: str) -> None:
    store.insert_record(record("cloud-001"))

    assert_error(client.open(path, method=method), 401, "unauthorized")
    assert_error(client.open(path, method=method, headers={"Authorization": "Bearer nope"}),
                 401, "unauthorized")
    assert store.intents() == ()


def test_kill_of_a_node_without_a_live_record_is_404(client: FlaskClient, store: SqliteStore,
                                                     admin_headers: dict[str, str]) -> None:
    store.insert_record(record("cloud-001", state=NodeState.DELETED))

    error = assert_error(client.post("/v1/nodes/cloud-001/kill", headers=admin_headers),
                         404, "not_found")

    assert "only kills nodes it launched" in error["message"]
    assert store.intents() == ()


def test_kill_of_a_busy_record_is_left_to_the_reconciler(
        client: FlaskClient, store: SqliteStore, admin_headers: dict[str, str]) -> None:
    # Only a fresh read of TORQUE can name the job; the record's state may be stale.
    store.insert_record(record("cloud-001", state=NodeState.BUSY))

    assert client.post("/v1/nodes/cloud-001/kill", headers=admin_headers).status_code == 202


def test_kill_refuses_a_malformed_name(client: FlaskClient,
                                       admin_headers: dict[str, str]) -> None:
    assert_error(client.post("/v1/nodes/-rf/kill", headers=admin_headers), 400, "invalid_value")


def test_a_repeated_request_returns_the_pending_intent(
        client: FlaskClient, store: SqliteStore, admin_headers: dict[str, str]) -> None:
    first = client.post("/v1/drain-all", headers=admin_headers).get_json()["intent"]
    again = client.post("/v1/drain-all", headers=admin_headers).get_json()["intent"]

    assert again["id"] == first["id"]
    assert len(store.intents()) == 1


def test_a_finished_intent_does_not_absorb_a_new_request(
        client: FlaskClient, store: SqliteStore, admin_headers: dict[str, str]) -> None:
    first = client.post("/v1/drain-all", headers=admin_headers).get_json()["intent"]
    store.complete_intent(first["id"], IntentStatus.DONE, "done", T0)

    again = client.post("/v1/drain-all", headers=admin_headers).get_json()["intent"]

    assert again["id"] != first["id"]


def test_reset_pool_records_an_intent(client: FlaskClient, store: SqliteStore,
                                      admin_headers: dict[str, str]) -> None:
    response = client.post("/v1/pools/gpu/reset", headers=admin_headers)

    assert response.status_code == 202
    assert response.get_json()["intent"]["kind"] == "reset-pool"
    assert store.intents()[0].target == "gpu"


def test_intent_shows_its_outcome_and_the_killed_node_state(
        client: FlaskClient, store: SqliteStore, clock: FakeClock,
        admin_headers: dict[str, str]) -> None:
    store.insert_record(record("cloud-001"))
    intent_id = client.post("/v1/nodes/cloud-001/kill",
                            headers=admin_headers).get_json()["intent"]["id"]
    assert client.get(f"/v1/intents/{intent_id}").get_json()["intent"]["status"] == "pending"

    store.complete_intent(intent_id, IntentStatus.DONE, "cloud-001 offlined",
                          T0 + timedelta(seconds=10))
    store.update_record("rec-cloud-001", state=NodeState.DELETED)
    # A later instance in the same slot is not the node that was killed.
    store.insert_record(replace(record("cloud-001", record_id="later", state=NodeState.BOOTING),
                                created=T0 + timedelta(minutes=5)))

    body = client.get(f"/v1/intents/{intent_id}").get_json()
    assert body["intent"]["status"] == "done"
    assert body["intent"]["message"] == "cloud-001 offlined"
    assert body["intent"]["finished"] == "2026-01-02T03:04:15Z"
    assert body["target_state"] == "deleted"


def test_unknown_intent_is_404(client: FlaskClient) -> None:
    assert_error(client.get("/v1/intents/42"), 404, "not_found")


def test_intents_are_listed_with_a_pending_filter(client: FlaskClient, store: SqliteStore) -> None:
    done = store.add_intent(IntentKind.DRAIN_ALL, None, T0)
    store.complete_intent(done.id, IntentStatus.DONE, "ok", T0)
    pending = store.add_intent(IntentKind.RESET_POOL, "gpu", T0)

    every = client.get("/v1/intents").get_json()["intents"]
    waiting = client.get("/v1/intents?pending=true").get_json()["intents"]

    assert [intent["id"] for intent in every] == [done.id, pending.id]
    assert [intent["id"] for intent in waiting] == [pending.id]
    assert_error(client.get("/v1/intents?pending=perhaps"), 400, "invalid_value")


# -- nodes ---------------------------------------------------------------------------------

def test_node_detail_carries_the_server_time_and_the_node_history(
        client: FlaskClient, store: SqliteStore, clock: FakeClock) -> None:
    store.insert_record(record("cloud-001"))
    store.add_event(T0, "launch", "cloud-001 launching", hostname="cloud-001", pool="cloud")
    store.add_event(T0, "launch", "cloud-002 launching", hostname="cloud-002", pool="cloud")
    clock.advance(5)

    body = client.get("/v1/nodes/cloud-001").get_json()

    assert body["time"] == "2026-01-02T03:04:10Z"
    assert [event["message"] for event in body["history"]] == ["cloud-001 launching"]
    assert client.get("/v1/nodes").get_json()["time"] == "2026-01-02T03:04:10Z"


# -- why -----------------------------------------------------------------------------------

def test_why_returns_the_verdict_of_the_last_plan(client: FlaskClient,
                                                  store: SqliteStore) -> None:
    save_verdicts(store, JobVerdict("12.vm", VerdictStatus.WAITING_CAPACITY,
                                    "pool cloud at max_nodes=4", "cloud", cores=8))

    body = client.get("/v1/jobs/12.vm/why").get_json()

    assert body == {"job_id": "12.vm", "time": "2026-01-02T03:04:05Z", "verdicts": [
        {"job_id": "12.vm", "status": "waiting-capacity", "reason": "pool cloud at max_nodes=4",
         "pool": "cloud", "cores": 8, "hosts": []}]}


def test_why_accepts_a_job_number_without_the_server_suffix(client: FlaskClient,
                                                            store: SqliteStore) -> None:
    save_verdicts(store, JobVerdict("12.vm", VerdictStatus.NOT_ELIGIBLE, "held (Hold_Types=u)"),
                  JobVerdict("120.vm", VerdictStatus.LAUNCHING, "launching cloud-001", "cloud"))

    verdicts = client.get("/v1/jobs/12/why").get_json()["verdicts"]

    assert [verdict["job_id"] for verdict in verdicts] == ["12.vm"]


def test_why_of_an_array_parent_lists_its_subjobs(client: FlaskClient,
                                                  store: SqliteStore) -> None:
    save_verdicts(store,
                  JobVerdict("14[1].vm", VerdictStatus.LAUNCHING, "launching cloud-001", "cloud"),
                  JobVerdict("14[2].vm", VerdictStatus.WAITING_CAPACITY, "cluster at max_cores=8",
                             "cloud"),
                  JobVerdict("141.vm", VerdictStatus.LAUNCHING, "launching cloud-002", "cloud"))

    by_parent = client.get("/v1/jobs/14%5B%5D.vm/why").get_json()["verdicts"]
    one = client.get("/v1/jobs/14%5B2%5D.vm/why").get_json()["verdicts"]

    assert [verdict["job_id"] for verdict in by_parent] == ["14[1].vm", "14[2].vm"]
    assert [verdict["job_id"] for verdict in one] == ["14[2].vm"]


def test_why_of_a_job_not_in_the_plan_is_404_saying_so(client: FlaskClient,
                                                       store: SqliteStore) -> None:
    save_verdicts(store,
                  JobVerdict("12.vm", VerdictStatus.LAUNCHING, "launching cloud-001", "cloud"))

    error = assert_error(client.get("/v1/jobs/13.vm/why"), 404, "not_found")

    assert "not queued / not seen in the last pass (at 2026-01-02T03:04:05Z)" in error["message"]


def test_why_before_the_first_pass_is_404_no_plan(client: FlaskClient) -> None:
    assert_error(client.get("/v1/jobs/1.vm/why"), 404, "no_plan")


# -- the status page -----------------------------------------------------------------------

def test_status_is_an_html_page_for_browsers(client: FlaskClient, store: SqliteStore,
                                             clock: FakeClock) -> None:
    store.insert_record(record("cloud-001", state=NodeState.IDLE))
    store.insert_record(record("cloud-002", state=NodeState.BUSY))
    save_verdicts(store, JobVerdict("12.vm", VerdictStatus.WAITING_CAPACITY,
                                    "sleep mode: no new launches", "cloud"))
    store.add_event(T0, "failure", "cloud-003: boot timeout", hostname="cloud-003", pool="cloud")
    store.add_intent(IntentKind.DRAIN_ALL, None, T0)
    store.set_sleeping(True, T0)
    clock.advance(125)

    response = client.get("/status", headers={"Accept": BROWSER_ACCEPT})

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="10">' in page
    assert 'data-hostname="cloud-001" data-state="idle"' in page
    assert "<h3>busy (1)</h3>" in page
    assert "2m05s" in page
    assert "sleep mode: no new launches" in page
    assert "cloud-003: boot timeout" in page
    assert "SLEEPING" in page
    assert "<td>drain-all</td>" in page
    assert "http://" not in page and "https://" not in page   # no external assets


def test_status_page_escapes_what_it_shows(client: FlaskClient, store: SqliteStore) -> None:
    store.insert_record(record("cloud-001", reason="<script>alert(1)</script>"))

    page = client.get("/status", headers={"Accept": "text/html"}).get_data(as_text=True)

    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize("refresh, status", [("2", 200), ("3600", 200), ("0", 400),
                                             ("\u00b2", 400), ("3601", 400), ("soon", 400)])
def test_status_page_refresh_interval_is_bounded(client: FlaskClient, refresh: str,
                                                 status: int) -> None:
    response = client.get(f"/status?refresh={refresh}", headers={"Accept": "text/html"})

    assert response.status_code == status
    if status == 200:
        assert f'content="{refresh}"' in response.get_data(as_text=True)


def test_curl_still_gets_plain_text(client: FlaskClient) -> None:
    assert client.get("/status", headers={"Accept": "*/*"}).mimetype == "text/plain"
