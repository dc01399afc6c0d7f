"""Behaviour of the TorqueEmulator's nodes: their lifecycle with the moms, the creation
window's refusals, and the node state pbs_server saves and rebuilds after a restart.
"""
from __future__ import annotations

import pytest

from tests.adapters.torque_emulator_support import (
    OKCLIENTS_NOT_SENT, SLOT_NOTE, cluster, emulator, ok, restarted, sh, states_and_notes,
    window_refusal)


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
