"""GET /metrics: Prometheus metrics read from the store at scrape time.

A custom collector reads the store on every scrape, so every gunicorn worker answers
the same numbers and no multiprocess directory is needed. Where the metric comes from:

- queued jobs and demand cores: the verdicts of the last plan, by pool and status (a
  verdict's `cores` is summed where the planner filled it);
- nodes and idle cores: the live node records, by pool and state;
- launches and deletes: node records. Every launch writes a record before it calls Nova
  and records are never purged, so these are true counters;
- failures: "failure" events in the retained event history (the store keeps the last
  10,000 events), by pool; the error class of the current failure streak comes from pool
  health (last_error with its consecutive count), as the backoff keys on it;
- time to ready: each "ready" event minus the creation of the record it belongs to (the
  newest record of that hostname created before the event);
- time to drain: for each deleted record that was drained, its deletion time minus its
  last "drain" event (a later "clear" means that drain was undone, so it is skipped).
  Both histograms cover the retained event history: when old events are trimmed the
  counts may drop, which Prometheus reads as a counter reset;
- idle core-seconds: for the nodes idle now, cores times the time since they became
  idle (the store has no state history; `sum_over_time(dynamictorque_idle_cores[1h])`
  times the scrape interval gives idle core-seconds over any window);
- reconciler: duration, time and outcome of the last pass; the last success time only
  while the last pass succeeded (the store keeps only the last pass); passes that raised,
  counted by the reconciler since it started and carried in every pass report.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Iterable, Iterator, Mapping, Sequence

from flask import Blueprint, Response, request
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from dtserver.api.context import api_context
from dtserver.actions import LaunchInstance, VerdictStatus
from dtserver.api.operation import TEXT, Operation
from dtserver.clock import Clock
from dtserver.model import LIVE_STATES, NodeRecord, NodeState, PoolHealth
from dtserver.store import Event, EventKind, PassReport, Store, StoredPlan

bp = Blueprint("metrics", __name__)

PREFIX = "dynamictorque"
EVENT_SCAN = 10_000
READY_BUCKETS = (30.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0)
DRAIN_BUCKETS = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
                 86400.0)
# Verdict statuses of jobs that want nodes (served or waiting); the rest create no demand.
DEMAND_STATUSES = frozenset({VerdictStatus.LAUNCHING, VerdictStatus.WAITING_BOOT,
                             VerdictStatus.WAITING_SCHEDULER, VerdictStatus.WAITING_JOB_END,
                             VerdictStatus.WAITING_CAPACITY})
_LIVE_STATES = sorted(state.value for state in LIVE_STATES)


def _timestamp(value: datetime) -> float:
    return value.timestamp()


def node_metrics(records: Sequence[NodeRecord], now: datetime) -> Iterator[Metric]:
    """Nodes by pool and state (zeros included, so series do not vanish), idle cores,
    idle core-seconds, launches and deletes."""
    pools = sorted({record.pool for record in records})
    live = [record for record in records if record.state is not NodeState.DELETED]
    by_state = Counter((record.pool, record.state.value) for record in live)
    nodes = GaugeMetricFamily(f"{PREFIX}_nodes", "Owned nodes by pool and lifecycle state",
                              labels=["pool", "state"])
    cores = GaugeMetricFamily(f"{PREFIX}_node_cores", "Cores of owned nodes by pool and state",
                              labels=["pool", "state"])
    core_sums: Counter[tuple[str, str]] = Counter()
    for record in live:
        core_sums[(record.pool, record.state.value)] += record.cores
    for pool in pools:
        for state in _LIVE_STATES:
            nodes.add_metric([pool, state], by_state[(pool, state)])
            cores.add_metric([pool, state], core_sums[(pool, state)])
    yield nodes
    yield cores

    idle = [record for record in live if record.state is NodeState.IDLE]
    idle_seconds = GaugeMetricFamily(
        f"{PREFIX}_idle_core_seconds",
        "Core-seconds spent idle by the nodes idle now, since each became idle",
        labels=["pool"])
    spent: defaultdict[str, float] = defaultdict(float)
    for record in idle:
        spent[record.pool] += record.cores * max(0.0, (now - record.state_since).total_seconds())
    for pool in pools:
        idle_seconds.add_metric([pool], spent[pool])
    yield idle_seconds

    launches = CounterMetricFamily(f"{PREFIX}_launches", "Instances launched (node records "
                                   "written before servers.create)", labels=["pool"])
    deletes = CounterMetricFamily(f"{PREFIX}_deletes", "Node records that reached deleted",
                                  labels=["pool"])
    launched = Counter(record.pool for record in records)
    deleted = Counter(record.pool for record in records if record.state is NodeState.DELETED)
    for pool in pools:
        launches.add_metric([pool], launched[pool])
        deletes.add_metric([pool], deleted[pool])
    yield launches
    yield deletes


def _owner(records_by_host: Mapping[str, list[NodeRecord]], event: Event
           ) -> NodeRecord | None:
    """The record an event about `event.hostname` belongs to: the newest one created by then."""
    candidates = [record for record in records_by_host.get(event.hostname or "", ())
                  if record.created <= event.time]
    return max(candidates, key=lambda record: record.created, default=None)


def _histogram(name: str, documentation: str, bounds: Sequence[float],
               values_by_pool: Mapping[str, list[float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["pool"])
    for pool in sorted(values_by_pool):
        values = values_by_pool[pool]
        buckets = [(str(bound), float(sum(1 for value in values if value <= bound)))
                   for bound in bounds]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric([pool], buckets, sum_value=sum(values))
    return family


def durations_to_ready(records: Sequence[NodeRecord], events: Iterable[Event]
                       ) -> dict[str, list[float]]:
    """Seconds from launch (record created) to ready (the "ready" event), by pool."""
    by_host: defaultdict[str, list[NodeRecord]] = defaultdict(list)
    for record in records:
        by_host[record.hostname].append(record)
    result: defaultdict[str, list[float]] = defaultdict(list)
    for event in events:
        if event.kind is not EventKind.READY:
            continue
        record = _owner(by_host, event)
        if record is not None:
            result[record.pool].append((event.time - record.created).total_seconds())
    return dict(result)


def durations_to_drain(records: Sequence[NodeRecord], events: Iterable[Event]
                       ) -> dict[str, list[float]]:
    """Seconds from the last drain (offline) of a deleted record to its deletion, by pool."""
    marks: defaultdict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.kind in (EventKind.DRAIN, EventKind.CLEAR) and event.hostname:
            marks[event.hostname].append(event)
    result: defaultdict[str, list[float]] = defaultdict(list)
    for record in records:
        if record.state is not NodeState.DELETED:
            continue
        mine = sorted((event for event in marks.get(record.hostname, ())
                       if record.created <= event.time <= record.state_since),
                      key=lambda event: (event.time, event.id))
        if mine and mine[-1].kind is EventKind.DRAIN:
            result[record.pool].append((record.state_since - mine[-1].time).total_seconds())
    return dict(result)


def history_metrics(records: Sequence[NodeRecord], events: Sequence[Event]) -> Iterator[Metric]:
    failures = GaugeMetricFamily(
        f"{PREFIX}_failure_events",
        f"Failure events in the retained history (last {EVENT_SCAN} events) by pool and "
        "error class",
        labels=["pool", "error_class"])
    for (pool, error_class), count in sorted(Counter(
            (event.pool or "", event.error_kind.value if event.error_kind else "other")
            for event in events if event.kind is EventKind.FAILURE).items()):
        failures.add_metric([pool, error_class], count)
    yield failures
    yield _histogram(f"{PREFIX}_time_to_ready_seconds",
                     "Launch to ready (mom reporting), over the retained event history",
                     READY_BUCKETS, durations_to_ready(records, events))
    yield _histogram(f"{PREFIX}_time_to_drain_seconds",
                     "Offline (draining) to deleted, over the retained event history",
                     DRAIN_BUCKETS, durations_to_drain(records, events))


def plan_metrics(stored: StoredPlan | None) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(f"{PREFIX}_queued_jobs",
                             "Jobs with a verdict in the last plan, by pool and status",
                             labels=["pool", "status"])
    demand = GaugeMetricFamily(f"{PREFIX}_queued_demand_cores",
                               "Cores requested by queued jobs that want nodes, by pool",
                               labels=["pool"])
    launching = GaugeMetricFamily(f"{PREFIX}_planned_launch_cores",
                                  "Cores of the launches in the last plan, by pool",
                                  labels=["pool"])
    if stored is not None:
        counts = Counter((verdict.pool or "", verdict.status.value)
                         for verdict in stored.verdicts)
        for (pool, status), count in sorted(counts.items()):
            jobs.add_metric([pool, status], count)
        wanted: Counter[str] = Counter()
        for verdict in stored.verdicts:
            if verdict.status in DEMAND_STATUSES and verdict.cores is not None:
                wanted[verdict.pool or ""] += verdict.cores
        for pool, cores in sorted(wanted.items()):
            demand.add_metric([pool], cores)
        planned: Counter[str] = Counter()
        for action in stored.actions:
            if isinstance(action, LaunchInstance):
                planned[action.pool] += action.cores
        for pool, cores in sorted(planned.items()):
            launching.add_metric([pool], cores)
        yield GaugeMetricFamily(f"{PREFIX}_plan_timestamp_seconds",
                                "When the last plan was made", value=_timestamp(stored.time))
    yield jobs
    yield demand
    yield launching


def pass_metrics(last_pass: PassReport | None) -> Iterator[Metric]:
    if last_pass is None:
        return
    yield GaugeMetricFamily(f"{PREFIX}_reconciler_pass_duration_seconds",
                            "Duration of the last reconciler pass",
                            value=last_pass.duration_seconds)
    yield GaugeMetricFamily(f"{PREFIX}_reconciler_last_pass_timestamp_seconds",
                            "When the last reconciler pass ran", value=_timestamp(last_pass.time))
    yield GaugeMetricFamily(f"{PREFIX}_reconciler_last_pass_ok",
                            "1 when the last pass could read TORQUE and the cloud",
                            value=1.0 if last_pass.ok else 0.0)
    if last_pass.ok:
        yield GaugeMetricFamily(f"{PREFIX}_reconciler_last_success_timestamp_seconds",
                                "When the last successful pass ran (absent while the last "
                                "pass failed)", value=_timestamp(last_pass.time))
    # Every pass report carries the reconciler's count since it started: a restart resets it.
    yield CounterMetricFamily(f"{PREFIX}_reconciler_pass_errors",
                              "Passes that raised an error (see /status), since the "
                              "reconciler started",
                              value=float(last_pass.summary.get("pass_errors", 0)))


def pool_metrics(health: Mapping[str, PoolHealth], now: datetime) -> Iterator[Metric]:
    failures = GaugeMetricFamily(
        f"{PREFIX}_pool_consecutive_failures",
        "Consecutive launch or boot failures of a pool, with the class of the last one",
        labels=["pool", "error_class"])
    backoff = GaugeMetricFamily(f"{PREFIX}_pool_backoff_seconds",
                                "Seconds until a pool may launch again (0: not backing off)",
                                labels=["pool"])
    stopped = GaugeMetricFamily(f"{PREFIX}_pool_stopped",
                                "1 when a pool stopped after repeated boot failures",
                                labels=["pool"])
    for name, pool in sorted(health.items()):
        error_class = pool.last_error.value if pool.last_error is not None else ""
        failures.add_metric([name, error_class], pool.consecutive_failures)
        left = (pool.backoff_until - now).total_seconds() if pool.backoff_until else 0.0
        backoff.add_metric([name], max(0.0, left))
        stopped.add_metric([name], 1.0 if pool.stopped else 0.0)
    yield failures
    yield backoff
    yield stopped


class StoreCollector(Collector):
    """A prometheus_client collector that reads the store on every scrape."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock.now()
        records = self.store.records(include_deleted=True)
        yield from node_metrics(records, now)
        yield from history_metrics(records, self.store.events(EVENT_SCAN))
        yield from plan_metrics(self.store.last_plan())
        yield from pass_metrics(self.store.last_pass())
        yield from pool_metrics(self.store.pool_health(), now)
        yield GaugeMetricFamily(f"{PREFIX}_sleeping", "1 in sleep mode (no new launches)",
                                value=1.0 if self.store.is_sleeping() else 0.0)
        yield GaugeMetricFamily(f"{PREFIX}_intents_pending",
                                "Admin intents waiting for the reconciler (up to 1000)",
                                value=len(self.store.intents(pending_only=True, limit=1000)))


@bp.get("/metrics")
@Operation("Prometheus metrics", 200,
           {TEXT: {"type": "string"}, "application/openmetrics-text": {"type": "string"}})
def metrics() -> Response:
    """Prometheus text format (OpenMetrics when the scraper asks for it)."""
    context = api_context()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(context.store, context.clock))
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(registry), headers={"Content-Type": content_type})
