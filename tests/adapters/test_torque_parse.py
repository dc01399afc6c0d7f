"""Golden tests: the parsers against every XML capture of a real TORQUE 6.1.3 server."""
from __future__ import annotations

import io
import logging
from datetime import datetime, timezone

import pytest

from dtserver.batch import BatchUnavailable
from dtserver.batch.torque_parse import (
    ParseError,
    is_connection_failure,
    is_empty_node_list,
    is_node_already_present,
    is_unknown_node,
    iter_qstat_jobs,
    parse_exec_host,
    parse_node_jobs,
    parse_pbsnodes_xml,
    pbsnodes_error,
)
from dtserver.model import ArraySpec, JobState, Node, Snapshot
from tests.torque_captures import DATA, find, load_blocks

XML = DATA / "xml"
CAPTURE_FILES = sorted(DATA.glob("[0-9][0-9]*_*.txt"))


def jobs_of(data: bytes, **kwargs) -> list:
    return list(iter_qstat_jobs(io.BytesIO(data), **kwargs))


def by_id(jobs: list) -> dict:
    return {job.id: job for job in jobs}


def qstat_doc(*jobs: str) -> bytes:
    return ('<?xml version="1.0"?>\n<Data>' + "".join(jobs) + "</Data>\n").encode()


def job_xml(job_id: str = "1.vm", *, state: str = "Q", queue: str = "batch",
            ctime: str = "1795608801", extra: str = "",
            resources: str = "<nodes>1</nodes>") -> str:
    return (f"<Job><Job_Id>{job_id}</Job_Id><Job_Owner>tuser@localhost</Job_Owner>"
            f"<job_state>{state}</job_state><queue>{queue}</queue><ctime>{ctime}</ctime>"
            f"<Resource_List>{resources}</Resource_List>{extra}</Job>")


def utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


# --- qstat -x ---------------------------------------------------------------------------

MIXED_IDS = ["0.vm", "1.vm", "2.vm", "3.vm", "4.vm", "5.vm", "6.vm", "7.vm", "8.vm", "9.vm",
             "10.vm", "11.vm", "12.vm", "13.vm", "14[].vm", "15.vm", "16.vm", "17.vm", "22.vm"]


def test_qstat_mixed_capture_gives_every_job_in_order():
    jobs = jobs_of((XML / "qstat-x.mixed.xml").read_bytes())
    assert [job.id for job in jobs] == MIXED_IDS
    assert {job.owner for job in jobs} == {"tuser"}


def test_qstat_x_and_qstat_f_x_captures_parse_identically():
    plain = jobs_of((XML / "qstat-x.mixed.xml").read_bytes())
    full = jobs_of((XML / "qstat-f-x.mixed.xml").read_bytes())
    assert plain == full


def test_qstat_maps_states_times_and_hosts_of_finished_and_running_jobs():
    jobs = by_id(jobs_of((XML / "qstat-x.mixed.xml").read_bytes()))
    done, running = jobs["0.vm"], jobs["1.vm"]
    assert done.state is JobState.COMPLETED
    assert done.created == utc(1795608787) == datetime(2026, 11, 25, 12, 13, 7,
                                                       tzinfo=timezone.utc)
    assert done.exec_hosts == ("vm",)
    assert running.state is JobState.RUNNING
    assert running.exec_hosts == ("vm",)
    assert running.resources == {"nodes": "1:ppn=2", "walltime": "00:30:00", "nodect": "1",
                                 "neednodes": "1:ppn=2"}
    assert running.request is not None and running.request.cores == 2
    assert running.comment == "Job started on Wed Nov 25 at 12:13"


def test_qstat_queued_job_keeps_raw_resources_and_parsed_request():
    job = by_id(jobs_of((XML / "qstat-x.mixed.xml").read_bytes()))["15.vm"]
    assert job.state is JobState.QUEUED
    assert job.queue == "cloud"
    assert job.account == "acct2"
    assert job.exec_hosts == ()
    assert job.resources["nodes"] == "2:ppn=4:CLOUD"
    assert job.resources["mem"] == "2gb"
    assert job.request is not None
    assert job.request.node_slices == 2 and job.request.cores == 8
    assert job.request.walltime_seconds == 7200
    assert job.request_error is None
    assert job.comment == "Not Running: Not enough of the right type of nodes are available"


