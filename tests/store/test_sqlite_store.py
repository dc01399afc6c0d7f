"""SqliteStore: migrations, exact round-trips, validation, and concurrent writers."""
from __future__ import annotations

import inspect
import multiprocessing
import multiprocessing.synchronize
import sqlite3
import threading
from dataclasses import fields, replace
from importlib import resources
from datetime import timedelta, timezone
from pathlib import Path
from types import MappingProxyType

import pytest

from dtserver.actions import Plan, PokeScheduler
from dtserver.model import (
    DrainKind,
    ErrorKind,
    Flavor,
    IntentKind,
    IntentStatus,
    NodeRecord,
    NodeState,
    PoolHealth,
)
from dtserver.store import (
    CataloguePool, EventKind, HintLimitReached, HintLimits, PassReport, PoolCatalogue,
    RecordNotFound, Store, StoredPlan, StoreError)
from dtserver.store.sqlite import SqliteStore, connect, latest_version
from tests.builders import T0, record

UTC_PLUS_2 = timezone(timedelta(hours=2))
WRITERS_TIMEOUT_SECONDS = 60


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "dynamictorque.db"


@pytest.fixture
def store(db_path: Path):
    with SqliteStore(db_path) as opened:
        yield opened


def full_record() -> NodeRecord:
    """Every field set away from its default, times with microseconds and a non-UTC offset."""
    return replace(
        record("cloud-007", state=NodeState.OFFLINE, drain=DrainKind.ADMIN,
               since=T0 + timedelta(seconds=90, microseconds=123456),
               created=(T0 + timedelta(microseconds=7)).astimezone(UTC_PLUS_2),
               down_since=T0 + timedelta(minutes=3), instance_id="6f1c0e7a-uuid"),
        address="10.0.0.7", reason="dtadmin kill", prewarm=True)


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as raw:
        return raw.execute("PRAGMA user_version").fetchone()[0]


# --- migrations and connection settings -------------------------------------------------

def test_new_database_is_migrated_to_the_latest_version(store, db_path):
    assert latest_version() >= 1
    assert user_version(db_path) == latest_version()


def test_reopening_a_migrated_database_keeps_version_and_data(db_path):
    with SqliteStore(db_path) as first:
        first.add_hint(T0, {"user": "alice"})
    with SqliteStore(db_path) as second:
        assert [hint.payload for hint in second.hints()] == [{"user": "alice"}]
    assert user_version(db_path) == latest_version()


def test_database_with_a_newer_schema_version_is_refused(db_path):
    SqliteStore(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute(f"PRAGMA user_version = {latest_version() + 1}")
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(db_path)


def test_a_file_that_is_not_a_database_is_a_store_error(db_path):
    db_path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=str(db_path)):
        SqliteStore(db_path)


def test_in_memory_database_is_refused_because_it_cannot_use_wal():
    with pytest.raises(StoreError, match="WAL"):
        SqliteStore(":memory:")


def test_store_file_is_in_wal_mode(store, db_path):
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_connections_wait_for_locks_and_enforce_foreign_keys(store, db_path):
    conn = connect(db_path)
    try:
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.isolation_level is None
    finally:
        conn.close()


def test_sqlite_store_has_every_store_method_with_the_same_parameters():
    methods = [name for name, _ in inspect.getmembers(Store, inspect.isfunction)
               if not name.startswith("_")]
    assert "add_hint" in methods
    for name in methods:
        expected = inspect.signature(getattr(Store, name)).parameters
        actual = inspect.signature(getattr(SqliteStore, name)).parameters
        assert list(actual) == list(expected), name
        assert [p.kind for p in actual.values()] == [p.kind for p in expected.values()], name
        assert [p.default for p in actual.values()] == [p.default for p in expected.values()], name


def test_a_closed_store_refuses_calls(db_path):
    opened = SqliteStore(db_path)
    opened.close()
    with pytest.raises(StoreError, match="closed"):
        opened.hints()


# --- node records ----------------------------------------------------------------------

