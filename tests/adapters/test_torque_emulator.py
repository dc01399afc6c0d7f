"""Behaviour of the TorqueEmulator on a FakeClock: node lifecycle, pbs_sched, qsub rules.

The golden comparisons with the real captures are in test_emulator_fidelity.py.
"""
from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dtserver.batch import BatchUnavailable
from dtserver.batch.torque import TorqueBatch
from dtserver.batch.torque_commands import CommandResult
from dtserver.clock import FakeClock
from dtserver.fakes.torque.server import TorqueEmulator
from dtserver.fakes.torque.state import EmulatorError
from dtserver.model import JobState
from tests.torque_captures import find, load_blocks

START = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
NOT_ENOUGH = "Not Running: Not enough of the right type of nodes are available"
SLOT_NOTE = "dynamictorque: slot, no instance"
# Measured on real TORQUE (49_): pbsnodes' answer to a state change in the creation window.
WINDOW_REFUSAL = find(load_blocks("49_okclients_window.txt"), "pbsnodes -o -N x N")[0].stderr
OKCLIENTS_NOT_SENT = WINDOW_REFUSAL.removeprefix("Error setting note attribute for N - ")
SCRIPT_FILE_REFUSALS = {capture.command: capture
                        for capture in load_blocks("50_qsub_script_file_checks.txt")}


def emulator(**options: object) -> tuple[FakeClock, TorqueEmulator]:
    clock = FakeClock(START)
    return clock, TorqueEmulator(clock, **options)


def sh(emu: TorqueEmulator, line: str, stdin: bytes | None = None) -> CommandResult:
    return emu.run(shlex.split(line), stdin=stdin)


def ok(emu: TorqueEmulator, line: str, stdin: bytes | None = None) -> str:
    result = sh(emu, line, stdin)
    assert result.status == 0, (line, result.stderr)
    return result.stdout.decode()


def cluster(clock: FakeClock, emu: TorqueEmulator, *nodes: tuple[str, int, str]) -> None:
    """Create (name, cpus, properties) nodes with a mom each, and wait until they are free."""
    for name, cpus, properties in nodes:
        extra = f",properties={properties}" if properties else ""
        ok(emu, f"qmgr -c 'create node {name} np={cpus}{extra}'")
        emu.mom_up(name, ncpus=cpus)
    clock.advance(20)


def poke(emu: TorqueEmulator) -> None:
    ok(emu, "qmgr -c 'set server scheduling = True'")


def xml_jobs(emu: TorqueEmulator, line: str = "qstat -x -t") -> dict[str, ET.Element]:
    data = ET.fromstring(ok(emu, line).split("\n", 1)[1])
    return {job.findtext("Job_Id"): job for job in data}


def window_refusal(name: str) -> str:
    return WINDOW_REFUSAL.replace(" for N - ", f" for {name} - ")


def restarted(clock: FakeClock, emu: TorqueEmulator) -> TorqueEmulator:
    """A copy of `emu`, made from its saved JSON state, whose pbs_server restarted."""
    copy = TorqueEmulator.from_state(clock, json.loads(json.dumps(emu.to_state())))
    copy.restart()
    return copy


def states_and_notes(emu: TorqueEmulator) -> dict[str, tuple[str, str | None]]:
    return {node.name: (node.state, node.note) for node in emu.nodes()}


# --- node lifecycle --------------------------------------------------------------------------

def test_new_node_is_down_offline_mom_list_not_sent_then_down_after_ten_seconds() -> None:
    clock, emu = emulator()
    ok(emu, "qmgr -c 'create node cn01 np=4,properties=CLOUD'")
    clock.advance(9.9)
    assert emu.node("cn01").state == "down,offline,MOM-list-not-sent"
    clock.advance(0.1)
    assert emu.node("cn01").state == "down"
    clock.advance(3600)
    assert (emu.node("cn01").state, emu.node("cn01").has_status) == ("down", False)


def test_mom_started_in_the_creation_window_reports_15_s_after_the_create() -> None:
    clock, emu = emulator()
    ok(emu, "qmgr -c 'create node cn01 np=4'")
    emu.mom_up("cn01", ncpus=4)
    clock.advance(14.9)
    assert emu.node("cn01").state == "down"
    clock.advance(0.1)
    assert (emu.node("cn01").state, emu.node("cn01").has_status) == ("free", True)


