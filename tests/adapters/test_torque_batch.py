"""TorqueBatch over recorded outputs of a real TORQUE 6.1 server (tests/data/torque/)."""
from __future__ import annotations

from typing import Callable, Sequence

import pytest

from dtserver.batch import BatchCommandError, BatchUnavailable, NodeBusy
from dtserver.batch.hosts import HostsFile
from dtserver.batch.torque import TorqueBatch
from dtserver.batch.torque_commands import CommandResult, InvalidArgument
from tests.torque_captures import DATA, Capture, find, load_blocks

XML = DATA / "xml"
OK = ("", 0)

QSTAT = ("qstat", "-x", "-t")
PBSNODES = ("pbsnodes", "-x")
POKE = ("qmgr", "-c", "set server scheduling = True")


def create(name: str, props: str = "CLOUD", np: int = 2,
           note: str | None = None) -> tuple[str, ...]:
    attributes = f"np={np},properties={props}"
    if note is not None:
        attributes += f',note="{note}"'
    return ("qmgr", "-c", f"create node {name} {attributes}")


def slot(name: str, note: str = "slot", props: str = "CLOUD") -> tuple[str, ...]:
    """The one command that makes a slot entry: created with its note already set."""
    return create(name, props, note=note)


def set_np(name: str, np: int) -> tuple[str, ...]:
    return ("qmgr", "-c", f"set node {name} np = {np}")


def delete(name: str) -> tuple[str, ...]:
    return ("qmgr", "-c", f"delete node {name}")


def offline(name: str, note: str) -> tuple[str, ...]:
    return ("pbsnodes", "-o", "-N", note, name)


def clear(name: str) -> tuple[str, ...]:
    return ("pbsnodes", "-c", name)


def clear_note(name: str) -> tuple[str, ...]:
    return ("pbsnodes", "-N", "n", name)


class RecordedRunner:
    """Answers argv with recorded results (a list is consumed in order); records the calls.

    `spy` runs before each answer, so a test can look at the world at the moment a
    command runs (e.g. the hosts file when qmgr creates a node)."""

    def __init__(self, answers: dict, spy: Callable[[tuple[str, ...]], None] | None = None):
        self.answers = {tuple(argv): answer for argv, answer in answers.items()}
        self.calls: list[tuple[str, ...]] = []
        self.timeouts: list[float | None] = []
        self.spy = spy

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None,
            timeout: float | None = None) -> CommandResult:
        key = tuple(argv)
        self.calls.append(key)
        self.timeouts.append(timeout)
        if self.spy is not None:
            self.spy(key)
        if key not in self.answers:
            raise AssertionError(f"unexpected command {key}")
        answer = self.answers[key]
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if isinstance(answer, Capture):
            return answer.as_result(key)
        if isinstance(answer, bytes):
            return CommandResult(key, 0, answer, "")
        stderr, status = answer
        return CommandResult(key, status, b"", stderr)


def capture(file: str, command: str, index: int = 0) -> Capture:
    return find(load_blocks(file), command)[index]


def node_xml(name: str, *, state: str = "free", np: int = 2, props: str = "CLOUD",
             jobs: str = "", note: str = "") -> bytes:
    parts = [f"<name>{name}</name><state>{state}</state><np>{np}</np>",
             f"<properties>{props}</properties><ntype>cluster</ntype>"]
    if jobs:
        parts.append(f"<jobs>{jobs}</jobs>")
    if note:
        parts.append(f"<note>{note}</note>")
    return ("<Data><Node>" + "".join(parts) + "</Node></Data>\n").encode()


UNKNOWN_NODE = ("pbsnodes: Unknown node  MSG=cannot locate specified node\n", 1)
SERVER_DOWN = load_blocks("48_server_down.txt")
# A new entry the server has not yet announced to the moms (about 10 s after the create):
# `pbsnodes -x` shows it MOM-list-not-sent, and pbsnodes -o on it is refused with exit 0.
SETTLING = XML / "pbsnodes-x.never_reported.down-offline-MOM-list-not-sent.xml"
NOT_YET_ANNOUNCED = capture("49_okclients_window.txt", "pbsnodes -o -N x N")


def server_down(program: str) -> list[Capture]:
    return [b for b in SERVER_DOWN if b.argv[0] == program]


# --- reads ------------------------------------------------------------------------------