def test_node_record_round_trips_every_field(store):
    original = full_record()
    assert all(getattr(original, f.name) != f.default for f in fields(NodeRecord))
    store.insert_record(original)
    loaded = store.record(original.id)
    assert loaded == original
    assert loaded.created.tzinfo is timezone.utc
    assert loaded.state is NodeState.OFFLINE and loaded.drain is DrainKind.ADMIN


def test_node_record_with_optional_fields_unset_round_trips(store):
    original = record("cloud-001", state=NodeState.LAUNCHING, instance_id=None)
    store.insert_record(original)
    assert store.record(original.id) == original


def test_inserting_a_record_whose_id_exists_is_refused(store):
    store.insert_record(record("cloud-001"))
    with pytest.raises(StoreError, match="r-cloud-001"):
        store.insert_record(record("cloud-002", record_id="r-cloud-001"))
    assert store.record("r-cloud-001").hostname == "cloud-001"


def test_records_leave_out_deleted_ones_unless_asked(store):
    live = record("cloud-001")
    gone = record("cloud-002", state=NodeState.DELETED, created=T0 + timedelta(seconds=1))
    store.insert_record(live)
    store.insert_record(gone)
    assert store.records() == (live,)
    assert store.records(include_deleted=True) == (live, gone)


def test_update_record_returns_and_keeps_the_changed_record(store):
    store.insert_record(record("cloud-001", state=NodeState.BUSY))
    later = T0 + timedelta(minutes=5)
    updated = store.update_record("r-cloud-001", state=NodeState.OFFLINE, state_since=later,
                                  drain=DrainKind.IDLE, reason="idle 600 s")
    expected = replace(record("cloud-001"), state=NodeState.OFFLINE, state_since=later,
                       drain=DrainKind.IDLE, reason="idle 600 s")
    assert updated == expected
    assert store.record("r-cloud-001") == expected


def test_update_record_can_clear_an_optional_field(store):
    store.insert_record(full_record())
    updated = store.update_record(full_record().id, drain=None, down_since=None)
    assert updated.drain is None and updated.down_since is None


def test_update_record_leaves_the_fields_it_is_not_given(store):
    store.insert_record(full_record())
    updated = store.update_record(full_record().id, reason="x")
    assert updated == replace(full_record(), reason="x")


def test_update_record_takes_only_the_fields_that_change(store):
    store.insert_record(record("cloud-001"))
    with pytest.raises(TypeError, match="colour"):
        store.update_record("r-cloud-001", colour="blue", state=NodeState.BUSY)
    with pytest.raises(TypeError, match="id"):
        store.update_record("r-cloud-001", id="r-other")
    assert store.record("r-cloud-001").state is NodeState.IDLE


def test_update_with_a_value_that_would_not_read_back_is_rolled_back(store):
    store.insert_record(record("cloud-001"))
    with pytest.raises(ValueError):
        store.update_record("r-cloud-001", state="sleepy")
    assert store.record("r-cloud-001").state is NodeState.IDLE


def test_missing_record_raises_record_not_found(store):
    with pytest.raises(RecordNotFound):
        store.record("r-nope")
    with pytest.raises(RecordNotFound):
        store.update_record("r-nope", reason="x")


def test_naive_datetimes_are_refused(store):
    with pytest.raises(ValueError, match="naive"):
        store.insert_record(record("cloud-001", since=T0.replace(tzinfo=None)))
    with pytest.raises(ValueError, match="naive"):
        store.add_hint(T0.replace(tzinfo=None), {})
    assert store.records() == ()


# --- hints -----------------------------------------------------------------------------

def test_hints_come_back_oldest_first_with_their_payload(store):
    payload = {"user": "alice", "queue": None, "resources": ["nodes=2:ppn=4"],
               "array": {"size": 10, "slot_limit": 2}, "note": "ünïcode"}
    first = store.add_hint(T0, payload)
    second = store.add_hint(T0 + timedelta(microseconds=1), {"user": "bob"})
    hints = store.hints()
    assert [hint.id for hint in hints] == [first, second]
    assert hints[0].payload == payload
    assert hints[1].received == T0 + timedelta(microseconds=1)
    assert hints[1].received.tzinfo is timezone.utc


