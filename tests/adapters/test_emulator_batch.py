"""EmulatorBatch answers what TorqueBatch answers over the same emulator, at every step of
a cluster's life: it reads the emulator's state instead of qstat/pbsnodes XML."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dtserver.batch import BatchUnavailable
from dtserver.batch.torque import TorqueBatch
from dtserver.clock import FakeClock
from dtserver.fakes.torque.batch import EmulatorBatch
from dtserver.fakes.torque.server import TorqueEmulator

START = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
CLOUD = frozenset({"CLOUD"})


def world() -> tuple[FakeClock, TorqueEmulator, EmulatorBatch, TorqueBatch]:
    clock = FakeClock(START)
    emulator = TorqueEmulator(clock, scheduler_iteration=60.0)
    direct = EmulatorBatch(emulator)
    # Commands reach the emulator through the counting runner, as the adapter asks.
    return clock, emulator, direct, TorqueBatch(direct.runner)


def join_one_node(clock: FakeClock, emulator: TorqueEmulator, direct: EmulatorBatch) -> None:
    """cn-001 (4 cores) registered as a slot, joined once its hierarchy went out, mom up."""
    direct.register_slot("cn-001", 4, CLOUD, "slot")
    clock.advance(11)
    direct.join_node("cn-001", "10.0.0.1", 4, CLOUD)
    emulator.mom_up("cn-001", 4, 8192)


def assert_same(direct: EmulatorBatch, xml: TorqueBatch) -> None:
    assert direct.nodes() == xml.nodes()
    assert direct.jobs() == xml.jobs()


def test_jobs_and_nodes_match_torque_batch_through_a_cluster_life():
    clock, emulator, direct, xml = world()
    assert_same(direct, xml)
    for name in ("cn-001", "cn-002", "cn-003"):
        direct.register_slot(name, 8, CLOUD, "slot")
    assert_same(direct, xml)
    emulator.submit(resources={"nodes": "1:ppn=2", "walltime": "00:10:00"}, runtime=120)
    emulator.submit(resources={"nodes": "2:ppn=4+1:ppn=2"}, runtime=300, owner="alice",
                    account="proj")
    emulator.submit(resources={"nodes": "1:ppn=1"}, array="1-3%2", runtime=30)
    emulator.submit(resources={"nodes": "1:ppn=1"}, hold=True)
    emulator.submit(queue="cloud", resources={"procs": "3"}, runtime=60)
    assert_same(direct, xml)
    clock.advance(11)
    assert_same(direct, xml)                   # hierarchy sent: offline cleared
    for name in ("cn-001", "cn-002", "cn-003"):
        direct.join_node(name, "10.0.0.1", 8, CLOUD)
        emulator.mom_up(name, 8, 16384)
    for seconds in (5, 11, 5, 60, 60, 120, 200, 300):
        clock.advance(seconds)
        assert_same(direct, xml)
        direct.poke_scheduler()
        assert_same(direct, xml)
    direct.offline_node("cn-003", "dynamictorque: draining")
    assert_same(direct, xml)
    direct.clear_node("cn-003")
    emulator.mom_down("cn-002")
    clock.advance(200)
    assert_same(direct, xml)
    direct.release_node("cn-001", 8, CLOUD, "slot")
    assert_same(direct, xml)
    clock.advance(600)
    assert_same(direct, xml)


def test_an_unchanged_emulator_answers_with_the_same_values():
    clock, emulator, direct, _ = world()
    direct.register_slot("cn-001", 4, CLOUD, "slot")
    emulator.submit(resources={"nodes": "1:ppn=1"})
    first = direct.jobs(), direct.nodes()
    assert direct.jobs() is first[0] and direct.nodes() is first[1]
    clock.advance(11)                          # the hierarchy event changes the node
    assert direct.nodes() is not first[1]
    assert direct.jobs() == first[0]


def test_nodes_changed_in_place_or_recreated_are_read_afresh():
    clock, emulator, direct, xml = world()
    join_one_node(clock, emulator, direct)
    clock.advance(20)
    assert_same(direct, xml)
    direct.runner.run(["qmgr", "-c", "set node cn-001 properties += gpu"])
    assert direct.nodes()[0].properties == CLOUD | {"gpu"}
    emulator.submit(resources={"nodes": "1:ppn=3"}, runtime=60)
    direct.poke_scheduler()
    assert direct.nodes()[0].used_cores == 3          # a slot taken, no field set
    assert_same(direct, xml)
    clock.advance(61)
    assert direct.nodes()[0].used_cores == 0
    direct.runner.run(["qmgr", "-c", "delete node cn-001"])
    direct.register_slot("cn-001", 4, CLOUD, "slot")
    assert_same(direct, xml)
    assert direct.nodes()[0].note == "slot" and not direct.nodes()[0].has_reported


def test_a_server_outage_makes_both_reads_unavailable():
    _, emulator, direct, _ = world()
    emulator.set_down(True)
    with pytest.raises(BatchUnavailable):
        direct.jobs()
    with pytest.raises(BatchUnavailable):
        direct.nodes()


def test_run_times_tell_when_a_job_started_and_ended_and_where():
    clock, emulator, direct, _ = world()
    join_one_node(clock, emulator, direct)
    job = emulator.submit(resources={"nodes": "1:ppn=2"}, runtime=100)
    assert direct.run_times(job) is None
    clock.advance(16)
    direct.poke_scheduler()
    started, ended, hosts = direct.run_times(job)
    assert (started - START).total_seconds() == 27 and ended is None and hosts == ("cn-001",)
    clock.advance(100)
    assert direct.run_times(job)[1] == started + (clock.now() - started)


def test_next_news_time_leaves_out_purges_and_idle_cycles():
    clock, emulator, direct, _ = world()
    join_one_node(clock, emulator, direct)
    clock.advance(20)
    direct.poke_scheduler()
    emulator.submit(resources={"nodes": "1:ppn=1"}, runtime=30)
    end = clock.now().timestamp() + 30
    assert direct.next_news_time(cycles=False).timestamp() == pytest.approx(end)
    clock.advance(31)
    # left: the purge of the finished job (not news) and the periodic cycle
    assert direct.next_news_time(cycles=False) is None
    cycle = direct.next_news_time(cycles=True)
    assert cycle is not None and cycle <= START.replace(minute=2)