def test_qstat_procs_and_ncpus_jobs_have_no_nodes_resources():
    jobs = by_id(jobs_of((XML / "qstat-x.mixed.xml").read_bytes()))
    assert jobs["7.vm"].resources == {"procs": "8", "walltime": "01:00:00"}
    assert jobs["7.vm"].request.cores == 8
    assert jobs["17.vm"].resources == {"ncpus": "4", "walltime": "01:00:00"}
    assert jobs["17.vm"].request.cores == 4


def test_qstat_held_job_and_accounts():
    jobs = by_id(jobs_of((XML / "qstat-x.mixed.xml").read_bytes()))
    assert jobs["13.vm"].state is JobState.HELD
    assert jobs["13.vm"].hold_types == "u"
    assert jobs["13.vm"].comment is None
    assert jobs["8.vm"].account == "myaccount"
    assert jobs["2.vm"].account is None
    assert jobs["2.vm"].hold_types == "n"
    assert jobs["2.vm"].depend is None


def test_qstat_array_parent_passes_its_array_request_to_the_request():
    parent = by_id(jobs_of((XML / "qstat-x.mixed.xml").read_bytes()))["14[].vm"]
    assert parent.request is not None
    assert parent.request.array == ArraySpec(size=3)


def test_qstat_t_capture_expands_the_array_into_subjobs():
    jobs = by_id(jobs_of((XML / "qstat-t-x.mixed.xml").read_bytes()))
    assert "14[].vm" not in jobs
    subjobs = [jobs[f"14[{index}].vm"] for index in (1, 2, 3)]
    assert all(job.state is JobState.QUEUED for job in subjobs)
    assert all(job.request is not None and job.request.array is None for job in subjobs)
    assert all(job.hold_types == "n" for job in subjobs)   # subjobs carry no Hold_Types
    assert len(jobs) == len(MIXED_IDS) - 1 + 3


def test_qstat_job_deleted_while_running_capture():
    (job,) = jobs_of((XML / "qstat-f-x.job1.deleted_while_running.xml").read_bytes())
    assert job.id == "1.vm"
    assert job.state is JobState.COMPLETED
    assert job.exec_hosts == ("vm",)


def test_qstat_queue_filter_keeps_only_monitored_queues():
    jobs = jobs_of((XML / "qstat-x.mixed.xml").read_bytes(), queues=frozenset({"cloud"}))
    assert [job.id for job in jobs] == ["3.vm", "9.vm", "10.vm", "15.vm"]


def test_qstat_empty_queue_yields_no_jobs_in_every_captured_form():
    blocks = [b for b in load_blocks("18_qstat_empty.txt") if "-x" in b.argv and "|" not in
              b.argv]
    assert len(blocks) == 3
    for block in blocks:
        assert jobs_of(block.stdout.encode()) == [], block.source


def test_qstat_blocks_in_text_captures_parse():
    seen = 0
    for path in CAPTURE_FILES:
        for block in load_blocks(path):
            if block.argv[:1] == ("qstat",) and "-x" in block.argv and "<Job>" in block.stdout:
                jobs = jobs_of(block.stdout.encode())
                assert jobs and all(job.owner == "tuser" for job in jobs), block.source
                seen += 1
    assert seen >= 3


def test_qstat_multimom_capture_shows_the_job_on_its_second_mom():
    (block,) = [b for b in load_blocks("41_multimom_jobs.txt")
                if b.command.startswith("qstat -f -x")]
    (job,) = jobs_of(block.stdout.encode())
    assert job.id == "48.vm" and job.queue == "cloud"
    assert job.state is JobState.RUNNING
    assert job.exec_hosts == ("vmm2",)
    # start_time and walltime=00:05:00 tell when TORQUE ends it at the latest
    assert job.started == utc(1795609508)
    assert job.expected_end == utc(1795609508 + 300)


def test_qstat_unparseable_request_is_kept_with_its_reason():
    (job,) = jobs_of(qstat_doc(job_xml(resources="<nodes>1:ppn=lots</nodes>")))
    assert job.request is None
    assert job.request_error
    assert job.resources == {"nodes": "1:ppn=lots"}


def test_qstat_optional_fields_are_mapped():
    extra = ("<Account_Name>proj</Account_Name><exec_host>vm/0-1+cn01/0+vm/2</exec_host>"
             "<Hold_Types>s</Hold_Types><depend>afterok:3.vm</depend><comment>hi</comment>")
    (job,) = jobs_of(qstat_doc(job_xml(state="H", extra=extra)))
    assert job.account == "proj"
    assert job.exec_hosts == ("vm", "cn01")
    assert job.hold_types == "s"
    assert job.depend == "afterok:3.vm"
    assert job.comment == "hi"


