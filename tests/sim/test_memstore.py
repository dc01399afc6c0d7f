"""MemoryStore behaves as SqliteStore does for the same calls (the simulator's store)."""
from __future__ import annotations

import typing
from datetime import timedelta

import pytest

from dtserver.actions import (
    Action, AdoptInstance, ClearNode, CompleteIntent, DeleteInstance, ExpireHint, JobVerdict,
    JoinNode, LaunchInstance, MarkDown, MarkEntryReady, OfflineNode, Plan, PokeScheduler,
    RegisterSlot, ReleaseNode, ResetPool, SetSleeping, Transition, VerdictStatus)
from dtserver.model import (
    DrainKind, ErrorKind, Flavor, IntentKind, IntentStatus, NodeRecord, NodeState, PoolHealth)
from dtserver.sim.memstore import MemoryStore
from dtserver.store import (
    CataloguePool, EventKind, HintLimitReached, HintLimits, PassReport, PoolCatalogue,
    RecordNotFound, StoredPlan, StoreError)
from dtserver.store.sqlite import SqliteStore
from tests.builders import T0


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        return MemoryStore()
    return SqliteStore(tmp_path / "dt.db")


def record(record_id: str, hostname: str, *, created=T0, state=NodeState.LAUNCHING) -> NodeRecord:
    return NodeRecord(id=record_id, hostname=hostname, pool="cloud", flavor="m1.small", cores=2,
                      state=state, created=created, state_since=created)


def test_records_round_trip_in_creation_order_and_deleted_ones_hide(store):
    store.insert_record(record("b", "n-2", created=T0 + timedelta(seconds=5)))
    store.insert_record(record("a", "n-1"))
    with pytest.raises(StoreError):
        store.insert_record(record("a", "n-1"))
    updated = store.update_record("a", state=NodeState.IDLE, drain=DrainKind.IDLE,
                                  down_since=T0 + timedelta(seconds=9))
    assert updated.state is NodeState.IDLE and updated.drain is DrainKind.IDLE
    assert store.record("a") == updated
    assert [r.id for r in store.records()] == ["a", "b"]
    store.update_record("b", state=NodeState.DELETED)
    assert [r.id for r in store.records()] == ["a"]
    assert [r.id for r in store.records(include_deleted=True)] == ["a", "b"]
    with pytest.raises(RecordNotFound):
        store.update_record("zz", state=NodeState.IDLE)
    with pytest.raises(TypeError):
        store.update_record("a", colour="red")
    with pytest.raises(TypeError):
        store.update_record("a", id="c")


def test_hints_intents_flags_and_health(store):
    first = store.add_hint(T0, {"user": "u", "resources": ["nodes=1"]})
    second = store.add_hint(T0, {"user": "v"})
    store.delete_hints([first])
    assert [(hint.id, hint.payload["user"]) for hint in store.hints()] == [(second, "v")]
    intent = store.add_intent(IntentKind.KILL, "n-1", T0)
    assert store.intent(intent.id).status is IntentStatus.PENDING
    assert [i.id for i in store.intents(pending_only=True)] == [intent.id]
    store.complete_intent(intent.id, IntentStatus.DONE, "killed", T0)
    assert store.intents(pending_only=True) == ()
    assert store.intent(intent.id).message == "killed"
    with pytest.raises(ValueError):
        store.complete_intent(intent.id, IntentStatus.PENDING, "", T0)
    assert not store.is_sleeping()
    store.set_sleeping(True, T0)
    assert store.is_sleeping()
    health = PoolHealth("cloud", 2, T0, ErrorKind.CAPACITY, "quota", False)
    store.save_pool_health(health)
    assert store.pool_health() == {"cloud": health}


def test_events_newest_first_and_last_plan_and_pass(store):
    store.add_event(T0, "launch", "n-1 launching", hostname="n-1", pool="cloud")
    store.add_event(T0, "failure", "boom", error_kind=ErrorKind.BOOT)
    events = store.events(limit=10)
    assert [(e.kind, e.error_kind) for e in events] == [("failure", ErrorKind.BOOT),
                                                         ("launch", None)]
    assert events[1].hostname == "n-1" and events[1].time == T0
    assert [e.kind for e in events] == [EventKind.FAILURE, EventKind.LAUNCH]
    assert all(isinstance(e.kind, EventKind) for e in events)
    assert len(store.events(limit=1)) == 1
    assert store.last_plan() is None and store.last_pass() is None
    store.touch_plan(T0)
    assert store.last_plan() is None
    store.save_plan(T0, Plan(actions=()))
    assert store.last_plan() == StoredPlan(T0, (), (), ())
    store.touch_plan(T0 + timedelta(seconds=10))
    assert store.last_plan() == StoredPlan(T0 + timedelta(seconds=10), (), (), ())
    report = PassReport(T0, 0.5, True, {"actions": 0})
    store.save_pass(report)
    assert store.last_pass() == report