def test_hint_payload_may_hold_any_mapping(store):
    store.add_hint(T0, MappingProxyType({"inner": MappingProxyType({"a": 1})}))
    assert store.hints()[0].payload == {"inner": {"a": 1}}


def test_delete_hints_removes_only_the_given_ids(store):
    ids = [store.add_hint(T0, {"n": n}) for n in range(4)]
    store.delete_hints([ids[0], ids[2]])
    store.delete_hints([])
    assert [hint.payload["n"] for hint in store.hints()] == [1, 3]


def test_hint_ids_are_never_reused_after_deletion(store):
    newest = store.add_hint(T0, {})
    store.delete_hints([newest])
    assert store.add_hint(T0, {}) > newest


# --- intents ---------------------------------------------------------------------------

def test_added_intent_is_pending_and_reads_back_equal(store):
    added = store.add_intent(IntentKind.KILL, "cloud-001", T0)
    assert added.id >= 1 and added.status is IntentStatus.PENDING
    assert added.kind is IntentKind.KILL and added.target == "cloud-001"
    assert store.intent(added.id) == added


def test_complete_intent_sets_status_message_and_finished(store):
    added = store.add_intent(IntentKind.DRAIN_ALL, None, T0)
    store.complete_intent(added.id, IntentStatus.REFUSED, "already draining",
                          T0 + timedelta(seconds=10))
    assert store.intent(added.id) == replace(added, status=IntentStatus.REFUSED,
                                             message="already draining",
                                             finished=T0 + timedelta(seconds=10))


def test_pending_intents_are_listed_oldest_first(store):
    done = store.add_intent(IntentKind.KILL, "cloud-001", T0)
    first = store.add_intent(IntentKind.KILL, "cloud-002", T0)
    second = store.add_intent(IntentKind.RESET_POOL, "cloud", T0)
    store.complete_intent(done.id, IntentStatus.DONE, "", T0)
    assert [i.id for i in store.intents(pending_only=True)] == [first.id, second.id]
    assert [i.id for i in store.intents(pending_only=True, limit=1)] == [first.id]


def test_all_intents_list_the_latest_ones_oldest_first(store):
    ids = [store.add_intent(IntentKind.KILL, f"cloud-{n}", T0).id for n in range(5)]
    assert [i.id for i in store.intents()] == ids
    assert [i.id for i in store.intents(limit=2)] == ids[-2:]


def test_completing_a_missing_intent_raises_record_not_found(store):
    with pytest.raises(RecordNotFound):
        store.complete_intent(99, IntentStatus.DONE, "", T0)
    with pytest.raises(RecordNotFound):
        store.intent(99)


def test_an_intent_cannot_complete_as_pending(store):
    added = store.add_intent(IntentKind.KILL, "cloud-001", T0)
    with pytest.raises(ValueError):
        store.complete_intent(added.id, IntentStatus.PENDING, "", T0)


# --- flags and pool health -------------------------------------------------------------

def test_sleep_flag_defaults_off_and_survives_a_reopen(db_path):
    with SqliteStore(db_path) as first:
        assert first.is_sleeping() is False
        first.set_sleeping(True, T0)
    with SqliteStore(db_path) as second:
        assert second.is_sleeping() is True
        second.set_sleeping(False, T0)
        assert second.is_sleeping() is False


def test_pool_health_round_trips_and_is_replaced_per_pool(store):
    assert store.pool_health() == {}
    failing = PoolHealth("gpu", consecutive_failures=3, backoff_until=T0 + timedelta(minutes=4),
                         last_error=ErrorKind.CAPACITY, last_message="Quota exceeded for cores",
                         stopped=True)
    store.save_pool_health(PoolHealth("cloud"))
    store.save_pool_health(PoolHealth("gpu", consecutive_failures=1))
    store.save_pool_health(failing)
    assert store.pool_health() == {"cloud": PoolHealth("cloud"), "gpu": failing}


