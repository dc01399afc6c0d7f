"""The reconciler shell: write-ahead records, isolation of failures, hints, lock, wakeup."""
from __future__ import annotations

import logging
import threading
import time

import pytest
from novaclient import exceptions as nova_exc

from dtserver import planning
from dtserver.actions import (
    DeleteInstance, ExpireHint, LaunchInstance, Plan, PokeScheduler, RegisterSlot, ReleaseNode)
from dtserver.model import ErrorKind, NodeRecord, NodeState
from dtserver.batch.torque import TorqueBatch
from dtserver.batch.torque_commands import CommandTimeout
from dtserver.bootstrap import build_nova_cloud
from dtserver.reconcile.loop import Reconciler
from dtserver.reconcile.lock import ReconcilerLocked, SingleInstanceLock
from dtserver.wakeup import Wakeup, wake_reconciler
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


class ReadOnlyStore:
    """The store, noting every call that is not a read: observing must write nothing."""

    READS = frozenset({"installation_id", "record", "records", "hints", "hint_ids",
                       "hint_strikes", "intent", "intents", "is_sleeping", "pool_health",
                       "events", "last_plan", "last_pass", "pool_catalogue", "check"})

    def __init__(self, store) -> None:
        self._store = store
        self.writes: list[str] = []

    def __getattr__(self, name):
        if name not in self.READS:
            self.writes.append(name)
        return getattr(self._store, name)


def test_observing_writes_nothing_even_when_a_stored_hint_is_bad(cluster):
    cluster.store.add_hint(cluster.clock.now(), {"user": "alice",
                                                 "resources": ["nodes=0:ppn=4"]})
    cluster.submit({"nodes": "1:ppn=1"}, 60)
    store = ReadOnlyStore(cluster.store)
    original = cluster.reconciler
    observer = Reconciler(batch=original.batch, cloud=original.cloud, store=store,
                          clock=cluster.clock, policy=cluster.policy)
    observer.observe()
    assert store.writes == []
    cluster.step(1)
    assert cluster.store.hints() == ()          # the pass, not the observation, drops it


def test_dry_run_plans_and_records_the_plan_but_changes_nothing(cluster):
    cluster.submit({"nodes": "1:ppn=1"}, 60)
    report = cluster.reconciler.run_once(dry_run=True)
    assert report.plan.of_type(LaunchInstance) and report.outcomes == ()
    assert cluster.store.records() == ()
    assert cluster.live_servers() == []
    assert cluster.store.last_plan() is not None


def test_a_plan_that_shows_nothing_new_is_not_written_again_only_its_time(cluster, monkeypatch):
    cluster.submit({"nodes": "1:ppn=1", "walltime": "01:00:00"}, 3600)
    cluster.run(300)                              # booted, joined, the job runs
    written = []
    save_plan = cluster.store.save_plan
    monkeypatch.setattr(cluster.store, "save_plan",
                        lambda time, plan: (written.append(time), save_plan(time, plan)))
    first, second = cluster.step(), cluster.step()
    assert (first.plan.actions, first.plan.verdicts, first.plan.notes) == (
        second.plan.actions, second.plan.verdicts, second.plan.notes)
    assert second.time not in written
    assert cluster.store.last_plan().time == second.time
    cluster.submit({"nodes": "2:ppn=8"}, 60)     # more than the node has: a launch
    third = cluster.step()
    assert third.plan.of_type(LaunchInstance) and written[-1] == third.time


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
    waiter = threading.Thread(target=lambda: woke.append(wakeup.wait(600, stop)))
    waiter.start()
    time.sleep(0.1)
    assert wake_reconciler(tmp_path / "wakeup")
    waiter.join(timeout=300)
    assert woke == [True] and time.monotonic() - started < 300   # not the 600 s timeout
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
        cloud=build_nova_cloud(cluster.world.nova, cluster.store, cluster_id="scenario",
                               clock=cluster.clock),
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


# --- TORQUE stops answering in the middle of a pass -----------------------------------------