def test_jobs_reads_qstat_with_arrays_expanded():
    runner = RecordedRunner({QSTAT: (XML / "qstat-t-x.mixed.xml").read_bytes()})
    jobs = TorqueBatch(runner).jobs()
    ids = [job.id for job in jobs]
    assert runner.calls == [QSTAT]
    assert ids[:3] == ["0.vm", "1.vm", "2.vm"]
    assert {"14[1].vm", "14[2].vm", "14[3].vm"} <= set(ids)
    assert "14[].vm" not in ids


def test_jobs_keeps_only_monitored_queues():
    runner = RecordedRunner({QSTAT: (XML / "qstat-t-x.mixed.xml").read_bytes()})
    jobs = TorqueBatch(runner, queues=frozenset({"cloud"})).jobs()
    assert [job.id for job in jobs] == ["3.vm", "9.vm", "10.vm", "15.vm"]


def test_jobs_with_control_and_non_utf8_bytes_in_one_jobs_variables_reads_every_job():
    # 51_qsub_control_bytes.txt: real TORQUE prints a user's bytes raw in Variable_List.
    runner = RecordedRunner({QSTAT: (XML / "qstat-x.control-bytes.xml").read_bytes()})
    jobs = TorqueBatch(runner).jobs()
    assert [job.id for job in jobs] == [f"{number}.dt-head" for number in range(9)]
    assert all(job.request is not None for job in jobs)


def test_jobs_of_an_empty_server_is_empty():
    runner = RecordedRunner({QSTAT: capture("18_qstat_empty.txt", "qstat -t -x")})
    assert TorqueBatch(runner).jobs() == ()


@pytest.mark.parametrize("down", server_down("qstat"), ids=lambda c: f"exit{c.exit_code}")
def test_jobs_when_server_is_down_raise_unavailable(down):
    with pytest.raises(BatchUnavailable, match=str(down.exit_code)):
        TorqueBatch(RecordedRunner({QSTAT: down})).jobs()


def test_jobs_with_empty_output_and_exit_zero_are_unavailable_not_empty():
    with pytest.raises(BatchUnavailable):
        TorqueBatch(RecordedRunner({QSTAT: b""})).jobs()


def test_nodes_reads_every_node_entry():
    runner = RecordedRunner({PBSNODES: capture("08_pbsnodes_free_and_down.txt", "pbsnodes -x")})
    nodes = TorqueBatch(runner).nodes()
    assert [node.name for node in nodes] == ["vm", "cn01", "cn02", "cn03"]
    assert nodes[0].has_reported and not nodes[1].has_reported


@pytest.mark.parametrize("down", server_down("pbsnodes")[:2], ids=["no-trqauthd", "no-server"])
def test_nodes_when_server_is_down_raise_unavailable_never_empty(down):
    assert down.exit_code == 1 and down.stdout == ""
    with pytest.raises(BatchUnavailable):
        TorqueBatch(RecordedRunner({PBSNODES: down})).nodes()


def test_nodes_silent_failure_is_unavailable():
    with pytest.raises(BatchUnavailable):
        TorqueBatch(RecordedRunner({PBSNODES: ("", 1)})).nodes()


def test_nodes_of_a_server_without_nodes_is_empty():
    runner = RecordedRunner({PBSNODES: ("pbsnodes: No nodes found\n", 2)})
    assert TorqueBatch(runner).nodes() == ()


def test_node_reads_one_entry_or_none_when_unknown():
    runner = RecordedRunner({
        ("pbsnodes", "-x", "vm"): capture("14_pbsnodes_job_exclusive.txt", "pbsnodes -x vm"),
        ("pbsnodes", "-x", "nosuchnode"): capture("08_pbsnodes_free_and_down.txt",
                                                  "pbsnodes -x nosuchnode"),
    })
    batch = TorqueBatch(runner)
    assert batch.node("vm").jobs == ("1.vm",)
    assert batch.node("nosuchnode") is None


def test_commands_get_the_configured_timeout():
    runner = RecordedRunner({PBSNODES: b"<Data></Data>\n"})
    TorqueBatch(runner, command_timeout=7.5).nodes()
    assert runner.timeouts == [7.5]


# --- register_slot ----------------------------------------------------------------------