# --- history ---------------------------------------------------------------------------

def test_events_come_back_newest_first_up_to_the_limit(store):
    store.add_event(T0, EventKind.LAUNCH, "launch requested", hostname="cloud-001", pool="cloud")
    store.add_event(T0 + timedelta(seconds=1), EventKind.JOIN, "node joined",
                    hostname="cloud-001")
    store.add_event(T0 + timedelta(seconds=2), EventKind.FAILURE, "boot timeout", pool="cloud")
    events = store.events(limit=2)
    assert [e.kind for e in events] == [EventKind.FAILURE, EventKind.JOIN]
    assert all(isinstance(e.kind, EventKind) for e in events)
    assert events[0].pool == "cloud" and events[0].hostname is None
    assert events[1].time == T0 + timedelta(seconds=1)
    assert len(store.events()) == 3


def test_failure_events_keep_their_error_class(store):
    store.add_event(T0, "failure", "quota exceeded", pool="cloud", error_kind=ErrorKind.CAPACITY)
    store.add_event(T0, "launch", "launch requested", pool="cloud")
    launch, failure = store.events()
    assert failure.error_kind is ErrorKind.CAPACITY and launch.error_kind is None


def test_a_version_1_database_is_migrated_keeping_its_events(db_path):
    script = (resources.files("dtserver.store") / "migrations" / "0001_init.sql").read_text()
    with sqlite3.connect(db_path) as raw:
        raw.executescript(script)
        raw.execute("INSERT INTO events (time, kind, message) VALUES "
                    "('2026-11-25T12:00:00.000000+00:00', 'launch', 'old event')")
        raw.execute("PRAGMA user_version = 1")
    with SqliteStore(db_path) as migrated:
        [old] = migrated.events()
        assert old.message == "old event" and old.error_kind is None
        assert old.kind is EventKind.LAUNCH
    assert user_version(db_path) == latest_version() >= 2


def test_a_version_2_database_is_migrated_keeping_its_data_and_has_no_catalogue(db_path):
    folder = resources.files("dtserver.store") / "migrations"
    with sqlite3.connect(db_path) as raw:
        for name in ("0001_init.sql", "0002_event_error_kind.sql"):
            raw.executescript((folder / name).read_text())
        raw.execute("INSERT INTO hints (received, payload) VALUES "
                    "('2026-11-25T12:00:00.000000+00:00', '{\"user\": \"alice\"}')")
        raw.execute("PRAGMA user_version = 2")
    with SqliteStore(db_path) as migrated:
        assert [hint.payload for hint in migrated.hints()] == [{"user": "alice"}]
        assert migrated.pool_catalogue() is None
        migrated.save_pool_catalogue(T0, PoolCatalogue(pools=()))
        assert migrated.pool_catalogue() == (T0, PoolCatalogue(pools=()))
    assert user_version(db_path) == latest_version() >= 3


def test_hints_waiting_in_a_version_3_database_count_against_their_users_limit(db_path):
    folder = resources.files("dtserver.store") / "migrations"
    with sqlite3.connect(db_path) as raw:
        for name in ("0001_init.sql", "0002_event_error_kind.sql", "0003_pool_catalogue.sql"):
            raw.executescript((folder / name).read_text())
        raw.execute("INSERT INTO hints (received, payload) VALUES "
                    "('2026-11-25T12:00:00.000000+00:00', '{\"user\": \"alice\"}')")
        raw.execute("PRAGMA user_version = 3")
    with SqliteStore(db_path) as migrated:
        with pytest.raises(HintLimitReached):
            migrated.add_hint(T0, {"user": "alice"}, limits=HintLimits(per_user=1))
        migrated.add_hint(T0, {"user": "bob"}, limits=HintLimits(per_user=1))