def test_mom_started_before_its_node_exists_is_heard_a_status_interval_later() -> None:
    # Measured: a mom started about 2 s before `create node` left its node down until
    # 43.6-44.7 s after the create. Its first status was refused (no entry: "address not
    # trusted"), and it sends the next one 45 s after the first. (This emulator used to
    # let such a mom report 15 s after the create, as if it had started after it.)
    clock, emu = emulator()
    emu.mom_up("cn01", ncpus=4)
    clock.advance(2)
    ok(emu, "qmgr -c 'create node cn01 np=4'")
    clock.advance(43.9)
    assert emu.node("cn01").state == "down"
    clock.advance(0.1)
    assert emu.node("cn01").state == "free"


def test_mom_started_on_a_waiting_node_reports_within_a_second() -> None:
    clock, emu = emulator()
    ok(emu, "qmgr -c 'create node cn01 np=4'")
    clock.advance(60)
    emu.mom_up("cn01", ncpus=4)
    assert emu.node("cn01").state == "down"
    clock.advance(1)
    assert emu.node("cn01").state == "free"


def test_auto_node_np_overwrites_np_with_the_mom_cpus_at_every_report() -> None:
    clock, emu = emulator()
    ok(emu, "qmgr -c 'create node cn01 np=4,properties=CLOUD'")
    emu.mom_up("cn01", ncpus=2)
    clock.advance(15)
    assert emu.node("cn01").np == 2
    ok(emu, "qmgr -c 'set node cn01 np = 8'")
    assert emu.node("cn01").np == 8
    clock.advance(45)
    assert emu.node("cn01").np == 2


def test_np_stays_as_configured_without_auto_node_np() -> None:
    clock, emu = emulator(auto_node_np=False)
    ok(emu, "qmgr -c 'create node cn01 np=4'")
    emu.mom_up("cn01", ncpus=2)
    clock.advance(120)
    assert (emu.node("cn01").state, emu.node("cn01").np) == ("free", 4)


def test_dead_mom_leaves_the_node_free_for_three_minutes_then_down_with_its_status() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    emu.mom_down("cn01")
    clock.advance(179)
    assert emu.node("cn01").state == "free"
    clock.advance(1)
    assert (emu.node("cn01").state, emu.node("cn01").has_status) == ("down", True)
    assert "ncpus=2" in ok(emu, "pbsnodes -x cn01")


@pytest.mark.parametrize("line", [
    "pbsnodes -o -N slot cn01",
    "pbsnodes -o cn01",            # changes nothing: the new entry is offline already
    "pbsnodes -c cn01",
    "pbsnodes -c -N slot cn01",
    "pbsnodes -r cn01",
])
def test_every_pbsnodes_state_change_in_the_creation_window_is_refused_with_its_note(
        line: str) -> None:
    # (This emulator used to accept `-o` here and drop it when the hierarchy cleared
    # offline; the real server refuses the request, note included: 49_.)
    _, emu = emulator()
    ok(emu, "qmgr -c 'create node cn01 np=2'")
    result = sh(emu, line)
    assert (result.status, result.stdout, result.stderr) == (0, b"", window_refusal("cn01"))
    assert (emu.node("cn01").state, emu.node("cn01").note) == (
        "down,offline,MOM-list-not-sent", None)


def test_a_note_alone_is_accepted_in_the_creation_window() -> None:
    clock, emu = emulator()
    ok(emu, "qmgr -c 'create node cn01 np=2'")
    result = sh(emu, "pbsnodes -N slot cn01")
    assert (result.status, result.stderr) == (0, "")
    clock.advance(10)
    assert (emu.node("cn01").state, emu.node("cn01").note) == ("down", "slot")
    ok(emu, "pbsnodes -o cn01")
    assert emu.node("cn01").state == "down,offline"


def test_qmgr_state_change_in_the_creation_window_is_refused_but_a_note_is_taken() -> None:
    _, emu = emulator()
    ok(emu, "qmgr -c 'create node cn01 np=2'")
    result = sh(emu, "qmgr -c 'set node cn01 state = offline'")
    assert (result.status, result.stderr) == (
        2, f"qmgr obj=cn01 svr=default: {OKCLIENTS_NOT_SENT}")
    ok(emu, "qmgr -c 'set node cn01 note = slot'")
    assert emu.node("cn01").note == "slot"