def test_only_the_latest_pool_catalogue_is_kept_with_its_time(store):
    first = PoolCatalogue(pools=(CataloguePool("cloud", (Flavor("m1.small", 2, 4096),),
                                               max_nodes=10),))
    second = PoolCatalogue(
        pools=(CataloguePool("gpu", (Flavor("g1.large", 8, 32768, gpus=2),), max_nodes=4,
                             max_cores=32, properties=frozenset({"CLOUD", "gpu"}),
                             queues=frozenset({"gpu"}), accounts=frozenset({"physics"})),),
        queues=frozenset({"gpu", "batch"}), max_cores=64)
    assert store.pool_catalogue() is None
    store.save_pool_catalogue(T0, first)
    store.save_pool_catalogue(T0 + timedelta(seconds=30), second)
    assert store.pool_catalogue() == (T0 + timedelta(seconds=30), second)


def test_every_store_has_its_own_installation_id(tmp_path):
    stores = [MemoryStore(), MemoryStore(), SqliteStore(tmp_path / "a.db")]
    ids = [store.installation_id() for store in stores]
    assert len(set(ids)) == 3 and all(len(value) == 32 for value in ids)
    assert stores[0].installation_id() == ids[0]


def test_hints_are_bounded_per_user_and_in_total_and_read_incrementally(store):
    limits = HintLimits(per_user=2, total=3)
    first = store.add_hint(T0, {"user": "alice"}, source="192.0.2.1", limits=limits)
    store.add_hint(T0, {"user": "alice"}, limits=limits)
    with pytest.raises(HintLimitReached):
        store.add_hint(T0, {"user": "alice"}, limits=limits)
    store.add_hint(T0, {"user": "bob"}, limits=limits)
    with pytest.raises(HintLimitReached):
        store.add_hint(T0, {"user": "carol"}, limits=limits)
    assert [hint.payload["user"] for hint in store.hints()] == ["alice", "alice", "bob"]
    assert store.hints()[0].source == "192.0.2.1"
    assert [hint.payload["user"] for hint in store.hints(after_id=first)] == ["alice", "bob"]
    store.delete_hints([first])
    assert len(store.hint_ids()) == 2
    store.add_hint(T0, {"user": "alice"}, limits=limits)      # room again once one left


def test_hint_strikes_count_by_user_and_source_within_the_window(store):
    hour = timedelta(hours=1)
    store.add_hint_strike("mallory", "192.0.2.9", T0, forget_before=T0 - hour)
    store.add_hint_strike("mallory", None, T0 + hour, forget_before=T0)
    store.add_hint_strike("eve", "192.0.2.9", T0 + 2 * hour, forget_before=T0 + hour)
    strikes = store.hint_strikes(T0 + hour)
    assert strikes.by_user == {"mallory": 1, "eve": 1}
    assert strikes.by_source == {"192.0.2.9": 1}


def test_the_last_plan_comes_back_as_it_was_planned(store):
    actions = (
        RegisterSlot("cloud-001", "cloud", 2, frozenset({"CLOUD", "b"})),
        LaunchInstance("cloud-002", "cloud", "m1.small", 2, "demand: 1.vm", group="g",
                       prewarm=True),
        AdoptInstance("r-1", "i-1"),
        JoinNode("r-1", "cloud-002", "10.0.0.2", 2, frozenset({"CLOUD"})),
        MarkEntryReady("r-1", "i-1", "cloud-002"),
        PokeScheduler("nodes turned ready"),
        Transition("r-2", NodeState.FAILED, "boot timeout", failure=ErrorKind.BOOT),
        Transition("r-3", NodeState.IDLE, "mom reported"),
        MarkDown("r-3", T0 + timedelta(seconds=1, microseconds=5)),
        MarkDown("r-3", None),
        OfflineNode("r-3", "cloud-003", DrainKind.IDLE, "idle for 600 s"),
        ClearNode("r-3", "cloud-003", "queued demand fits"),
        ReleaseNode("r-3", "cloud-003", 2, frozenset({"CLOUD"}), "idle"),
        DeleteInstance(None, "i-9", "orphan"),
        ExpireHint(4, "expired", strike_user="tuser", strike_source="192.0.2.1"),
        CompleteIntent(5, IntentStatus.DONE, "done"),
        SetSleeping(True, "drain-all"),
        ResetPool("cloud", "admin reset"))
    verdicts = (JobVerdict("1.vm", VerdictStatus.WAITING_SCHEDULER, "fits", "cloud", 2,
                           ("cloud-003",)),
                JobVerdict("2.vm", VerdictStatus.NOT_ELIGIBLE, "held"))
    store.save_plan(T0, Plan(actions=actions, verdicts=verdicts, notes=("a note",),
                             revisit_after=timedelta(seconds=2)))

    stored = store.last_plan()

    assert {type(action) for action in actions} == set(typing.get_args(Action))
    assert stored == StoredPlan(T0, actions, verdicts, ("a note",))
    assert [type(verdict.status) for verdict in stored.verdicts] == [VerdictStatus] * 2