class UnansweringTorque:
    """A Batch that could be read when the pass observed it and then stops answering: every
    change waits out its command timeout (CommandTimeout, a BatchUnavailable). Counts the
    calls; `answering` brings it back."""

    def __init__(self, nodes=()) -> None:
        self._nodes = tuple(nodes)
        self.calls: list[str] = []
        self.answering = False

    def nodes(self):
        return self._nodes

    def jobs(self):
        return ()

    def _change(self, name: str) -> None:
        self.calls.append(name)
        if not self.answering:
            raise CommandTimeout(f"{name}: qmgr timed out after 30.0s")

    def register_slot(self, *args) -> None:
        self._change("register_slot")

    def join_node(self, *args) -> None:
        self._change("join_node")

    def offline_node(self, *args) -> None:
        self._change("offline_node")

    def clear_node(self, *args) -> None:
        self._change("clear_node")

    def release_node(self, *args) -> None:
        self._change("release_node")

    def poke_scheduler(self) -> None:
        self._change("poke_scheduler")


def reconciler_on(cluster, batch, **kwargs) -> Reconciler:
    return Reconciler(batch=batch, cloud=build_nova_cloud(cluster.world.nova, cluster.store,
                                                          cluster_id="scenario",
                                                          clock=cluster.clock),
                      store=cluster.store, clock=cluster.clock, policy=cluster.policy,
                      **kwargs)


DEFERRED = "deferred: TORQUE unavailable"


def test_a_pass_stops_calling_torque_after_it_stops_answering(tmp_path):
    cluster = Cluster(tmp_path, scenario_policy(max_nodes=20))
    torque = UnansweringTorque()
    reconciler = reconciler_on(cluster, torque)

    report = reconciler.run_once()        # no entry yet: 20 slots to register

    assert len(report.outcomes) == 20
    assert torque.calls == ["register_slot"]
    first, *rest = report.outcomes
    assert not first.ok and "timed out" in first.message
    assert all((o.ok, o.deferred, o.message) == (False, True, DEFERRED) for o in rest)
    summary = cluster.store.last_pass().summary
    assert (summary["failed"], summary["deferred"]) == (1, 19)

    torque.answering = True               # the next pass tries again
    reconciler.run_once()
    assert torque.calls.count("register_slot") == 21


def test_cloud_and_store_steps_still_run_and_a_deferred_nodes_later_steps_wait(
        cluster, monkeypatch):
    for _ in range(2):
        cluster.submit({"nodes": "1:ppn=8"}, 600)
    cluster.step(1)
    kept, released = cluster.store.records()
    hint = cluster.store.add_hint(cluster.clock.now(), {"user": "alice", "queue": "batch",
                                                        "resources": ["nodes=1:ppn=1"]})
    slots = [name for name in cluster.policy.pools[0].slot_names
             if name not in (kept.hostname, released.hostname)]
    torque = UnansweringTorque()
    plan = Plan(actions=(
        RegisterSlot(slots[0], "cloud", 8, frozenset({"CLOUD"})),
        PokeScheduler("a node turned free"),
        ReleaseNode(released.id, released.hostname, 8, frozenset({"CLOUD"}), "idle"),
        DeleteInstance(released.id, released.instance_id, "released"),
        DeleteInstance(kept.id, kept.instance_id, "its entry is already gone"),
        ExpireHint(hint, "expired"),
        LaunchInstance(slots[1], "cloud", "m1.small", 2, "demand"),
    ))
    monkeypatch.setattr("dtserver.planning.plan", lambda *args: plan)

    report = reconciler_on(cluster, torque).run_once()

    assert torque.calls == ["register_slot"]
    assert [(o.action, o.ok, o.deferred) for o in report.outcomes] == [
        ("RegisterSlot", False, False), ("PokeScheduler", False, True),
        ("ReleaseNode", False, True), ("DeleteInstance", False, True),
        ("DeleteInstance", True, False), ("ExpireHint", True, False),
        ("LaunchInstance", True, False)]
    deleted = [call.args["server"] for call in cluster.world.nova.calls
               if call.operation == "servers.delete"]
    assert deleted == [kept.instance_id]
    assert hint not in cluster.store.hint_ids()