@pytest.mark.parametrize("data", [
    b"",
    b"garbage",
    b'<?xml version="1.0"?>\n',
    b"<Data><Job><Job_Id>1.vm</Job_Id>",
    b"<Other></Other>",
    b"<Data><Node><name>vm</name></Node></Data>",
], ids=["empty", "garbage", "declaration-only", "truncated", "wrong-root", "wrong-child"])
def test_qstat_garbage_raises_parse_error_which_means_unavailable(data):
    with pytest.raises(ParseError) as caught:
        jobs_of(data)
    assert isinstance(caught.value, BatchUnavailable)


@pytest.mark.parametrize("job", [
    "<Job><queue>batch</queue></Job>",
    job_xml(state="Z"),
    job_xml(ctime="yesterday"),
    job_xml(state="R", extra="<start_time>soon</start_time>"),
    job_xml(queue=""),
    "<Job><Job_Id>1.vm</Job_Id><job_state>Q</job_state><queue>batch</queue>"
    "<ctime>1</ctime></Job>",
], ids=["no-id", "unknown-state", "bad-ctime", "bad-start-time", "empty-queue", "no-owner"])
def test_qstat_job_missing_or_bad_required_fields_is_kept_as_unknown_between_exact_jobs(
        job, caplog):
    clean = jobs_of(qstat_doc(job_xml("1.vm"), job_xml("3.vm")))
    with caplog.at_level(logging.WARNING, logger="dtserver.batch.torque_parse"):
        first, unreadable, last = jobs_of(qstat_doc(job_xml("1.vm"), job, job_xml("3.vm")))
    assert [first, last] == clean
    assert unreadable.state is JobState.UNKNOWN
    assert unreadable.request is None and unreadable.request_error
    (warning,) = caplog.records
    assert unreadable.id in warning.getMessage()


def test_qstat_unreadable_job_names_its_id_and_keeps_its_hosts_so_its_node_stays_busy():
    running = job_xml("2.vm", state="Z", extra="<exec_host>cn01/0-1+cn02/0</exec_host>")
    (job,) = jobs_of(qstat_doc(running))
    assert (job.id, job.owner, job.queue) == ("2.vm", "tuser", "batch")
    assert job.state is JobState.UNKNOWN and job.exec_hosts == ("cn01", "cn02")
    # pbsnodes does not list the job (e.g. right after a pbs_server restart): the node
    # must still not look idle.
    empty = Node("cn01", frozenset({"free"}), 2, has_reported=True)
    snapshot = Snapshot(jobs=(job,), nodes=(empty,), instances=())
    assert snapshot.node_by_name["cn01"].jobs == ("2.vm",)


def test_qstat_unreadable_job_of_an_unmonitored_queue_is_dropped_one_without_queue_kept():
    other_queue = job_xml("2.vm", queue="other", state="Z")
    no_queue = ("<Job><Job_Id>4.vm</Job_Id><job_state>R</job_state>"
                "<exec_host>cn01/0</exec_host></Job>")
    jobs = jobs_of(qstat_doc(other_queue, no_queue), queues=frozenset({"batch"}))
    assert [(job.id, job.state, job.exec_hosts) for job in jobs] == [
        ("4.vm", JobState.UNKNOWN, ("cn01",))]


# --- hostile bytes in one job (51_qsub_control_bytes.txt) --------------------------------

CONTROL_BYTES = XML / "qstat-x.control-bytes.xml"


def test_qstat_capture_with_control_and_non_utf8_bytes_gives_every_job_exactly():
    data = CONTROL_BYTES.read_bytes()
    # What real TORQUE printed: the bytes raw, so the document is not well-formed XML.
    assert b"X=a\x01b" in data and b"X=a\x1bb" in data and b"X=a\xffb" in data
    assert b"DTCTRL=a\x01b" in data
    jobs = jobs_of(data)
    assert [job.id for job in jobs] == [f"{number}.dt-head" for number in range(9)]
    for job in jobs:
        assert (job.owner, job.queue, job.state) == ("dtjob", "batch", JobState.QUEUED)
        assert job.resources == {"walltime": "00:10:00"}
        assert job.request is not None and job.request.walltime_seconds == 600
        assert job.request_error is None
        assert job.created in (utc(1796301671), utc(1796301672))