def full_catalogue() -> PoolCatalogue:
    """Every field away from its default: sets of several items, GPUs, both core caps."""
    return PoolCatalogue(
        pools=(CataloguePool("cloud", (Flavor("m1.small", 2, 4096),
                                       Flavor("m1.large", 8, 16384)),
                             max_nodes=10, properties=frozenset({"CLOUD"})),
               CataloguePool("gpu", (Flavor("g1.large", 8, 32768, gpus=2),), max_nodes=4,
                             max_cores=32, properties=frozenset({"CLOUD", "gpu", "ssd"}),
                             queues=frozenset({"gpu", "long"}),
                             accounts=frozenset({"physics", "chemistry"}))),
        queues=frozenset({"batch", "gpu", "long"}), max_cores=96)


def test_pool_catalogue_round_trips_every_field_and_survives_a_reopen(db_path):
    written = (T0 + timedelta(microseconds=5)).astimezone(UTC_PLUS_2)
    with SqliteStore(db_path) as first:
        first.save_pool_catalogue(written, full_catalogue())
    with SqliteStore(db_path) as second:
        when, catalogue = second.pool_catalogue()
    assert catalogue == full_catalogue()
    assert when == written and when.tzinfo == timezone.utc


def test_a_new_pool_catalogue_replaces_the_old_one(store, db_path):
    store.save_pool_catalogue(T0, full_catalogue())
    store.save_pool_catalogue(T0 + timedelta(seconds=60), PoolCatalogue(pools=()))
    assert store.pool_catalogue() == (T0 + timedelta(seconds=60), PoolCatalogue(pools=()))
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("SELECT count(*) FROM pool_catalogue").fetchone()[0] == 1


def test_event_history_is_bounded(db_path):
    with SqliteStore(db_path, max_events=5) as bounded:
        for n in range(12):
            bounded.add_event(T0, "intent", f"event {n}")
        assert [e.message for e in bounded.events(limit=100)] == [
            f"event {n}" for n in range(11, 6, -1)]
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("SELECT count(*) FROM events").fetchone()[0] == 5


def test_only_the_last_plan_is_kept(store):
    assert store.last_plan() is None
    store.save_plan(T0, Plan(actions=(PokeScheduler("nodes turned ready"),)))
    store.save_plan(T0 + timedelta(seconds=10), Plan(actions=(), notes=("sleeping",)))
    assert store.last_plan() == StoredPlan(T0 + timedelta(seconds=10), (), (), ("sleeping",))


def test_touching_the_last_plan_keeps_it_and_dates_it_anew(store):
    store.touch_plan(T0)                      # before any plan: nothing to date
    assert store.last_plan() is None
    store.save_plan(T0, Plan(actions=(), notes=("sleeping",)))
    store.touch_plan(T0 + timedelta(seconds=10))
    assert store.last_plan() == StoredPlan(T0 + timedelta(seconds=10), (), (), ("sleeping",))


@pytest.mark.parametrize("stored", [
    '{"actions": [{"type": "LaunchTheMissiles"}], "verdicts": [], "notes": []}',
    '{"actions": [], "verdicts": [{"job_id": "1.vm", "status": "pondering"}], "notes": []}',
    '{"plan": "from a release that kept another shape"}',
    'not json',
])
def test_a_plan_another_release_stored_reads_as_none_until_the_next_pass(store, stored):
    # The last plan is a report the next pass rewrites, never state: /status must answer.
    store.save_plan(T0, Plan(actions=(), notes=("sleeping",)))
    with sqlite3.connect(store.path) as raw:
        raw.execute("UPDATE last_plan SET plan = ? WHERE id = 1", (stored,))
    assert store.last_plan() is None
    store.save_plan(T0, Plan(actions=(), notes=("sleeping",)))
    assert store.last_plan() == StoredPlan(T0, (), (), ("sleeping",))


def test_last_pass_round_trips(store):
    assert store.last_pass() is None
    report = PassReport(time=T0, duration_seconds=0.25, ok=False,
                        summary={"launched": 2, "errors": ["nova: timeout"]})
    store.save_pass(report)
    assert store.last_pass() == report