def test_create_node_takes_a_quoted_note_with_spaces_colon_and_comma() -> None:
    _, emu = emulator()
    ok(emu, f"qmgr -c 'create node cn01 np=4,properties=CLOUD,note=\"{SLOT_NOTE}\"'")
    node = emu.node("cn01")
    assert (node.np, node.properties, node.note) == (4, ("CLOUD",), SLOT_NOTE)
    assert f"     note = {SLOT_NOTE}\n" in ok(emu, "pbsnodes -a cn01")


def test_pbsnodes_reset_marks_a_node_down_until_its_mom_reports_again() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    ok(emu, "pbsnodes -o cn01")
    ok(emu, "pbsnodes -r cn01")
    assert emu.node("cn01").state == "down"
    clock.advance(45)
    assert emu.node("cn01").state == "free"


def test_pbsnodes_on_a_server_without_nodes_fails_instead_of_printing_an_empty_list() -> None:
    _, emu = emulator()
    for line in ("pbsnodes -x", "pbsnodes -a", "pbsnodes -l"):
        result = sh(emu, line)
        assert (result.status, result.stdout) == (1, b"")
        assert result.stderr.startswith("pbsnodes: Server has no node list")


def test_create_node_with_an_unresolvable_name_is_refused() -> None:
    _, emu = emulator(resolvable=lambda name: name != "ghost")
    result = sh(emu, "qmgr -c 'create node ghost np=2'")
    assert (result.status, result.stderr) == (2, "qmgr obj=ghost svr=default: Unknown node \n")
    assert sh(emu, "qmgr -c 'create node real np=2'").status == 0


# --- saved node state and server restart ----------------------------------------------------

def test_restart_rebuilds_nodes_from_the_offline_list_and_notes_saved_last() -> None:
    # The sequence measured on real TORQUE (server_priv/node_status and node_note).
    clock, emu = emulator()
    for name in ("cloud-001", "cloud-002"):
        ok(emu, f"qmgr -c 'create node {name} np=4,properties=CLOUD'")
    clock.advance(10)
    ok(emu, f"pbsnodes -o -N '{SLOT_NOTE}' cloud-001 cloud-002")
    assert states_and_notes(restarted(clock, emu)) == {
        "cloud-001": ("offline", SLOT_NOTE), "cloud-002": ("offline", SLOT_NOTE)}
    ok(emu, "qmgr -c 'delete node cloud-001'")
    assert states_and_notes(restarted(clock, emu)) == {"cloud-002": ("offline", SLOT_NOTE)}
    ok(emu, "qmgr -c 'create node cloud-001 np=4,properties=CLOUD'")
    # Neither delete nor create rewrote node_note: the old note comes back.
    assert states_and_notes(restarted(clock, emu)) == {
        "cloud-001": ("down", SLOT_NOTE), "cloud-002": ("offline", SLOT_NOTE)}
    ok(emu, "pbsnodes -o -N other cloud-002")
    assert states_and_notes(restarted(clock, emu)) == {
        "cloud-001": ("down", None), "cloud-002": ("offline", "other")}


def test_a_state_write_during_a_creation_window_saves_that_entry_offline() -> None:
    clock, emu = emulator()
    for name in ("cloud-001", "cloud-002"):
        ok(emu, f"qmgr -c 'create node {name} np=4,properties=CLOUD'")
    clock.advance(10)
    ok(emu, "pbsnodes -o cloud-002")
    ok(emu, "qmgr -c 'delete node cloud-001'")
    ok(emu, "qmgr -c 'create node cloud-001 np=4,properties=CLOUD'")
    ok(emu, "pbsnodes -c cloud-002")       # saves every offline entry: the new one too
    clock.advance(10)                      # the hierarchy clears offline and saves nothing
    assert emu.node("cloud-001").state == "down"
    assert states_and_notes(restarted(clock, emu)) == {
        "cloud-001": ("offline", None), "cloud-002": ("down", None)}