def spoil(data: bytes, job_id: bytes, tag: bytes, bad: bytes) -> bytes:
    """`bad` put at the start of `tag`'s text in job `job_id`."""
    start = data.index(b"<Job_Id>" + job_id + b"</Job_Id>")
    at = data.index(b"<" + tag + b">", start) + len(tag) + 2
    return data[:at] + bad + data[at:]


BAD_BYTES = [b"\x01", b"\x1b", b"\x00", b"\x0b", b"\x1f", b"\xff", b"\xc3",
             b"\xed\xa0\x80", b"\xef\xbf\xbe", b"\xef\xbf\xbf"]
BAD_IDS = ["soh", "esc", "nul", "vt", "us", "xff", "lone-lead-byte", "surrogate", "ufffe",
           "uffff"]


@pytest.mark.parametrize("bad", BAD_BYTES, ids=BAD_IDS)
def test_qstat_a_bad_byte_in_one_jobs_variables_leaves_every_job_exact(bad):
    clean = (XML / "qstat-x.mixed.xml").read_bytes()
    assert jobs_of(spoil(clean, b"3.vm", b"Variable_List", bad)) == jobs_of(clean)


@pytest.mark.parametrize("bad", BAD_BYTES, ids=BAD_IDS)
def test_qstat_a_bad_byte_in_a_field_we_read_is_replaced_in_that_job_only(bad):
    clean = (XML / "qstat-x.mixed.xml").read_bytes()
    expected = jobs_of(clean)
    jobs = jobs_of(spoil(clean, b"3.vm", b"comment", bad))
    index = [job.id for job in expected].index("3.vm")
    assert jobs[index].comment.endswith(expected[index].comment)
    assert set(jobs[index].comment[:-len(expected[index].comment)]) == {"\ufffd"}
    assert jobs[:index] + jobs[index + 1:] == expected[:index] + expected[index + 1:]


def test_qstat_text_survives_reads_that_split_characters_next_to_bad_bytes():
    class Trickle(io.BytesIO):
        def read(self, size=-1):
            return super().read(1)

    comment = "h\u00e9llo \u20ac \U0001f600"
    data = qstat_doc(job_xml("1.vm", extra=f"<comment>{comment}</comment>"),
                     job_xml("2.vm", extra="<comment>a\x01b</comment>"))
    data = data.replace(b"a\x01b", b"a\x01\xffb")
    first, second = iter_qstat_jobs(Trickle(data))
    assert first.comment == comment
    assert second.comment == "a\ufffd\ufffdb"


def test_qstat_truncated_capture_raises_after_streaming_the_complete_jobs():
    data = (XML / "qstat-x.mixed.xml").read_bytes()
    cut = data[: data.index(b"<Job_Id>3.vm")]      # inside job 3
    stream = iter_qstat_jobs(io.BytesIO(cut))
    assert [next(stream).id for _ in range(3)] == ["0.vm", "1.vm", "2.vm"]
    with pytest.raises(ParseError):
        next(stream)


def test_qstat_parser_reads_lazily_from_the_stream():
    class CountingStream(io.BytesIO):
        reads = 0

        def read(self, size=-1):
            self.reads += 1
            return super().read(min(size, 4096) if size and size > 0 else 4096)

    many = qstat_doc(*(job_xml(f"{index}.vm") for index in range(2000)))
    stream = CountingStream(many)
    first = next(iter_qstat_jobs(stream))
    assert first.id == "0.vm"
    assert stream.tell() < len(many) / 2


def test_exec_host_lists_each_host_once_in_order():
    assert parse_exec_host("vm/0-1") == ("vm",)
    assert parse_exec_host("cnns2/0+cnns2/1+vm/0") == ("cnns2", "vm")
    assert parse_exec_host("") == ()


# --- pbsnodes -x ------------------------------------------------------------------------

def node(name: str, states: set[str], np: int, **kwargs) -> Node:
    return Node(name=name, states=frozenset(states), np=np, **kwargs)