def test_register_slot_creates_a_missing_node_with_its_note_in_one_qmgr_call():
    note = "dynamictorque: slot, no instance"
    runner = RecordedRunner({("pbsnodes", "-x", "cloud-001"): UNKNOWN_NODE,
                             slot("cloud-001", note): OK})
    TorqueBatch(runner).register_slot("cloud-001", 2, frozenset({"CLOUD"}), note)
    # No pbsnodes -o: the server refuses it for the new entry's first ~10 s (49_).
    assert runner.calls == [("pbsnodes", "-x", "cloud-001"), slot("cloud-001", note)]


def test_register_slot_gives_a_new_slot_the_placeholder_address_before_creating(tmp_path):
    hosts = HostsFile(tmp_path / "hosts", placeholder_address="127.0.0.2")
    seen = {}
    runner = RecordedRunner(
        {("pbsnodes", "-x", "cloud-001"): UNKNOWN_NODE, slot("cloud-001"): OK},
        spy=lambda argv: seen.setdefault(argv, hosts.address("cloud-001")))
    TorqueBatch(runner, hosts=hosts).register_slot("cloud-001", 2, frozenset({"CLOUD"}), "slot")
    assert seen[slot("cloud-001")] == "127.0.0.2"


def test_register_slot_keeps_an_address_the_slot_already_has(tmp_path):
    hosts = HostsFile(tmp_path / "hosts")
    hosts.set("cloud-001", "10.0.0.5")
    runner = RecordedRunner({("pbsnodes", "-x", "cloud-001"): UNKNOWN_NODE,
                             slot("cloud-001"): OK})
    TorqueBatch(runner, hosts=hosts).register_slot("cloud-001", 2, frozenset({"CLOUD"}), "slot")
    assert hosts.address("cloud-001") == "10.0.0.5"


def test_register_slot_of_an_existing_node_only_offlines_it():
    runner = RecordedRunner({("pbsnodes", "-x", "cn01"): node_xml("cn01", state="down"),
                             offline("cn01", "slot"): OK})
    TorqueBatch(runner).register_slot("cn01", 2, frozenset({"CLOUD"}), "slot")
    assert runner.calls == [("pbsnodes", "-x", "cn01"), offline("cn01", "slot")]


def test_register_slot_sets_the_np_of_an_existing_node_back_to_the_slots():
    runner = RecordedRunner({
        ("pbsnodes", "-x", "cn01"): node_xml("cn01", state="down,offline", np=2, note="slot"),
        offline("cn01", "slot"): OK, set_np("cn01", 8): OK})
    TorqueBatch(runner).register_slot("cn01", 8, frozenset({"CLOUD"}), "slot")
    assert runner.calls == [("pbsnodes", "-x", "cn01"), offline("cn01", "slot"),
                            set_np("cn01", 8)]


def test_register_slot_leaves_an_entry_the_server_has_not_announced_alone():
    # Even with the wrong np (1, not 2): any change now is refused; a later pass makes it.
    runner = RecordedRunner({("pbsnodes", "-x", "vm"): SETTLING.read_bytes(),
                             offline("vm", "slot"): NOT_YET_ANNOUNCED})
    TorqueBatch(runner).register_slot("vm", 2, frozenset({"CLOUD"}), "slot")
    assert runner.calls == [("pbsnodes", "-x", "vm")]


def test_register_slot_tolerates_a_node_created_meanwhile():
    already = capture("05_qmgr_nodes.txt", "qmgr -c 'create node vm'", index=1)
    runner = RecordedRunner({("pbsnodes", "-x", "cn01"): UNKNOWN_NODE, slot("cn01"): already})
    TorqueBatch(runner).register_slot("cn01", 2, frozenset({"CLOUD"}), "slot")
    # The other entry is new too, so it is left to settle like our own would have been.
    assert runner.calls == [("pbsnodes", "-x", "cn01"), slot("cn01")]


def test_register_slot_with_an_unresolvable_name_raises_command_error():
    unknown = capture("05_qmgr_nodes.txt", "qmgr -c 'create node nosuchhost'")
    runner = RecordedRunner({("pbsnodes", "-x", "nosuchhost"): UNKNOWN_NODE,
                             slot("nosuchhost"): unknown})
    with pytest.raises(BatchCommandError) as caught:
        TorqueBatch(runner).register_slot("nosuchhost", 2, frozenset({"CLOUD"}), "slot")
    assert caught.value.status == 2
    assert "Unknown node" in caught.value.stderr
    assert caught.value.argv == slot("nosuchhost")