def test_background_steps_stop_calling_torque_after_it_stops_answering(cluster, monkeypatch):
    now = cluster.clock.now()
    records = [NodeRecord(f"rec-{index}", hostname, "cloud", "m1.large", 8, NodeState.IDLE,
                          now, now, instance_id=f"instance-{index}")
               for index, hostname in enumerate(cluster.policy.pools[0].slot_names[:5])]
    for each in records:
        cluster.store.insert_record(each)
    torque = UnansweringTorque()
    plan = Plan(actions=tuple(
        ReleaseNode(each.id, each.hostname, 8, frozenset({"CLOUD"}), "idle")
        for each in records))
    monkeypatch.setattr("dtserver.planning.plan", lambda *args: plan)
    reconciler = reconciler_on(cluster, torque, background_workers=1)

    report = reconciler.run_once()
    reconciler.wait_for_background()

    # A release handed off before the first one failed is deferred by its worker; one
    # planned after that is deferred at once.
    assert report.outcomes[0].message == "in the background"
    assert {o.message for o in report.outcomes} <= {"in the background", DEFERRED}
    assert torque.calls == ["release_node"]


# --- a pass that raises -----------------------------------------------------------------------

class BrokenTorque(UnansweringTorque):
    """Reading it raises `error`: a bug in a parser, or the process out of memory."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error
        self.reads = 0

    def nodes(self):
        self.reads += 1
        raise self.error


def run_loop_until(reconciler: Reconciler, done, *, interval: float = 0.01) -> None:
    """run_forever in a thread until `done()` (bounded), then stopped and joined."""
    stop = threading.Event()
    loop = threading.Thread(target=reconciler.run_forever, args=(stop,),
                            kwargs={"interval": interval})
    loop.start()
    deadline = time.monotonic() + 10
    while not done() and time.monotonic() < deadline and loop.is_alive():
        time.sleep(0.01)
    stop.set()
    loop.join(timeout=10)
    assert not loop.is_alive()


def test_an_unexpected_error_fails_that_pass_and_the_loop_goes_on(cluster, caplog):
    torque = BrokenTorque(KeyError("state"))
    reconciler = reconciler_on(cluster, torque)

    with caplog.at_level(logging.ERROR, logger="dtserver.reconcile.loop"):
        run_loop_until(reconciler, lambda: torque.reads >= 3)

    assert torque.reads >= 3                         # pass after pass
    last = cluster.store.last_pass()
    assert last.ok is False
    assert last.summary["error"] == "KeyError: 'state'"
    assert last.summary["pass_errors"] >= 3
    assert any(entry.exc_info and entry.exc_info[0] is KeyError for entry in caplog.records)


def test_the_pass_error_count_stays_in_the_summaries_of_good_passes(cluster, monkeypatch):
    reconciler = cluster.new_reconciler()
    real_plan = planning.plan
    calls = []

    def plan_once_broken(*args):
        calls.append(None)
        if len(calls) == 1:
            raise ZeroDivisionError("a planner bug")
        return real_plan(*args)

    monkeypatch.setattr("dtserver.planning.plan", plan_once_broken)
    run_loop_until(reconciler, lambda: len(calls) >= 2 and cluster.store.last_pass().ok)
    last = cluster.store.last_pass()
    assert last.ok and last.summary["pass_errors"] == 1 and "error" not in last.summary


@pytest.mark.parametrize("fatal", [MemoryError(), SystemError("interpreter state")],
                         ids=["memory", "system"])
def test_an_error_after_which_going_on_is_unsafe_ends_the_loop(cluster, fatal):
    torque = BrokenTorque(fatal)
    reconciler = reconciler_on(cluster, torque)
    stop = threading.Event()
    with pytest.raises(type(fatal)):
        reconciler.run_forever(stop, interval=0.01)
    assert torque.reads == 1


def test_a_failed_passs_error_is_kept_printable(cluster):
    torque = BrokenTorque(ValueError("bad \x1b[2J\nbyte"))
    run_loop_until(reconciler_on(cluster, torque), lambda: not cluster.store.last_pass().ok)
    assert cluster.store.last_pass().summary["error"] == "ValueError: bad \\x1b[2J\\nbyte"