EXPECTED_NODES = {
    "pbsnodes-x.busy.xml": (node("vm", {"busy"}, 2, has_reported=True, ncpus=2),),
    "pbsnodes-x.down-offline-mom-died-stale-status.xml": (
        node("cnns2", {"down", "offline"}, 2, properties=frozenset({"CLOUD"}),
             note="scale-down: draining", has_reported=True, ncpus=2),),
    "pbsnodes-x.down-offline-with-note.xml": (
        node("cn01", {"down", "offline"}, 4, properties=frozenset({"CLOUD"}),
             note="draining for scale-down"),),
    "pbsnodes-x.free-partially-used.xml": (
        node("vmm2", {"free"}, 2, properties=frozenset({"CLOUD"}), jobs=("50.vm",),
             used_cores=1, has_reported=True, ncpus=2),),
    "pbsnodes-x.free-with-note.xml": (
        node("vm", {"free"}, 2, note="hello note", has_reported=True, ncpus=2),),
    "pbsnodes-x.free_and_down_nodes.xml": (
        node("vm", {"free"}, 2, has_reported=True, ncpus=2),
        node("cn01", {"down"}, 4, properties=frozenset({"CLOUD"})),
        node("cn02", {"down"}, 2, properties=frozenset({"CLOUD", "bigmem"})),
        node("cn03", {"down"}, 8, properties=frozenset({"CLOUD"}), note="scaler managed")),
    "pbsnodes-x.job-exclusive.xml": (
        node("vm", {"job-exclusive"}, 2, jobs=("1.vm",), used_cores=2, has_reported=True,
             ncpus=2),),
    "pbsnodes-x.never_reported.down-offline-MOM-list-not-sent.xml": (
        node("vm", {"down", "offline", "MOM-list-not-sent"}, 1),),
    "pbsnodes-x.offline-with-running-job.xml": (
        node("cnns2", {"offline"}, 2, properties=frozenset({"CLOUD"}), jobs=("56.vm",),
             used_cores=1, note="scale-down: draining", has_reported=True, ncpus=2),),
    "pbsnodes-x.offline.xml": (node("vm", {"offline"}, 2, has_reported=True, ncpus=2),),
}


def test_every_pbsnodes_xml_capture_has_an_expectation():
    assert sorted(EXPECTED_NODES) == sorted(p.name for p in XML.glob("pbsnodes-x.*.xml"))


@pytest.mark.parametrize("name", sorted(EXPECTED_NODES))
def test_pbsnodes_xml_capture_parses_to_expected_nodes(name):
    assert parse_pbsnodes_xml((XML / name).read_bytes()) == EXPECTED_NODES[name]


def test_pbsnodes_state_predicates_follow_the_flags():
    never, = parse_pbsnodes_xml(
        (XML / "pbsnodes-x.never_reported.down-offline-MOM-list-not-sent.xml").read_bytes())
    offline_busy, = parse_pbsnodes_xml(
        (XML / "pbsnodes-x.offline-with-running-job.xml").read_bytes())
    assert never.is_down and never.is_offline and not never.is_ready
    assert offline_busy.is_offline and not offline_busy.is_down and offline_busy.is_ready


def test_pbsnodes_blocks_in_text_captures_all_parse():
    seen = 0
    for path in CAPTURE_FILES:
        for block in load_blocks(path):
            if block.argv[:1] == ("pbsnodes",) and "-x" in block.argv and block.exit_code == 0:
                nodes = parse_pbsnodes_xml(block.stdout.encode())
                assert nodes, block.source
                names = [word for word in block.argv[1:] if not word.startswith("-")]
                if names and "-s" not in block.argv:
                    assert [n.name for n in nodes] == names, block.source
                seen += 1
    assert seen >= 30


def test_pbsnodes_node_running_two_jobs_lists_both():
    (block,) = find(load_blocks("31_after_free_slot.txt"), "pbsnodes -x vm")
    (vm,) = parse_pbsnodes_xml(block.stdout.encode())
    assert vm.states == {"job-exclusive"}
    assert vm.jobs == ("5.vm", "6.vm")
    assert vm.used_cores == 2


def test_pbsnodes_two_named_nodes_in_one_document():
    (block,) = find(load_blocks("41_multimom_jobs.txt"), "pbsnodes -x vm vmm2")
    assert [n.name for n in parse_pbsnodes_xml(block.stdout.encode())] == ["vm", "vmm2"]


def test_pbsnodes_server_down_output_is_a_parse_error_not_an_empty_list():
    for block in load_blocks("48_server_down.txt"):
        if block.argv[:2] == ("pbsnodes", "-x"):
            assert block.stdout == ""
            with pytest.raises(ParseError):
                parse_pbsnodes_xml(block.stdout.encode())