def test_register_slot_when_qmgr_cannot_connect_raises_unavailable():
    down = capture("48_server_down.txt",
                   'timeout 60 qmgr -c "create node cn05 np=2,properties=CLOUD"')
    runner = RecordedRunner({("pbsnodes", "-x", "cn05"): UNKNOWN_NODE, slot("cn05"): down})
    with pytest.raises(BatchUnavailable):
        TorqueBatch(runner).register_slot("cn05", 2, frozenset({"CLOUD"}), "slot")


def test_register_slot_quotes_several_properties_as_one_value():
    argv = ("qmgr", "-c", 'create node cn02 np=2,properties="CLOUD,bigmem",note="slot"')
    runner = RecordedRunner({("pbsnodes", "-x", "cn02"): UNKNOWN_NODE, argv: OK})
    TorqueBatch(runner).register_slot("cn02", 2, frozenset({"bigmem", "CLOUD"}), "slot")
    assert argv in runner.calls


# --- join_node --------------------------------------------------------------------------

def test_join_node_points_the_name_first_then_recreates_the_entry(tmp_path):
    hosts = HostsFile(tmp_path / "hosts")
    hosts.set("cloud-001", hosts.placeholder_address)
    seen = {}
    runner = RecordedRunner(
        {("pbsnodes", "-x", "cloud-001"): node_xml("cloud-001", state="down,offline",
                                                   note="slot"),
         delete("cloud-001"): OK, create("cloud-001"): OK},
        spy=lambda argv: seen.setdefault(argv, hosts.address("cloud-001")))
    TorqueBatch(runner, hosts=hosts).join_node("cloud-001", "10.0.0.7", 2,
                                               frozenset({"CLOUD"}))
    # A fresh entry has no note and its offline flag clears by itself (44_autoscale_e2e).
    assert runner.calls == [("pbsnodes", "-x", "cloud-001"), delete("cloud-001"),
                            create("cloud-001")]
    assert seen[delete("cloud-001")] == "10.0.0.7"
    assert seen[create("cloud-001")] == "10.0.0.7"


def test_join_node_without_an_entry_just_creates_it():
    runner = RecordedRunner({("pbsnodes", "-x", "cloud-001"): UNKNOWN_NODE,
                             create("cloud-001"): OK})
    TorqueBatch(runner).join_node("cloud-001", "10.0.0.7", 2, frozenset({"CLOUD"}))
    assert runner.calls == [("pbsnodes", "-x", "cloud-001"), create("cloud-001")]


def test_join_node_refuses_to_recreate_an_entry_running_jobs(tmp_path):
    hosts = HostsFile(tmp_path / "hosts")
    runner = RecordedRunner({("pbsnodes", "-x", "cnns2"): (
        XML / "pbsnodes-x.offline-with-running-job.xml").read_bytes()})
    with pytest.raises(NodeBusy) as caught:
        TorqueBatch(runner, hosts=hosts).join_node("cnns2", "10.0.0.7", 2,
                                                   frozenset({"CLOUD"}))
    assert caught.value.jobs == ("56.vm",)
    assert runner.calls == [("pbsnodes", "-x", "cnns2")]
    assert hosts.address("cnns2") is None


# --- offline_node / clear_node ----------------------------------------------------------

def test_offline_node_sets_offline_with_the_note():
    runner = RecordedRunner({offline("cn01", "draining for scale-down"): capture(
        "09_pbsnodes_offline_note_clear.txt",
        "pbsnodes -o -N 'draining for scale-down' cn01")})
    TorqueBatch(runner).offline_node("cn01", "draining for scale-down")
    assert runner.calls == [offline("cn01", "draining for scale-down")]


@pytest.mark.parametrize("command", ["pbsnodes -o nosuchnode", "pbsnodes -o cn02"],
                         ids=["unknown-node", "not-a-manager"])
def test_offline_node_refused_with_exit_zero_raises(command):
    refused = capture("09_pbsnodes_offline_note_clear.txt", command)
    name = refused.argv[-1]
    assert refused.exit_code == 0
    runner = RecordedRunner({offline(name, "drain"): refused})
    with pytest.raises(BatchCommandError) as caught:
        TorqueBatch(runner).offline_node(name, "drain")
    assert caught.value.status == 0
    assert "Error setting note attribute" in caught.value.stderr