# --- concurrent writers ----------------------------------------------------------------

def add_hints(path: str, writer: int, count: int,
              start: threading.Barrier | multiprocessing.synchronize.Barrier) -> None:
    """One writer: its own SqliteStore on the shared file (a thread or a process)."""
    start.wait(timeout=WRITERS_TIMEOUT_SECONDS)
    with SqliteStore(path) as own:
        for n in range(count):
            own.add_hint(T0, {"writer": writer, "n": n})


def assert_every_hint_arrived(path: Path, writers: int, count: int) -> None:
    with SqliteStore(path) as check:
        hints = check.hints()
    assert len({hint.id for hint in hints}) == writers * count
    assert sorted((h.payload["writer"], h.payload["n"]) for h in hints) == [
        (writer, n) for writer in range(writers) for n in range(count)]


def test_two_stores_in_two_threads_lose_no_hints(db_path):
    start = threading.Barrier(2)
    threads = [threading.Thread(target=add_hints, args=(str(db_path), writer, 300, start))
               for writer in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WRITERS_TIMEOUT_SECONDS)
    assert not any(thread.is_alive() for thread in threads)
    assert_every_hint_arrived(db_path, writers=2, count=300)


def test_one_store_shared_by_several_threads_loses_no_hints(store, db_path):
    def write(writer: int) -> None:
        for n in range(150):
            store.add_hint(T0, {"writer": writer, "n": n})
            if n % 50 == 0:
                store.hints()   # readers interleave with the writers

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WRITERS_TIMEOUT_SECONDS)
    assert not any(thread.is_alive() for thread in threads)
    assert_every_hint_arrived(db_path, writers=4, count=150)


def test_two_stores_in_two_processes_lose_no_hints(db_path):
    # spawn: a fresh interpreter per writer, as gunicorn worker and reconciler are.
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    processes = [context.Process(target=add_hints, args=(str(db_path), writer, 300, start))
                 for writer in range(2)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(timeout=WRITERS_TIMEOUT_SECONDS)
        assert [process.exitcode for process in processes] == [0, 0]
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    assert_every_hint_arrived(db_path, writers=2, count=300)


def add_one_hint(store: SqliteStore) -> None:
    store.add_hint(T0, {"writer": "child"})


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="needs fork")
def test_a_store_inherited_across_fork_opens_its_own_connections(store):
    # gunicorn with preload_app opens the store in the master, then forks its workers.
    store.add_hint(T0, {"writer": "parent"})
    child = multiprocessing.get_context("fork").Process(target=add_one_hint, args=(store,))
    child.start()
    child.join(timeout=WRITERS_TIMEOUT_SECONDS)
    if child.is_alive():
        child.kill()
        child.join()
    assert child.exitcode == 0
    store.add_hint(T0, {"writer": "parent"})
    assert [hint.payload["writer"] for hint in store.hints()] == ["parent", "child", "parent"]


# --- installation id --------------------------------------------------------------------

def test_a_new_database_gets_a_random_installation_id_that_it_keeps(db_path, tmp_path):
    with SqliteStore(db_path) as first:
        installation = first.installation_id()
    with SqliteStore(db_path) as reopened:
        assert reopened.installation_id() == installation
    with SqliteStore(tmp_path / "other.db") as other:
        assert other.installation_id() != installation
    assert len(installation) == 32 and int(installation, 16) >= 0


def test_an_older_database_gets_its_installation_id_when_migrated(db_path):
    folder = resources.files("dtserver.store") / "migrations"
    with sqlite3.connect(db_path) as raw:
        for name in ("0001_init.sql", "0002_event_error_kind.sql", "0003_pool_catalogue.sql"):
            raw.executescript((folder / name).read_text())
        raw.execute("PRAGMA user_version = 3")
    with SqliteStore(db_path) as migrated:
        installation = migrated.installation_id()
    with SqliteStore(db_path) as reopened:
        assert reopened.installation_id() == installation