def test_notes_are_saved_when_a_request_changes_one_not_at_create() -> None:
    clock, emu = emulator()
    ok(emu, f"qmgr -c 'create node cloud-001 np=4,note=\"{SLOT_NOTE}\"'")
    assert states_and_notes(restarted(clock, emu)) == {"cloud-001": ("down", None)}
    clock.advance(10)
    # The same text is no change: mgr_node_set saves notes only when chk_characteristic
    # finds the note's text changed.
    ok(emu, f"pbsnodes -N '{SLOT_NOTE}' cloud-001")
    assert states_and_notes(restarted(clock, emu)) == {"cloud-001": ("down", None)}
    ok(emu, "pbsnodes -N other cloud-001")
    assert states_and_notes(restarted(clock, emu)) == {"cloud-001": ("down", "other")}
    ok(emu, "qmgr -c 'set node cloud-001 note = \"set by qmgr\"'")
    assert states_and_notes(restarted(clock, emu)) == {"cloud-001": ("down", "set by qmgr")}


def test_after_a_restart_moms_report_16_s_later_and_running_jobs_stay() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""), ("cn02", 2, ""))
    job = emu.submit(resources={"nodes": "1:ppn=2"}, runtime=600)
    ok(emu, "pbsnodes -o cn02")
    ok(emu, "qmgr -c 'create node cn03 np=2'")       # restarted in its creation window
    emu.set_down(True)
    emu.restart()
    assert [(node.name, node.state, node.jobs, node.has_status) for node in emu.nodes()] == [
        ("cn01", "down", (job,), False), ("cn02", "offline", (), False),
        ("cn03", "down", (), False)]
    assert emu.job(job).state == "R"
    clock.advance(15.9)
    assert emu.node("cn01").state == "down"
    clock.advance(0.1)                                # measured: 15.8 s
    assert [node.state for node in emu.nodes()] == ["job-exclusive", "offline", "down"]
    clock.advance(600)
    assert emu.job(job).state == "C"


def test_an_offline_node_whose_mom_is_gone_is_marked_down_after_a_restart() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    ok(emu, "pbsnodes -o cn01")
    emu.mom_down("cn01")
    emu.restart()
    clock.advance(179)
    assert emu.node("cn01").state == "offline"
    clock.advance(1)
    assert emu.node("cn01").state == "down,offline"


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


# --- qsub ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("request_, accepted", [
    ("nodes=1:ppn=8:CLOUD", True),      # cn03 is down and never reported: it still counts
    ("nodes=1:ppn=9", False),
    ("nodes=4", True),
    ("nodes=5", False),
    ("nodes=2:bigmem", False),
    ("nodes=1:ppn=2:CLOUD+2:bigmem", True),   # node_spec counts node/part pairs (10_)
    ("nodes=CLOUD", True),              # at submit time a bare word is a property
    ("nodes=1:gpu", False),
    ("nodes=nosuchhost", False),
    ("nodes=cn01:ppn=4", True),
    ("nodes=cn01:ppn=5", False),
    ("procs=100", True),                # procs is not checked at submit time
    ("nodes=1:gpus=1", False),
])
def test_qsub_accepts_only_node_requests_the_node_entries_could_ever_run(
        request_: str, accepted: bool) -> None:
    clock, emu = emulator()
    ok(emu, "qmgr -c 'create node vm'")
    ok(emu, "qmgr -c 'create node cn01 np=4,properties=CLOUD'")
    ok(emu, "qmgr -c 'create node cn02 np=2,properties=\"CLOUD,bigmem\"'")
    ok(emu, "qmgr -c 'create node cn03 np=8,properties=CLOUD'")
    emu.mom_up("vm", ncpus=2)
    clock.advance(20)
    ok(emu, "pbsnodes -o cn03")         # after its creation window, which refuses it
    result = sh(emu, f"qsub -l {request_}", stdin=b"sleep 1\n")
    assert (result.status == 0) is accepted, result.stderr
    if not accepted:
        assert (result.status, result.stderr) == (190, (
            "qsub: submit error (Job exceeds queue resource limits MSG=cannot locate feasible "
            "nodes (nodes file is empty, all systems are busy, or no nodes have the requested "
            "feature))\n"))


