"""GET /metrics: every number derived from the store at scrape time."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from dtserver.actions import JobVerdict, LaunchInstance, Plan, VerdictStatus
from dtserver.clock import FakeClock
from dtserver.model import ErrorKind, IntentKind, NodeState, PoolHealth
from dtserver.store import PassReport
from dtserver.store.sqlite import SqliteStore
from tests.api.builders import T0, record

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def later(seconds: float):
    return T0 + timedelta(seconds=seconds)


def test_nodes_are_counted_by_pool_and_state_with_zeros(client: FlaskClient,
                                                        store: SqliteStore) -> None:
    store.insert_record(record("cloud-001", state=NodeState.IDLE))
    store.insert_record(record("cloud-002", state=NodeState.BUSY))
    store.insert_record(record("gpu-001", pool="gpu", state=NodeState.BOOTING, cores=8))
    store.insert_record(record("cloud-003", state=NodeState.DELETED))

    samples = scrape(client)

    assert value(samples, "dynamictorque_nodes", pool="cloud", state="idle") == 1
    assert value(samples, "dynamictorque_nodes", pool="cloud", state="busy") == 1
    assert value(samples, "dynamictorque_nodes", pool="cloud", state="booting") == 0
    assert value(samples, "dynamictorque_nodes", pool="gpu", state="booting") == 1
    assert value(samples, "dynamictorque_nodes", pool="cloud", state="deleted") is None
    assert value(samples, "dynamictorque_node_cores", pool="gpu", state="booting") == 8
    assert value(samples, "dynamictorque_launches_total", pool="cloud") == 3
    assert value(samples, "dynamictorque_deletes_total", pool="cloud") == 1
    assert value(samples, "dynamictorque_deletes_total", pool="gpu") == 0


def test_idle_core_seconds_count_from_when_each_node_became_idle(
        client: FlaskClient, store: SqliteStore, clock: FakeClock) -> None:
    store.insert_record(record("cloud-001", state=NodeState.IDLE, cores=4))
    store.insert_record(record("cloud-002", state=NodeState.IDLE, cores=2, since=later(60)))
    store.insert_record(record("cloud-003", state=NodeState.BUSY, cores=8))
    clock.advance(100)

    samples = scrape(client)

    assert value(samples, "dynamictorque_idle_core_seconds", pool="cloud") == 4 * 100 + 2 * 40


def test_time_to_ready_pairs_each_ready_event_with_its_own_record(
        client: FlaskClient, store: SqliteStore) -> None:
    store.insert_record(record("cloud-001", state=NodeState.DELETED))
    store.add_event(later(90), "ready", "cloud-001 ready after 90 s", hostname="cloud-001",
                    pool="cloud")
    # The slot is reused an hour later: its second boot is measured from the second record.
    store.insert_record(replace(record("cloud-001", record_id="second"), created=later(3600)))
    store.add_event(later(3640), "ready", "cloud-001 ready after 40 s", hostname="cloud-001",
                    pool="cloud")

    samples = scrape(client)

    name = "dynamictorque_time_to_ready_seconds"
    assert value(samples, f"{name}_bucket", pool="cloud", le="30.0") == 0
    assert value(samples, f"{name}_bucket", pool="cloud", le="60.0") == 1
    assert value(samples, f"{name}_bucket", pool="cloud", le="90.0") == 2
    assert value(samples, f"{name}_bucket", pool="cloud", le="+Inf") == 2
    assert value(samples, f"{name}_count", pool="cloud") == 2
    assert value(samples, f"{name}_sum", pool="cloud") == 130


def test_time_to_drain_runs_from_the_last_drain_to_deletion(client: FlaskClient,
                                                            store: SqliteStore) -> None:
    store.insert_record(record("cloud-001", state=NodeState.DELETED, since=later(600)))
    store.add_event(later(100), "drain", "cloud-001 offline: idle", hostname="cloud-001")
    store.add_event(later(150), "clear", "cloud-001 back online", hostname="cloud-001")
    store.add_event(later(400), "drain", "cloud-001 offline: idle", hostname="cloud-001")
    # Drained, then cleared for good: deleted later for another reason, not a drain.
    store.insert_record(record("cloud-002", state=NodeState.DELETED, since=later(900)))
    store.add_event(later(100), "drain", "cloud-002 offline: idle", hostname="cloud-002")
    store.add_event(later(120), "clear", "cloud-002 back online", hostname="cloud-002")

    samples = scrape(client)

    name = "dynamictorque_time_to_drain_seconds"
    assert value(samples, f"{name}_count", pool="cloud") == 1
    assert value(samples, f"{name}_sum", pool="cloud") == 200
    assert value(samples, f"{name}_bucket", pool="cloud", le="60.0") == 0
    assert value(samples, f"{name}_bucket", pool="cloud", le="300.0") == 1


def test_queue_demand_comes_from_the_last_plan(client: FlaskClient, store: SqliteStore) -> None:
    store.save_plan(T0, Plan(
        actions=(LaunchInstance("cloud-004", "cloud", "m1.large", 8, "demand: 1.vm"),
                 LaunchInstance("gpu-001", "gpu", "g1", 16, "demand: 3.vm")),
        verdicts=(JobVerdict("1.vm", VerdictStatus.LAUNCHING, "launching cloud-004", "cloud",
                             cores=8),
                  JobVerdict("2.vm", VerdictStatus.WAITING_CAPACITY, "at max_nodes", "cloud",
                             cores=4),
                  JobVerdict("3.vm", VerdictStatus.LAUNCHING, "launching gpu-001", "gpu", cores=16),
                  JobVerdict("4.vm", VerdictStatus.NOT_ELIGIBLE, "held", cores=2))))

    samples = scrape(client)

    assert value(samples, "dynamictorque_queued_jobs", pool="cloud", status="launching") == 1
    assert value(samples, "dynamictorque_queued_jobs", pool="cloud",
                 status="waiting-capacity") == 1
    assert value(samples, "dynamictorque_queued_jobs", pool="", status="not-eligible") == 1
    # Held jobs want no nodes: they are not demand.
    assert value(samples, "dynamictorque_queued_demand_cores", pool="cloud") == 12
    assert value(samples, "dynamictorque_queued_demand_cores", pool="gpu") == 16
    assert value(samples, "dynamictorque_queued_demand_cores", pool="") is None
    assert value(samples, "dynamictorque_planned_launch_cores", pool="cloud") == 8
    assert value(samples, "dynamictorque_plan_timestamp_seconds") == T0.timestamp()


def test_reconciler_pass_duration_and_last_success(client: FlaskClient,
                                                   store: SqliteStore) -> None:
    store.save_pass(PassReport(time=T0, duration_seconds=0.75, ok=True, summary={}))
    samples = scrape(client)
    assert value(samples, "dynamictorque_reconciler_pass_duration_seconds") == 0.75
    assert value(samples, "dynamictorque_reconciler_last_success_timestamp_seconds") == \
        T0.timestamp()
    assert value(samples, "dynamictorque_reconciler_last_pass_ok") == 1

    store.save_pass(PassReport(time=later(10), duration_seconds=0.1, ok=False, summary={}))
    samples = scrape(client)
    assert value(samples, "dynamictorque_reconciler_last_pass_ok") == 0
    assert value(samples, "dynamictorque_reconciler_last_pass_timestamp_seconds") == \
        later(10).timestamp()
    assert value(samples, "dynamictorque_reconciler_last_success_timestamp_seconds") is None


def test_passes_that_raised_are_counted(client: FlaskClient, store: SqliteStore) -> None:
    store.save_pass(PassReport(time=T0, duration_seconds=0.1, ok=True, summary={}))
    assert value(scrape(client), "dynamictorque_reconciler_pass_errors_total") == 0

    store.save_pass(PassReport(time=later(10), duration_seconds=0.1, ok=False,
                               summary={"error": "KeyError: 'state'", "pass_errors": 3}))
    samples = scrape(client)
    assert value(samples, "dynamictorque_reconciler_pass_errors_total") == 3
    assert value(samples, "dynamictorque_reconciler_last_pass_ok") == 0


def test_failures_by_pool_and_the_error_class_of_the_current_streak(
        client: FlaskClient, store: SqliteStore, clock: FakeClock) -> None:
    store.add_event(T0, "failure", "gpu-001: boot timeout", hostname="gpu-001", pool="gpu",
                    error_kind=ErrorKind.BOOT)
    store.add_event(T0, "failure", "gpu-002: instance ERROR", hostname="gpu-002", pool="gpu",
                    error_kind=ErrorKind.BOOT)
    store.add_event(T0, "failure", "gpu-003: No valid host", hostname="gpu-003", pool="gpu",
                    error_kind=ErrorKind.CAPACITY)
    store.add_event(T0, "failure", "LaunchInstance: quota exceeded")
    store.add_event(T0, "launch", "cloud-001 launching", hostname="cloud-001", pool="cloud")
    store.save_pool_health(PoolHealth("gpu", consecutive_failures=2, last_error=ErrorKind.BOOT,
                                      backoff_until=later(120), stopped=True))
    clock.advance(20)

    samples = scrape(client)

    assert value(samples, "dynamictorque_failure_events", pool="gpu", error_class="boot") == 2
    assert value(samples, "dynamictorque_failure_events", pool="gpu",
                 error_class="capacity") == 1
    assert value(samples, "dynamictorque_failure_events", pool="", error_class="other") == 1
    assert value(samples, "dynamictorque_pool_consecutive_failures", pool="gpu",
                 error_class="boot") == 2
    assert value(samples, "dynamictorque_pool_backoff_seconds", pool="gpu") == 100
    assert value(samples, "dynamictorque_pool_stopped", pool="gpu") == 1


def test_sleep_mode_and_pending_intents(client: FlaskClient, store: SqliteStore) -> None:
    store.set_sleeping(True, T0)
    store.add_intent(IntentKind.DRAIN_ALL, None, T0)

    samples = scrape(client)

    assert value(samples, "dynamictorque_sleeping") == 1
    assert value(samples, "dynamictorque_intents_pending") == 1


def test_an_empty_store_scrapes_without_pass_metrics(client: FlaskClient) -> None:
    samples = scrape(client)

    assert value(samples, "dynamictorque_sleeping") == 0
    assert value(samples, "dynamictorque_reconciler_last_pass_ok") is None


def test_openmetrics_is_served_when_the_scraper_asks(client: FlaskClient) -> None:
    response = client.get("/metrics", headers={
        "Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"})

    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).endswith("# EOF\n")
