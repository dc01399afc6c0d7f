"""The reconciler shell: write-ahead records, isolation of failures, hints, lock, wakeup."""
from __future__ import annotations

import threading
import time

import pytest
from novaclient import exceptions as nova_exc

from dtserver.actions import LaunchInstance
from dtserver.api.wakeup import wake_reconciler
from dtserver.model import ErrorKind, NodeState
from dtserver.batch.torque import TorqueBatch
from dtserver.cloud.nova import NovaCloud
from dtserver.reconciler import Reconciler, ReconcilerLocked, SingleInstanceLock, Wakeup
from tests.sim.scenario import Cluster, scenario_policy


@pytest.fixture
def cluster(tmp_path):
    return Cluster(tmp_path, scenario_policy())


def test_a_hint_launches_in_the_same_pass_before_the_job_exists(cluster):
    cluster.store.add_hint(cluster.clock.now(), {"user": "alice", "queue": "batch",
                                                 "resources": ["nodes=1:ppn=4"]})
    report = cluster.step(1)
    assert [a.flavor for a in report.plan.of_type(LaunchInstance)] == ["m1.medium"]
    assert [r.state for r in cluster.store.records()] == [NodeState.BOOTING]


def test_an_unparseable_stored_hint_is_dropped_not_fatal(cluster):
    cluster.store.add_hint(cluster.clock.now(), {"user": "alice",
                                                 "resources": ["nodes=0:ppn=4"]})
    cluster.step(1)
    assert cluster.store.hints() == ()


def test_dry_run_plans_and_records_the_plan_but_changes_nothing(cluster):
    cluster.submit({"nodes": "1:ppn=1"}, 60)
    report = cluster.reconciler.run_once(dry_run=True)
    assert report.plan.of_type(LaunchInstance) and report.outcomes == ()
    assert cluster.store.records() == ()
    assert cluster.live_servers() == []
    assert cluster.store.last_plan() is not None


def test_a_refused_create_leaves_a_closed_record_and_a_backoff(cluster):
    cluster.world.nova.fail_next(1, nova_exc.BadRequest(400, "Invalid flavorRef"),
                                 operations=("servers.create",))
    cluster.submit({"nodes": "1:ppn=1"}, 60)
    report = cluster.step(1)
    assert [o.ok for o in report.outcomes if o.action == "LaunchInstance"] == [False]
    [record] = cluster.store.records(include_deleted=True)
    assert record.state is NodeState.DELETED and "create refused" in record.reason
    assert cluster.store.pool_health()["cloud"].last_error is ErrorKind.BAD_REQUEST


def test_a_transient_create_error_keeps_the_record_until_nova_is_listed_again(cluster):
    cluster.world.nova.fail_next(1, nova_exc.ClientException(500, "lost"),
                                 operations=("servers.create",), applied=True)
    cluster.submit({"nodes": "1:ppn=1"}, 60)
    cluster.step(1)
    [record] = cluster.store.records()
    assert record.state is NodeState.LAUNCHING
    cluster.step(10)   # the instance that did get created is adopted, not created again
    [record] = cluster.store.records()
    assert record.state is NodeState.BOOTING and record.instance_id
    assert sum(1 for c in cluster.world.nova.calls if c.operation == "servers.create") == 1


def test_one_failed_action_does_not_stop_the_others(cluster):
    for _ in range(2):
        cluster.submit({"nodes": "1:ppn=8"}, 60)
    cluster.world.nova.fail_next(1, nova_exc.ClientException(503, "busy"),
                                 operations=("servers.create",))
    report = cluster.step(1)
    launches = [o.ok for o in report.outcomes if o.action == "LaunchInstance"]
    assert launches == [False, True]


def test_only_one_reconciler_holds_the_lock(tmp_path):
    path = tmp_path / "reconciler.lock"
    with SingleInstanceLock(path):
        with pytest.raises(ReconcilerLocked):
            SingleInstanceLock(path).acquire()
    with SingleInstanceLock(path):   # released on exit
        pass


def test_a_hint_posted_by_the_api_wakes_the_waiting_reconciler(tmp_path):
    wakeup = Wakeup(tmp_path / "wakeup")
    stop = threading.Event()
    woke: list[bool] = []
    started = time.monotonic()
    waiter = threading.Thread(target=lambda: woke.append(wakeup.wait(10, stop)))
    waiter.start()
    time.sleep(0.1)
    assert wake_reconciler(tmp_path / "wakeup")
    waiter.join(timeout=5)
    assert woke == [True] and time.monotonic() - started < 2
    stop.set()
    assert wakeup.wait(10, stop) is False   # a set stop returns at once
    wakeup.close()


class GatedJoins:
    """The Batch port whose joins wait for `gate`, as a real `qmgr delete node` waits 2 s."""

    def __init__(self, batch, gate: threading.Event) -> None:
        self._batch = batch
        self._gate = gate

    def join_node(self, *args) -> None:
        assert self._gate.wait(30), "the test never opened the gate"
        self._batch.join_node(*args)

    def __getattr__(self, name):
        return getattr(self._batch, name)


def test_a_slow_join_runs_in_the_background_while_new_demand_launches(cluster):
    gate = threading.Event()
    reconciler = Reconciler(
        batch=GatedJoins(TorqueBatch(cluster.world.runner()), gate),
        cloud=NovaCloud(cluster.world.nova, cluster_id="scenario", clock=cluster.clock),
        store=cluster.store, clock=cluster.clock, policy=cluster.policy, background_workers=2)
    cluster.submit({"nodes": "1:ppn=8"}, 600)
    reconciler.run_once()
    cluster.clock.advance(120)
    cluster.world.nova.tick()
    report = reconciler.run_once()
    assert ("JoinNode", "in the background") in [(o.action, o.message) for o in report.outcomes]
    [joining] = cluster.store.records()

    # While the join waits inside TORQUE, a second job's launch goes out at once and the
    # joining node is left alone.
    cluster.submit({"nodes": "1:ppn=8"}, 600)
    report = reconciler.run_once()
    assert [o.ok for o in report.outcomes if o.action == "LaunchInstance"] == [True]
    assert ("JoinNode", "skipped: this node's earlier steps are in flight") in [
        (o.action, o.message) for o in report.outcomes]
    assert cluster.store.record(joining.id).state is NodeState.BOOTING

    gate.set()
    reconciler.wait_for_background()
    assert cluster.store.record(joining.id).state is NodeState.REGISTERED


def test_a_woken_pass_plans_from_the_last_cloud_read_and_our_creates_since(cluster):
    cluster.world.nova.set_quota(instances=2)
    cluster.step(1)                       # a full pass: the cloud is read
    lists = sum(1 for c in cluster.world.nova.calls if c.operation == "servers.list")
    for _ in range(3):
        cluster.submit({"nodes": "1:ppn=8"}, 600)
        cluster.reconciler.run_once(cloud_view_age=60)
    assert sum(1 for c in cluster.world.nova.calls if c.operation == "servers.list") == lists
    # Each create joined the view: no record's instance looked gone, and the quota of two
    # instances held though Nova was not asked again.
    records = cluster.store.records(include_deleted=True)
    assert [record.state for record in records] == [NodeState.BOOTING] * 2
    assert sum(1 for c in cluster.world.nova.calls if c.operation == "servers.create") == 2
    cluster.reconciler.run_once(cloud_view_age=0)      # too old: read again
    assert sum(1 for c in cluster.world.nova.calls if c.operation == "servers.list") > lists
