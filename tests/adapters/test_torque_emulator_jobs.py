"""Behaviour of the TorqueEmulator's pbs_sched: when queued jobs start, where they run,
and how they end (runtime, walltime, dead moms, offline and deleted nodes).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.adapters.torque_emulator_support import (
    NOT_ENOUGH, cluster, emulator, ok, poke, sh, xml_jobs)


# --- pbs_sched ---------------------------------------------------------------------------------

def test_queued_job_waits_next_to_a_free_node_until_the_scheduler_is_poked() -> None:
    clock, emu = emulator()
    ok(emu, "qmgr -c 'create node cn01 np=2,properties=CLOUD'")
    job = emu.submit(queue="cloud", resources={"nodes": "1:ppn=2:CLOUD"})
    emu.mom_up("cn01", ncpus=2)
    clock.advance(100)
    assert (emu.node("cn01").state, emu.job(job).state) == ("free", "Q")
    assert emu.job(job).comment == NOT_ENOUGH
    poke(emu)
    assert (emu.job(job).state, emu.job(job).exec_host) == ("R", "cn01/0-1")
    assert emu.node("cn01").state == "job-exclusive"


def test_periodic_cycle_starts_waiting_jobs_every_scheduler_iteration() -> None:
    clock, emu = emulator(scheduler_iteration=30)
    ok(emu, "qmgr -c 'create node cn01 np=2'")
    job = emu.submit(resources={"nodes": "1"})
    emu.mom_up("cn01", ncpus=2)
    clock.advance(29)
    assert emu.job(job).state == "Q"
    clock.advance(1)
    assert emu.job(job).state == "R"


def test_cycle_started_by_a_submission_also_starts_older_jobs_that_now_fit() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    ok(emu, "pbsnodes -o cn01")
    older = emu.submit(resources={"nodes": "1:ppn=2"})
    ok(emu, "pbsnodes -c cn01")
    newer = emu.submit(resources={"nodes": "1"})
    assert (emu.job(older).state, emu.job(newer).state) == ("R", "Q")


def test_no_cycle_runs_while_scheduling_is_off() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    ok(emu, "qmgr -c 'set server scheduling = False'")
    job = emu.submit()
    clock.advance(1200)
    assert emu.job(job).state == "Q"


def test_job_completes_after_its_runtime_and_is_purged_after_keep_completed() -> None:
    clock, emu = emulator(keep_completed=300)
    cluster(clock, emu, ("cn01", 2, ""))
    job = emu.submit(runtime=30)
    clock.advance(30)
    done = xml_jobs(emu)[job]
    assert [done.findtext(tag) for tag in ("job_state", "substate", "exit_status")] == \
        ["C", "59", "0"]
    assert done.find("resources_used/walltime").text == "00:00:30"
    assert emu.node("cn01").jobs == ()
    clock.advance(300)
    result = sh(emu, f"qstat -x {job}")
    assert (result.status, result.stdout, result.stderr) == (
        153, b"", f"qstat: Unknown Job Id Error {job}\n")


def test_job_end_starts_the_next_queued_job_in_fifo_order() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    first = emu.submit(resources={"nodes": "1:ppn=2"}, runtime=60)
    second = emu.submit(resources={"nodes": "1:ppn=2"}, runtime=60)
    small = emu.submit(resources={"nodes": "1"}, runtime=60)
    assert [emu.job(job).state for job in (first, second, small)] == ["R", "Q", "Q"]
    clock.advance(60)
    assert [emu.job(job).state for job in (first, second, small)] == ["C", "R", "Q"]


def test_walltime_kills_a_job_that_runs_longer() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    job = emu.submit(resources={"walltime": "00:01:00"}, runtime=3600)
    clock.advance(60)
    assert (emu.job(job).state, emu.job(job).exit_status) == ("C", -11)


def test_running_job_shows_the_walltime_it_has_left() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    job = emu.submit(resources={"walltime": "00:30:00"}, runtime=3600)
    clock.advance(12)
    assert xml_jobs(emu)[job].find("Walltime/Remaining").text == "1788"


def test_job_on_a_dead_mom_does_not_finish_until_the_mom_is_back() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    job = emu.submit(runtime=60)
    emu.mom_down("cn01")
    clock.advance(600)
    assert emu.job(job).state == "R"
    emu.mom_up("cn01", ncpus=2)
    assert emu.job(job).state == "C"


def test_dead_mom_gets_no_new_jobs_before_its_node_is_marked_down() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    emu.mom_down("cn01")
    job = emu.submit()
    assert (emu.node("cn01").state, emu.job(job).state) == ("free", "Q")


def test_offline_node_keeps_its_running_job_and_gets_no_new_one() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    running = emu.submit(runtime=600)
    ok(emu, "pbsnodes -o -N drain cn01")
    waiting = emu.submit(runtime=600)
    node = emu.node("cn01")
    assert (node.state, node.jobs, node.note) == ("offline", (running,), "drain")
    assert (emu.job(running).state, emu.job(waiting).state) == ("R", "Q")
    ok(emu, "pbsnodes -c cn01")
    ok(emu, "pbsnodes -N n cn01")
    poke(emu)
    assert (emu.job(waiting).state, emu.node("cn01").note) == ("R", None)


def test_deleting_a_node_with_a_running_job_succeeds_and_requeues_the_job() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""), ("cn02", 2, ""))
    job = emu.submit(resources={"nodes": "2"}, runtime=600)
    assert emu.job(job).exec_host == "cn01/0+cn02/0"
    assert sh(emu, "qmgr -c 'delete node cn01'").status == 0
    requeued = emu.job(job)
    assert (requeued.state, requeued.exec_host, requeued.exit_status) == ("Q", None, 0)
    assert emu.node("cn02").jobs == ()


def test_array_prints_the_parent_id_and_runs_subjobs_within_the_slot_limit() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 8, ""))
    assert ok(emu, "qsub -t 1-4%2 -N arr", stdin=b"sleep 60\n") == "0[].vm\n"
    states = {job_id: job.findtext("job_state") for job_id, job in xml_jobs(emu).items()}
    assert states == {"0[1].vm": "R", "0[2].vm": "R", "0[3].vm": "Q", "0[4].vm": "Q"}
    parent = xml_jobs(emu, "qstat -x")["0[].vm"]
    assert (parent.findtext("job_state"), parent.findtext("job_array_request")) == ("R", "1-4%2")
    clock.advance(60)
    assert [emu.job(f"0[{index}]").state for index in range(1, 5)] == ["C", "C", "R", "R"]
    clock.advance(60 + 300)
    assert sh(emu, "qstat -x 0[]").status == 153


def test_held_job_stays_held() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    job = emu.submit(hold=True)
    clock.advance(1200)
    held = xml_jobs(emu)[job]
    assert [held.findtext(tag) for tag in ("job_state", "substate", "Hold_Types")] == \
        ["H", "20", "u"]


def test_procs_takes_free_cores_on_several_nodes() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""), ("cn02", 2, ""))
    job = emu.submit(resources={"procs": "3"})
    assert emu.job(job).exec_host == "cn01/0-1+cn02/0"
    assert "nodes" not in emu.job(job).resources


def test_ncpus_alone_places_like_one_node_with_one_core() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    job = emu.submit(resources={"ncpus": "4"})
    assert emu.job(job).exec_host == "cn01/0"


def test_node_jobs_field_lists_core_ranges_per_job() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 4, ""))
    emu.submit(resources={"nodes": "1:ppn=2"}, runtime=600)
    emu.submit(resources={"nodes": "1"}, runtime=600)
    node = ET.fromstring(ok(emu, "pbsnodes -x cn01")).find("Node")
    assert (node.findtext("state"), node.findtext("jobs")) == ("free", "0-1/0.vm,2/1.vm")


def test_hostname_spec_runs_only_on_that_node() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""), ("cn02", 2, ""))
    job = emu.submit(resources={"nodes": "cn02:ppn=2"})
    assert emu.job(job).exec_host == "cn02/0-1"


def test_bare_property_as_queue_neednodes_is_taken_for_a_host_name() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, "CLOUD"))
    ok(emu, "qmgr -c 'set queue cloud resources_default.neednodes = CLOUD'")
    job = emu.submit(queue="cloud")
    assert (emu.job(job).state, emu.job(job).comment) == (
        "Q", "Not Running - PBS Error: Unknown node ")
    ok(emu, "qmgr -c 'set queue cloud resources_default.neednodes = 1:CLOUD'")
    assert emu.job(job).resources["neednodes"] == "1:CLOUD"
    poke(emu)
    assert emu.job(job).state == "R"