def test_refused_submissions_use_up_job_ids() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    queue = sh(emu, "qsub -q nosuchqueue", stdin=b"sleep 1\n")
    assert (queue.status, queue.stderr) == (
        172, "qsub: submit error (Unknown queue MSG=requested queue not found)\n")
    resource = sh(emu, "qsub -l foo=bar", stdin=b"sleep 1\n")
    assert (resource.status, resource.stderr) == (
        189, "qsub: submit error (Unknown resource type  Resource_List.foo)\n")
    assert ok(emu, "qsub", stdin=b"sleep 1\n") == "2.vm\n"


def test_submit_raises_with_the_qsub_exit_status_and_message() -> None:
    _, emu = emulator()
    with pytest.raises(EmulatorError) as refused:
        emu.submit(resources={"nodes": "1"})
    assert refused.value.status == 190
    assert "cannot locate feasible nodes" in refused.value.stderr


def test_qsub_reads_pbs_directives_and_the_command_line_wins() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    script = (b"#!/bin/sh\n#PBS -N fromscript\n#PBS -l walltime=00:10:00,mem=1gb\n"
              b"#PBS -l walltime=00:20:00\n#PBS -A acct\nsleep 1\n#PBS -N ignored\n")
    job_id = ok(emu, "qsub -l walltime=00:05:00 -v DT_EMULATOR_RUNTIME=5", stdin=script).strip()
    job = emu.job(job_id)
    assert (job.name, job.account) == ("fromscript", "acct")
    assert (job.resources["walltime"], job.resources["mem"]) == ("00:05:00", "1gb")
    clock.advance(5)
    assert emu.job(job_id).state == "C"


def test_qsub_reads_the_script_from_a_file(tmp_path) -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    script = tmp_path / "job.sh"
    script.write_text("#PBS -l nodes=1:ppn=2\nsleep 1\n")
    job_id = ok(emu, f"qsub {script}").strip()
    assert (emu.job(job_id).name, emu.job(job_id).exec_host) == ("job.sh", "cn01/0-1")


def test_qsub_takes_options_after_the_script_file_as_real_qsub_does(tmp_path) -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    script = tmp_path / "job.sh"
    script.write_text("sleep 1\n")
    job_id = ok(emu, f"qsub {script} -q cloud -N late -l nodes=1:ppn=2").strip()
    job = emu.job(job_id)
    assert (job.queue, job.name, job.resources["nodes"]) == ("cloud", "late", "1:ppn=2")


@pytest.mark.parametrize("content, refusal", [
    (b"#!/bin/sh\r\nsleep 1\r\n", "qsub dos.sh"),
    (b"#!/bin/sh\nsleep 1\nsleep 2\r\n", "qsub dos.sh"),       # any line counts
    ("#!/bin/sh\n# d\u00e9j\u00e0 vu\nsleep 1\n".encode(), "qsub utf8.sh"),
    ("#!/bin/sh\r\n# d\u00e9j\u00e0 vu\r\n".encode(), "qsub utf8.sh"),    # checked first
    (b"#!/bin/sh\n\x1b[1m\nsleep 1\n", "qsub utf8.sh"),               # not printable
])
def test_qsub_refuses_a_script_file_with_crlf_line_ends_or_bytes_outside_ascii(
        tmp_path: Path, content: bytes, refusal: str) -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    script = tmp_path / "job.sh"
    script.write_bytes(content)
    expected = SCRIPT_FILE_REFUSALS[refusal]
    # Before anything else: also before qsub would find the unknown option -Z.
    for line in (f"qsub {script}", f"qsub -Z {script}"):
        result = sh(emu, line)
        assert (result.status, result.stdout, result.stderr) == (
            expected.exit_code, b"", expected.stderr), line
    assert emu.jobs() == ()


@pytest.mark.parametrize("content", [
    b"#!/bin/sh\necho 'a\rb'\n",                                 # a CR, not a CR LF
    ("#!/bin/sh\n" + "#" * 40 + "\n# d\u00e9j\u00e0 vu\n").encode(),  # past byte 50
])
def test_qsub_checks_only_what_get_script_reads(tmp_path: Path, content: bytes) -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    script = tmp_path / "job.sh"
    script.write_bytes(content)
    job_id = ok(emu, f"qsub {script}").strip()
    assert emu.job(job_id).state == "R"