@pytest.mark.parametrize("data", [
    b"<Data>",
    b"<Nodes></Nodes>",
    b"<Data><Job/></Data>",
    b"<Data><Node><state>free</state><np>2</np></Node></Data>",
    b"<Data><Node><name>vm</name><np>2</np></Node></Data>",
    b"<Data><Node><name>vm</name><state>free</state><np>two</np></Node></Data>",
    b"<Data><Node><name>vm</name><state>free</state><np>-1</np></Node></Data>",
    b"<Data><Node><name>vm</name><state>free</state><np>2</np><jobs>1.vm</jobs></Node></Data>",
], ids=["truncated", "wrong-root", "wrong-child", "no-name", "no-state", "bad-np",
        "negative-np", "jobs-without-cores"])
def test_pbsnodes_malformed_documents_raise_parse_error(data):
    with pytest.raises(ParseError):
        parse_pbsnodes_xml(data)


def test_pbsnodes_control_or_non_utf8_bytes_in_a_note_do_not_hide_the_nodes():
    data = (b"<Data><Node><name>cn01</name><state>free</state><np>2</np>"
            b"<note>a\x01b\xffc</note></Node>"
            b"<Node><name>cn02</name><state>down</state><np>4</np></Node></Data>\n")
    first, second = parse_pbsnodes_xml(data)
    assert first.note == "a\ufffdb\ufffdc"
    assert second == Node("cn02", frozenset({"down"}), 4)


def test_pbsnodes_empty_data_element_means_no_nodes():
    assert parse_pbsnodes_xml(b"<Data></Data>\n") == ()


def test_node_jobs_field_gives_job_ids_once_and_cores_used():
    assert parse_node_jobs("0-1/1.vm") == (("1.vm",), 2)
    assert parse_node_jobs("0/5.vm,1/6.vm") == (("5.vm", "6.vm"), 2)
    assert parse_node_jobs("0/7.vm,1/7.vm,2-3/8.vm") == (("7.vm", "8.vm"), 4)
    assert parse_node_jobs("0,2/1.vm,3/5.vm") == (("1.vm", "5.vm"), 3)
    assert parse_node_jobs("") == ((), 0)


@pytest.mark.parametrize("value", ["0-1", "a/1.vm", "3-1/1.vm", "0/", "0-99999999/1.vm"])
def test_node_jobs_field_malformed_raises(value):
    with pytest.raises(ParseError):
        parse_node_jobs(value)


# --- stderr classification --------------------------------------------------------------

def test_qmgr_unknown_and_duplicate_node_errors_are_recognised():
    blocks = load_blocks("05_qmgr_nodes.txt")
    unknown = [b for b in blocks if "Unknown node" in b.stderr]
    duplicate = [b for b in blocks if "already exists" in b.stderr]
    assert unknown and duplicate
    assert all(b.exit_code == 2 and is_unknown_node(b.stderr) for b in unknown)
    assert all(b.exit_code == 2 and is_node_already_present(b.stderr) for b in duplicate)
    assert not any(is_connection_failure(b.stderr) for b in blocks)


def test_pbsnodes_refusals_with_exit_zero_are_errors():
    blocks = load_blocks("09_pbsnodes_offline_note_clear.txt")
    refused = [b for b in blocks if b.argv[:2] in {("pbsnodes", "-o"), ("pbsnodes", "-c")}
               and b.stderr]
    assert {b.command for b in refused} == {
        "pbsnodes -o nosuchnode", "pbsnodes -c nosuchnode", "pbsnodes -o cn02"}
    for block in refused:
        assert block.exit_code == 0
        assert pbsnodes_error(block.stderr)
    assert is_unknown_node(find(blocks, "pbsnodes -o nosuchnode")[0].stderr)
    accepted = find(blocks, "pbsnodes -o -N 'draining for scale-down' cn01")
    assert pbsnodes_error(accepted[0].stderr) is None


def test_every_server_down_output_is_a_connection_failure():
    blocks = load_blocks("48_server_down.txt")
    assert len(blocks) == 9
    for block in blocks:
        assert block.exit_code != 0 and block.stdout == ""
        assert is_connection_failure(block.stderr), block.source
        assert not is_empty_node_list(block.stderr)


def test_pbsnodes_unknown_node_is_not_a_connection_failure():
    (block,) = find(load_blocks("08_pbsnodes_free_and_down.txt"), "pbsnodes -x nosuchnode")
    assert block.exit_code == 1
    assert is_unknown_node(block.stderr) and not is_connection_failure(block.stderr)