def test_offline_node_when_server_is_down_raises_unavailable():
    down = capture("48_server_down.txt", "timeout 60 pbsnodes -o cn01")
    runner = RecordedRunner({offline("cn01", "drain"): down})
    with pytest.raises(BatchUnavailable):
        TorqueBatch(runner).offline_node("cn01", "drain")


def test_clear_node_clears_offline_and_the_note():
    runner = RecordedRunner({
        clear("vm"): capture("09_pbsnodes_offline_note_clear.txt", "pbsnodes -c vm"),
        clear_note("vm"): capture("09_pbsnodes_offline_note_clear.txt", "pbsnodes -N n vm"),
    })
    TorqueBatch(runner).clear_node("vm")
    assert runner.calls == [clear("vm"), clear_note("vm")]


def test_clear_node_of_an_unknown_node_raises():
    runner = RecordedRunner({clear("nosuchnode"): capture(
        "09_pbsnodes_offline_note_clear.txt", "pbsnodes -c nosuchnode")})
    with pytest.raises(BatchCommandError, match="Unknown node"):
        TorqueBatch(runner).clear_node("nosuchnode")
    assert runner.calls == [clear("nosuchnode")]


# --- release_node -----------------------------------------------------------------------

def test_release_node_refuses_a_node_with_a_running_job():
    runner = RecordedRunner({("pbsnodes", "-x", "cnns2"): (
        XML / "pbsnodes-x.offline-with-running-job.xml").read_bytes()})
    with pytest.raises(NodeBusy) as caught:
        TorqueBatch(runner).release_node("cnns2", 2, frozenset({"CLOUD"}), "slot")
    assert caught.value.hostname == "cnns2"
    assert caught.value.jobs == ("56.vm",)
    assert not any(argv[0] == "qmgr" for argv in runner.calls)


def test_release_node_turns_an_empty_offline_node_into_a_slot(tmp_path):
    hosts = HostsFile(tmp_path / "hosts")
    hosts.set("cnns2", "10.0.0.7")
    seen = {}
    runner = RecordedRunner(
        {("pbsnodes", "-x", "cnns2"): (
            XML / "pbsnodes-x.down-offline-mom-died-stale-status.xml").read_bytes(),
         delete("cnns2"): OK, slot("cnns2"): OK},
        spy=lambda argv: seen.setdefault(argv, hosts.address("cnns2")))
    TorqueBatch(runner, hosts=hosts).release_node("cnns2", 2, frozenset({"CLOUD"}), "slot")
    assert runner.calls == [("pbsnodes", "-x", "cnns2"), delete("cnns2"), slot("cnns2")]
    assert seen[slot("cnns2")] == hosts.placeholder_address


def test_release_node_offlines_an_online_node_and_reads_it_again_before_deleting():
    runner = RecordedRunner({
        ("pbsnodes", "-x", "vm"): [node_xml("vm"), node_xml("vm", state="offline")],
        offline("vm", "slot"): OK, delete("vm"): OK, slot("vm"): OK,
    })
    TorqueBatch(runner).release_node("vm", 2, frozenset({"CLOUD"}), "slot")
    assert runner.calls == [("pbsnodes", "-x", "vm"), offline("vm", "slot"),
                            ("pbsnodes", "-x", "vm"), delete("vm"), slot("vm")]


def test_release_node_sets_the_note_at_the_create_and_sends_no_pbsnodes_after_it():
    # As a real server would: the offline of the settled entry is accepted, any pbsnodes -o
    # on the re-created entry is refused (49_), so the release must not depend on one.
    note = "dynamictorque: slot, no instance"
    runner = RecordedRunner({
        ("pbsnodes", "-x", "vm"): [node_xml("vm"), node_xml("vm", state="offline")],
        offline("vm", note): [OK, NOT_YET_ANNOUNCED], delete("vm"): OK,
        slot("vm", note): OK,
    })
    TorqueBatch(runner).release_node("vm", 2, frozenset({"CLOUD"}), note)
    assert runner.calls[-1] == slot("vm", note)
    assert runner.calls.count(offline("vm", note)) == 1