def test_qsub_takes_a_crlf_or_non_ascii_script_on_stdin() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    crlf = ok(emu, "qsub", stdin=b"#!/bin/sh\r\n#PBS -N crlf\r\nsleep 1\r\n").strip()
    utf8 = ok(emu, "qsub -N utf8", stdin="# d\u00e9j\u00e0 vu\nsleep 1\n".encode()).strip()
    assert (emu.job(crlf).name, emu.job(utf8).name) == ("crlf", "utf8")


def test_qsub_runs_a_job_for_60_seconds_unless_told_otherwise() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    job_id = ok(emu, "qsub", stdin=b"sleep 1\n").strip()
    clock.advance(59)
    assert emu.job(job_id).state == "R"
    clock.advance(1)
    assert emu.job(job_id).state == "C"


def test_empty_script_gets_a_job_id_but_no_job() -> None:
    _, emu = emulator()
    assert ok(emu, "qsub -N empty", stdin=b"") == "0.vm\n"
    assert sh(emu, "qstat -x 0").status == 153


def test_job_name_with_a_space_is_refused_by_qsub() -> None:
    _, emu = emulator()
    result = sh(emu, "qsub -N 'my job'", stdin=b"sleep 1\n")
    assert result.status == 2
    assert result.stderr.startswith("[qsub: illegal -N value]\n\nusage: qsub")


def test_queue_defaults_fill_resource_list_in_pbs_server_order() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, "CLOUD"))
    batch = emu.submit(resources={"mem": "2GB"})
    cloud = emu.submit(queue="cloud", resources={"walltime": "3600"})
    procs = emu.submit(resources={"procs": "1"})
    assert list(emu.job(batch).resources.items()) == [
        ("mem", "2gb"), ("walltime", "01:00:00"), ("nodes", "1"), ("nodect", "1"),
        ("neednodes", "1")]
    assert list(emu.job(cloud).resources.items()) == [
        ("walltime", "01:00:00"), ("neednodes", "1:CLOUD")]
    assert list(emu.job(procs).resources.items()) == [("procs", "1"), ("walltime", "01:00:00")]


# --- qdel, qstat, qmgr --------------------------------------------------------------------------

def test_qdel_of_a_running_job_completes_it_with_271_and_frees_the_node() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    running = emu.submit(resources={"nodes": "1:ppn=2"}, runtime=600)
    waiting = emu.submit(resources={"nodes": "1:ppn=2"}, runtime=600)
    ok(emu, f"qdel {running}")
    assert (emu.job(running).state, emu.job(running).exit_status) == ("C", 271)
    assert emu.job(waiting).state == "R"


def test_qdel_of_a_queued_job_completes_it_without_exit_status() -> None:
    _, emu = emulator()
    ok(emu, "qmgr -c 'create node cn01 np=2'")
    job = emu.submit()
    ok(emu, f"qdel {job}")
    assert (emu.job(job).state, emu.job(job).exit_status) == ("C", None)
    again = sh(emu, f"qdel {job}")
    assert (again.status, again.stderr) == (
        170, "qdel: Request invalid for state of job MSG=invalid state for job - COMPLETE "
             f"{job}\n")


def test_qstat_of_an_empty_server_prints_an_empty_data_element() -> None:
    _, emu = emulator()
    for line in ("qstat -x", "qstat -f -x", "qstat -t -x", "qstat -x -t"):
        assert ok(emu, line) == '<?xml version="1.0"?>\n<Data></Data>\n'
    assert ok(emu, "qstat") == ""


def test_create_queue_and_set_its_defaults_with_qmgr() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, "GPU"))
    ok(emu, "qmgr -c 'create queue gpu'")
    ok(emu, "qmgr -c 'set queue gpu queue_type = Execution'")
    ok(emu, "qmgr -c 'set queue gpu resources_default.neednodes = 1:GPU'")
    ok(emu, "qmgr -c 'set queue gpu enabled = True'")
    ok(emu, "qmgr -c 'set queue gpu started = True'")
    listing = ok(emu, "qmgr -c 'list queue gpu'")
    assert listing.startswith("Queue gpu\n\tqueue_type = Execution\n\ttotal_jobs = 0\n")
    assert "\tresources_default.neednodes = 1:GPU\n" in listing
    job = emu.submit(queue="gpu")
    assert emu.job(job).exec_host == "cn01/0"