def test_release_node_refuses_when_a_job_lands_before_the_node_went_offline():
    runner = RecordedRunner({
        ("pbsnodes", "-x", "vm"): [node_xml("vm"),
                                   node_xml("vm", state="offline", jobs="0/9.vm")],
        offline("vm", "slot"): OK,
    })
    with pytest.raises(NodeBusy):
        TorqueBatch(runner).release_node("vm", 2, frozenset({"CLOUD"}), "slot")
    assert delete("vm") not in runner.calls


def test_release_node_of_a_missing_entry_creates_the_slot():
    runner = RecordedRunner({("pbsnodes", "-x", "cn05"): UNKNOWN_NODE, slot("cn05"): OK})
    TorqueBatch(runner).release_node("cn05", 2, frozenset({"CLOUD"}), "slot")
    assert runner.calls == [("pbsnodes", "-x", "cn05"), slot("cn05")]


def test_release_node_when_server_is_down_deletes_nothing():
    down = capture("48_server_down.txt", "timeout 60 pbsnodes -x", index=1)
    runner = RecordedRunner({("pbsnodes", "-x", "cn01"): down})
    with pytest.raises(BatchUnavailable):
        TorqueBatch(runner).release_node("cn01", 2, frozenset({"CLOUD"}), "slot")
    assert runner.calls == [("pbsnodes", "-x", "cn01")]


# --- poke_scheduler ---------------------------------------------------------------------

def test_poke_scheduler_starts_a_scheduling_cycle():
    runner = RecordedRunner({POKE: OK})
    TorqueBatch(runner).poke_scheduler()
    assert runner.calls == [POKE]


def test_poke_scheduler_when_server_is_down_raises_unavailable():
    runner = RecordedRunner({POKE: ("qmgr: cannot connect to server  (errno=111) "
                                    "Connection refused\n", 3)})
    with pytest.raises(BatchUnavailable):
        TorqueBatch(runner).poke_scheduler()


# --- argument validation ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["-o", "a b", "cn01;reboot", "", "x" * 64, "cn_01",
                                  "cn01.", "-cn01"])
def test_bad_node_names_never_reach_a_command(name):
    runner = RecordedRunner({})
    batch = TorqueBatch(runner)
    for call in (lambda: batch.register_slot(name, 2, frozenset({"CLOUD"}), "slot"),
                 lambda: batch.join_node(name, "10.0.0.1", 2, frozenset({"CLOUD"})),
                 lambda: batch.offline_node(name, "drain"),
                 lambda: batch.clear_node(name),
                 lambda: batch.release_node(name, 2, frozenset({"CLOUD"}), "slot")):
        with pytest.raises(InvalidArgument):
            call()
    assert runner.calls == []


@pytest.mark.parametrize("note", ["", "n", " n ", "\n"])
def test_notes_that_pbsnodes_would_read_as_clear_are_refused(note):
    runner = RecordedRunner({})
    with pytest.raises(InvalidArgument):
        TorqueBatch(runner).offline_node("cn01", note)
    assert runner.calls == []


def test_long_or_multiline_notes_are_cleaned_not_refused():
    long_note = "dynamictorque: draining: " + "x" * 300
    runner = RecordedRunner({offline("cn01", "two lines"): OK,
                             offline("cn01", long_note[:256]): OK})
    batch = TorqueBatch(runner)
    batch.offline_node("cn01", "two\nlines")
    batch.offline_node("cn01", long_note)
    assert runner.calls == [offline("cn01", "two lines"), offline("cn01", long_note[:256])]


@pytest.mark.parametrize("props", [{"a,b"}, {'x"'}, {"two words"}, {""}])
def test_bad_properties_are_refused_before_any_command(props):
    runner = RecordedRunner({("pbsnodes", "-x", "cn01"): UNKNOWN_NODE})
    with pytest.raises(InvalidArgument):
        TorqueBatch(runner).register_slot("cn01", 2, frozenset(props), "slot")
    with pytest.raises(InvalidArgument):
        TorqueBatch(runner).release_node("cn01", 2, frozenset(props), "slot")
    assert runner.calls == []


def test_a_note_with_a_double_quote_never_reaches_qmgr():
    runner = RecordedRunner({("pbsnodes", "-x", "cn01"): UNKNOWN_NODE})
    with pytest.raises(InvalidArgument):
        TorqueBatch(runner).register_slot("cn01", 2, frozenset({"CLOUD"}), 'slot "a"')
    assert runner.calls == []