def test_duplicate_node_and_unknown_queue_errors() -> None:
    _, emu = emulator()
    ok(emu, "qmgr -c 'create node cn01'")
    duplicate = sh(emu, "qmgr -c 'create node cn01'")
    assert (duplicate.status, duplicate.stderr) == (
        2, "qmgr obj=cn01 svr=default: Node name already exists\n")
    unknown = sh(emu, "qmgr -c 'list queue nosuchqueue'")
    assert (unknown.status, unknown.stderr) == (
        2, "qmgr obj=nosuchqueue svr=default: Unknown queue MSG=cannot locate queue "
           "nosuchqueue\n")


def test_server_list_attributes_take_plus_and_minus_equals() -> None:
    _, emu = emulator()
    ok(emu, "qmgr -c 'set server managers += dt@vm'")
    ok(emu, "qmgr -c 'set server managers -= root@vm'")
    assert "set server managers = dt@vm\n" in ok(emu, "qmgr -c 'p s'")
    assert sh(emu, "qmgr -c 'set server scheduler_iteration = 0'").status == 2


def test_unknown_command_exits_127() -> None:
    _, emu = emulator()
    assert sh(emu, "qrun 1").status == 127


# --- server down, simulation API -----------------------------------------------------------------

def test_server_down_fails_every_client_until_it_is_back() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 2, ""))
    emu.set_down(True)
    expected = {"qstat -x": 111, "pbsnodes -x": 1, "qmgr -c 'p s'": 3, "qsub": 111,
                "qdel 0": 111}
    for line, status in expected.items():
        result = sh(emu, line, stdin=b"sleep 1\n")
        assert (result.status, result.stdout) == (status, b""), line
        assert "Connection refused" in result.stderr, line
    with pytest.raises(EmulatorError):
        emu.submit()
    emu.set_down(False)
    assert sh(emu, "pbsnodes -x").status == 0


def test_next_event_time_points_at_the_next_state_change() -> None:
    clock, emu = emulator(scheduler_iteration=600)
    assert emu.next_event_time() == START + timedelta(seconds=600)
    ok(emu, "qmgr -c 'create node cn01 np=2'")
    assert emu.next_event_time() == START + timedelta(seconds=10)


def test_simulator_can_jump_from_event_to_event_until_the_work_is_done() -> None:
    clock, emu = emulator()
    ok(emu, "qmgr -c 'create node cn01 np=2'")
    emu.mom_up("cn01", ncpus=2)
    jobs = [emu.submit(runtime=90.5) for _ in range(6)]
    for _ in range(100):
        if all(emu.job(job).state == "C" for job in jobs):
            break
        clock.advance(max(emu.next_event_time() - clock.now(), timedelta(0)))
        emu.advance()
    assert all(emu.job(job).state == "C" for job in jobs)
    assert clock.now() - START < timedelta(seconds=900)


# --- the production adapter over the emulator ---------------------------------------------------

def test_torque_batch_reads_the_emulated_jobs_and_nodes() -> None:
    clock, emu = emulator()
    cluster(clock, emu, ("cn01", 4, "CLOUD"))
    ok(emu, "qmgr -c 'create node cn02 np=4,properties=CLOUD'")
    running = emu.submit(queue="cloud", resources={"nodes": "1:ppn=4:CLOUD"}, runtime=600)
    waiting = emu.submit(queue="cloud", resources={"nodes": "1:ppn=2:CLOUD"}, array="1-2")
    batch = TorqueBatch(emu)
    jobs = {job.id: job for job in batch.jobs()}
    assert (jobs[running].state, jobs[running].exec_hosts) == (JobState.RUNNING, ("cn01",))
    assert {jobs["1[1].vm"].state, jobs["1[2].vm"].state} == {JobState.QUEUED}
    assert jobs["1[1].vm"].request.cores == 2
    nodes = {node.name: node for node in batch.nodes()}
    assert (nodes["cn01"].states, nodes["cn01"].jobs, nodes["cn01"].is_ready) == (
        frozenset({"job-exclusive"}), (running,), True)
    assert (nodes["cn02"].is_down, nodes["cn02"].has_reported) == (True, False)
    assert waiting == "1[].vm"
    emu.set_down(True)
    with pytest.raises(BatchUnavailable):
        batch.nodes()
