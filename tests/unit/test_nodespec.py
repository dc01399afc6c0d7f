"""nodespec: golden tests on real TORQUE 6.1 captures, unit tables, errors, properties."""
from __future__ import annotations

import ast
import re
import shlex
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtserver.batch.torque_parse import well_formed
from dtserver.model import ArraySpec, Chunk, Request
from dtserver.nodespec import (
    MAX_CORES,
    MAX_COUNT,
    RequestError,
    parse_array_spec,
    parse_nodes_spec,
    parse_qsub_resources,
    parse_resource_list,
    parse_select,
    parse_size_mb,
    parse_walltime,
)
from tests.torque_captures import load_blocks

DATA = Path(__file__).resolve().parents[1] / "data" / "torque"
QSUB_OPTIONS_WITH_VALUE = frozenset({"-N", "-v", "-l", "-q", "-A", "-t"})


def request(*chunks: Chunk, walltime: int | None = None,
            array: ArraySpec | None = None) -> Request:
    return Request(chunks=chunks or (Chunk(count=1),), walltime_seconds=walltime, array=array)


def qsub_call(command: str) -> tuple[str, list[str], str | None]:
    """(job name, -l values, -t value) of a captured qsub command line."""
    argv = shlex.split(command.split("|")[-1])
    name, resources, array = "", [], None
    words = iter(argv[1:])
    for word in words:
        if word in QSUB_OPTIONS_WITH_VALUE:
            value = next(words)
            if word == "-N":
                name = value
            elif word == "-l":
                resources.append(value)
            elif word == "-t":
                array = value
    return name, resources, array


def qstat_jobs(path: Path) -> dict[str, tuple[dict[str, str], str | None]]:
    """Job id -> (Resource_List mapping, job_array_request) from a qstat -x capture."""
    jobs = {}
    # Real TORQUE prints users' control bytes raw (51_qsub_control_bytes.txt).
    for job in ElementTree.fromstring(well_formed(path.read_bytes())):
        resource_list = job.find("Resource_List")
        resources = {} if resource_list is None else {
            element.tag: element.text or "" for element in resource_list}
        jobs[job.findtext("Job_Id")] = (resources, job.findtext("job_array_request"))
    return jobs


# --- golden: every qsub in 10_qsub_submissions.txt ------------------------------------------

ONE_CORE = Chunk(count=1)
TWO_CORES = Chunk(count=1, cores=2)
CLOUD = frozenset({"CLOUD"})

QSUB_EXPECTED = {
    "quick": request(walltime=120),
    "excl": request(TWO_CORES, walltime=1800),
    "n2ppn4": request(Chunk(count=2, cores=4)),
    "cloudppn2": request(Chunk(count=1, cores=2, properties=CLOUD)),
    "batchcloud": request(Chunk(count=1, cores=2, properties=CLOUD)),
    "mem2gb": request(Chunk(count=1, mem_mb=2048)),
    "wall1h": request(walltime=3600),
    "procs8": request(Chunk(count=8, distinct=False)),
    "acct": request(),
    "cloudq": request(),
    "cloudqppn": request(TWO_CORES),
    "hostnode": request(Chunk(count=1, hostname="vm")),
    "hostcn01": request(Chunk(count=1, cores=2, hostname="cn01")),
    "held": request(),
    "arr": request(array=ArraySpec(size=3)),
    "combo": request(Chunk(count=2, cores=4, mem_mb=1024, properties=CLOUD), walltime=7200),
    "multi": request(Chunk(count=1, cores=2, properties=CLOUD),
                     Chunk(count=2, properties=frozenset({"bigmem"}))),
    "ncpus": request(Chunk(count=1, cores=4)),
    "nosuchq": request(),
    # TORQUE rejects foo=bar as an unknown resource; the parser keeps it and ignores it.
    "badres": request(),
    # Rejected by qsub for lack of feasible nodes, not for its grammar.
    "toomany": request(Chunk(count=99, cores=64)),
    "badprop": request(Chunk(count=1, properties=frozenset({"NOSUCHPROP"}))),
    "stdin": request(),
    "asroot": request(),
}


def test_every_qsub_submission_capture_is_covered_by_the_golden_table():
    names = [qsub_call(block.command)[0] for block in load_blocks("10_qsub_submissions.txt")]
    assert sorted(names) == sorted(QSUB_EXPECTED)


@pytest.mark.parametrize("block", load_blocks("10_qsub_submissions.txt"),
                         ids=lambda block: qsub_call(block.command)[0])
def test_qsub_submission_resources_parse_to_the_expected_request(block):
    name, resources, array = qsub_call(block.command)
    parsed = parse_resource_list(parse_qsub_resources(resources), array=array)
    assert parsed == QSUB_EXPECTED[name]


def test_qsub_resources_match_what_torque_stored_in_resource_list():
    stored = qstat_jobs(DATA / "xml" / "qstat-x.mixed.xml")
    accepted = {qsub_call(block.command)[0]: block.stdout.strip()
                for block in load_blocks("10_qsub_submissions.txt") if block.exit_code == 0}
    checked = 0
    for block in load_blocks("10_qsub_submissions.txt"):
        name, resources, _ = qsub_call(block.command)
        job_id = accepted.get(name)
        if job_id not in stored:
            continue
        for key, value in parse_qsub_resources(resources).items():
            assert stored[job_id][0][key] == value, (name, key)
            checked += 1
    assert checked >= 15


def test_unknown_qsub_resource_is_kept_for_the_caller():
    assert parse_qsub_resources(["foo=bar"]) == {"foo": "bar"}


# --- golden: every Resource_List in the qstat -x captures -----------------------------------

QSTAT_EXPECTED = {
    "0.vm": request(walltime=120),
    "1.vm": request(TWO_CORES, walltime=1800),
    "2.vm": request(Chunk(count=2, cores=4), walltime=3600),
    "3.vm": request(Chunk(count=1, cores=2, properties=CLOUD)),
    "4.vm": request(Chunk(count=1, cores=2, properties=CLOUD), walltime=3600),
    "5.vm": request(Chunk(count=1, mem_mb=2048), walltime=3600),
    "6.vm": request(walltime=3600),
    "7.vm": request(Chunk(count=8, distinct=False), walltime=3600),
    "8.vm": request(walltime=3600),
    # Queue default neednodes=CLOUD: pbs_sched reads a bare word as a host name.
    "9.vm": request(Chunk(count=1, hostname="CLOUD")),
    "10.vm": request(TWO_CORES),
    "11.vm": request(Chunk(count=1, hostname="vm"), walltime=3600),
    "12.vm": request(Chunk(count=1, cores=2, hostname="cn01"), walltime=3600),
    "13.vm": request(walltime=3600),
    "14[].vm": request(walltime=3600, array=ArraySpec(size=3)),
    "14[1].vm": request(walltime=3600),
    "14[2].vm": request(walltime=3600),
    "14[3].vm": request(walltime=3600),
    "15.vm": request(Chunk(count=2, cores=4, mem_mb=1024, properties=CLOUD), walltime=7200),
    "16.vm": request(Chunk(count=1, cores=2, properties=CLOUD),
                     Chunk(count=2, properties=frozenset({"bigmem"})), walltime=3600),
    "17.vm": request(Chunk(count=1, cores=4), walltime=3600),
    "22.vm": request(walltime=3600),
    **{f"{number}.dt-head": request(walltime=600) for number in range(9)},
}

QSTAT_CAPTURES = sorted((DATA / "xml").glob("qstat-*.xml"))


def test_all_five_qstat_captures_are_present():
    assert [path.name for path in QSTAT_CAPTURES] == [
        "qstat-f-x.job1.deleted_while_running.xml", "qstat-f-x.mixed.xml",
        "qstat-t-x.mixed.xml", "qstat-x.control-bytes.xml", "qstat-x.mixed.xml"]


@pytest.mark.parametrize("path", QSTAT_CAPTURES, ids=lambda path: path.name)
def test_every_resource_list_in_a_qstat_capture_parses_to_the_expected_request(path):
    jobs = qstat_jobs(path)
    assert jobs
    for job_id, (resources, array) in jobs.items():
        assert parse_resource_list(resources, array=array) == QSTAT_EXPECTED[job_id], job_id


# --- golden: feasibility checks and neednodes variants --------------------------------------

FEASIBILITY_EXPECTED = {
    "f1": Chunk(count=1, cores=8, properties=CLOUD),
    "f2": Chunk(count=1, cores=9),
    "f3": Chunk(count=5),
    "f4": Chunk(count=4),
    "f5": Chunk(count=2, properties=frozenset({"bigmem"})),
    "f6": Chunk(count=1, hostname="CLOUD"),
    "f7": Chunk(count=1, properties=frozenset({"gpu"})),
    "f8": Chunk(count=1, hostname="nosuchhost"),
    "f9": Chunk(count=100, distinct=False),
    "f10": Chunk(count=1, cores=8, properties=CLOUD),
}


def test_feasibility_check_submissions_parse_to_the_expected_chunks():
    seen = set()
    for block in load_blocks("15_qsub_feasibility_checks.txt"):
        if block.argv[0] != "qsub":
            continue
        name, resources, _ = qsub_call(block.command)
        assert parse_resource_list(parse_qsub_resources(resources)).chunks == (
            FEASIBILITY_EXPECTED[name],)
        seen.add(name)
    assert seen == set(FEASIBILITY_EXPECTED)


def test_feasibility_check_resource_lists_parse_to_the_expected_chunks():
    [listing] = [block for block in load_blocks("15_qsub_feasibility_checks.txt")
                 if block.argv[0] != "qsub"]
    lines = listing.stdout.splitlines()
    assert len(lines) == 5
    for line in lines:
        _job_id, name, _state, mapping = line.split(" ", 3)
        resources = ast.literal_eval(mapping)
        parsed = parse_resource_list(resources)
        assert parsed.chunks == (FEASIBILITY_EXPECTED[name],)
        assert parsed.walltime_seconds == (3600 if "walltime" in resources else None)


def test_cloud_queue_neednodes_variants_ask_for_one_cloud_node():
    requests = []
    for block in load_blocks("42_cloud_queue_neednodes_variants.txt"):
        resources = dict(re.findall(r"Resource_List\.(\w+) = (.*)", block.stdout))
        if resources:
            requests.append(parse_resource_list(resources))
    expected = request(Chunk(count=1, properties=CLOUD), walltime=300)
    assert requests == [expected, expected]


# --- units, walltime, arrays ----------------------------------------------------------------

@pytest.mark.parametrize("text, mb", [
    ("2gb", 2048), ("2GB", 2048), ("2g", 2048), ("512mb", 512), ("512M", 512),
    ("1tb", 1024 * 1024), ("1pb", 1024**3), ("1kb", 1), ("1024kb", 1), ("1025kb", 2),
    ("0", 0), ("1", 1), ("1b", 1), ("1048576", 1), ("1048577", 2), ("1048576B", 1),
    # A TORQUE word is sizeof(int): 4 bytes.
    ("1w", 1), ("262144w", 1), ("262145w", 2), ("256kw", 1), ("1mw", 4), ("1gw", 4096),
    ("1tw", 4 * 1024 * 1024), ("1KW", 1), (" 2gb ", 2048),
])
def test_sizes_follow_torque_units_and_round_up_to_whole_mib(text, mb):
    assert parse_size_mb(text) == mb


@pytest.mark.parametrize("text", [
    "", "gb", "-1gb", "+1gb", "1.5gb", "2xb", "2gbb", "2bw", "2 gb", "2e3", "0x10",
    "\u0661\u0662", "99999999999999999999999gb",
])
def test_bad_sizes_are_refused_with_the_offending_text(text):
    with pytest.raises(RequestError, match="size"):
        parse_size_mb(text)


@pytest.mark.parametrize("text, seconds", [
    ("3600", 3600), ("0", 0), ("1:00", 60), ("90:00", 5400), ("01:00:00", 3600),
    ("02:00:00", 7200), ("100:00:00", 360_000), ("1:00:00:00", 86_400),
    ("2:01:00:01", 2 * 86_400 + 3601), ("00:00:01.5", 2), ("00:00:01.499", 1),
    ("10.5", 11), ("10.", 10), ("10.0", 10), (" 00:30:00 ", 1800),
])
def test_walltime_accepts_torque_time_forms(text, seconds):
    assert parse_walltime(text) == seconds


@pytest.mark.parametrize("text", [
    "", "-1", "1:-1", "a", "1h", "1:2:3:4:5", "1::2", ":30", "1:00:", "1.2.3", "1.x", ".5",
    "1e3", "\u0661:00",
])
def test_bad_walltimes_are_refused(text):
    with pytest.raises(RequestError, match="walltime"):
        parse_walltime(text)


@pytest.mark.parametrize("text, spec", [
    ("1-3", ArraySpec(size=3)),
    ("0-99%5", ArraySpec(size=100, slot_limit=5)),
    ("1,3,5-7", ArraySpec(size=5)),
    ("7", ArraySpec(size=1)),
    ("0", ArraySpec(size=1)),
    ("1-3%", ArraySpec(size=3)),
    ("5-7,1", ArraySpec(size=4)),
    ("0-99999", ArraySpec(size=100_000)),
    (" 1-3 ", ArraySpec(size=3)),
])
def test_array_requests_count_their_indices(text, spec):
    assert parse_array_spec(text) == spec


@pytest.mark.parametrize("text, problem", [
    ("", "no indices"), ("%5", "no indices"), ("3-1", "backwards"), ("1-3,2", "twice"),
    ("1,1", "twice"), ("a", "whole number"), ("-1", "whole number"), ("1-2-3", "whole number"),
    ("1,,2", "whole number"), ("1-100000", "between 0 and 99999"), ("1-3%0", "slot limit"),
    ("1-3%x", "slot limit"), ("1-3%5%6", "slot limit"),
])
def test_bad_array_requests_say_what_is_wrong(text, problem):
    with pytest.raises(RequestError, match=problem):
        parse_array_spec(text)


# --- qsub -l merging ------------------------------------------------------------------------

def test_commas_split_resources_only_where_a_new_key_starts():
    assert parse_qsub_resources(["nodes=1:ppn=2+2:ppn=1,walltime=1:00:00,mem=2gb"]) == {
        "nodes": "1:ppn=2+2:ppn=1", "walltime": "1:00:00", "mem": "2gb"}


def test_a_comma_not_followed_by_a_key_stays_in_the_value():
    assert parse_qsub_resources(["feature=a,b,walltime=10"]) == {
        "feature": "a,b", "walltime": "10"}


def test_a_later_value_for_the_same_resource_wins():
    assert parse_qsub_resources(["walltime=1:00:00,nodes=1", "walltime=2:00:00"]) == {
        "walltime": "2:00:00", "nodes": "1"}


def test_spaces_around_resources_are_ignored():
    assert parse_qsub_resources([" nodes = 2:ppn=4 , walltime=10 "]) == {
        "nodes": "2:ppn=4", "walltime": "10"}


def test_select_and_place_survive_the_merge():
    assert parse_qsub_resources(["select=2:ncpus=4:mem=4gb+1:ncpus=1,place=scatter:excl"]) == {
        "select": "2:ncpus=4:mem=4gb+1:ncpus=1", "place": "scatter:excl"}


@pytest.mark.parametrize("values, problem", [
    (["walltime"], "not resource=value"),
    (["=5"], "not resource=value"),
    ([",nodes=1"], "not resource=value"),
    (["nodes=1,"], "not resource=value"),
    (["nodes="], "nodes has no value"),
    ([""], "not resource=value"),
    ("nodes=1", "list of -l values"),
])
def test_malformed_l_values_are_refused(values, problem):
    with pytest.raises(RequestError, match=problem):
        parse_qsub_resources(values)


# --- TORQUE nodes= ----------------------------------------------------------------------------

@pytest.mark.parametrize("spec, chunks", [
    ("1", (Chunk(count=1),)),
    ("3:ppn=2", (Chunk(count=3, cores=2),)),
    ("2:ppn=4:gpus=2", (Chunk(count=2, cores=4, gpus=2),)),
    ("2:gpus=1:ppn=4:CLOUD:ssd", (Chunk(count=2, cores=4, gpus=1,
                                        properties=frozenset({"CLOUD", "ssd"})),)),
    ("1:ppn=2:gpus=2:exclusive_process:reseterr",
     (Chunk(count=1, cores=2, gpus=2),)),
    ("1:ppn=2:CLOUD+2:bigmem", (Chunk(count=1, cores=2, properties=CLOUD),
                                Chunk(count=2, properties=frozenset({"bigmem"})))),
    ("vm", (Chunk(count=1, hostname="vm"),)),
    ("cn01:ppn=2", (Chunk(count=1, cores=2, hostname="cn01"),)),
    ("cn01.example.org:ppn=2+cn02", (Chunk(count=1, cores=2, hostname="cn01.example.org"),
                                     Chunk(count=1, hostname="cn02"))),
    ("2:ppn=4#excl", (Chunk(count=2, cores=4),)),
    ("2:ppn=4#shared", (Chunk(count=2, cores=4),)),
    ("1:CLOUD", (Chunk(count=1, properties=CLOUD),)),
])
def test_nodes_specs_become_one_chunk_per_part(spec, chunks):
    assert parse_nodes_spec(spec) == chunks


def test_gpu_modes_are_properties_when_no_gpus_are_asked_for():
    assert parse_nodes_spec("1:shared") == (Chunk(count=1, properties=frozenset({"shared"})),)


@pytest.mark.parametrize("spec, problem", [
    ("", "no node count"),
    ("2:ppn=4+", "part 2 is empty"),
    ("+1", "part 1 is empty"),
    ("1++1", "part 2 is empty"),
    ("0", "between 1 and 100000, got '0'"),
    ("2:ppn=0", "ppn in part '2:ppn=0' must be between 1"),
    ("2:ppn=-1", "ppn in part '2:ppn=-1' must be a whole number, got '-1'"),
    ("2:ppn=", "must be a whole number, got ''"),
    ("2:ppn=4:ppn=2", "gives ppn twice"),
    ("1:gpus=x", "gpus"),
    ("1:mics=2", "'mics=2' in part '1:mics=2' is not supported"),
    ("2:", "empty field"),
    ("2::ppn=1", "empty field"),
    ("2:ppn=4#foo", "unknown suffix '#foo'"),
    ("#excl", "no node count"),
    ("a b", "must start with a node count or a host name"),
    ("-1", "must start with a node count or a host name"),
    ("1:4", "'4' in part '1:4' is not a node property"),
    ("1:bad prop", "not a node property"),
    ("100001", "between 1 and 100000"),
    ("99999999999999999999999", "between 1 and 100000"),
    ("1:ppn=100001", "ppn in part"),
    ("60000+60000", "asks for 120000 nodes"),
])
def test_bad_nodes_specs_name_the_spec_and_the_problem(spec, problem):
    with pytest.raises(RequestError) as raised:
        parse_nodes_spec(spec)
    assert str(raised.value).startswith(f"nodes={spec.strip()!r}:")
    assert problem in str(raised.value)


def test_neednodes_errors_name_neednodes():
    with pytest.raises(RequestError, match=r"^neednodes='1:ppn=0': ppn"):
        parse_resource_list({"neednodes": "1:ppn=0"})


def test_overlong_specs_are_refused_before_parsing():
    with pytest.raises(RequestError, match="characters long"):
        parse_nodes_spec("+".join(["1"] * 10_000))


# --- PBS Pro select= and place= -------------------------------------------------------------

@pytest.mark.parametrize("select, place, chunks", [
    ("2:ncpus=4:mem=4gb", None, (Chunk(count=2, cores=4, mem_mb=4096, distinct=False),)),
    ("ncpus=2", None, (Chunk(count=1, cores=2, distinct=False),)),
    ("1:ncpus=8:ngpus=2:mpiprocs=8:ompthreads=1", None,
     (Chunk(count=1, cores=8, gpus=2, distinct=False),)),
    ("2:ncpus=4:mem=1gb:vmem=3gb", None, (Chunk(count=2, cores=4, mem_mb=3072, distinct=False),)),
    ("1:ncpus=2:CLOUD=True:ssd=false:scratch=10gb", None,
     (Chunk(count=1, cores=2, properties=CLOUD, distinct=False),)),
    ("1:ncpus=2:host=cn01", None, (Chunk(count=1, cores=2, hostname="cn01", distinct=False),)),
    ("2:ncpus=4", "free", (Chunk(count=2, cores=4, distinct=False),)),
    ("2:ncpus=4", "scatter", (Chunk(count=2, cores=4),)),
    ("2:ncpus=4", "vscatter:excl", (Chunk(count=2, cores=4),)),
    ("2:ncpus=4", "excl", (Chunk(count=2, cores=4, distinct=False),)),
    ("2:ncpus=4", "scatter:shared:group=switch", (Chunk(count=2, cores=4),)),
    ("2:ncpus=4:mem=2gb+1:ncpus=1:ngpus=1:CLOUD=true", "pack",
     (Chunk(count=1, cores=9, mem_mb=4096, gpus=1, properties=CLOUD),)),
    ("2:ncpus=4:host=cn01+1:ncpus=2", "pack:excl",
     (Chunk(count=1, cores=10, hostname="cn01"),)),
    ("1:ncpus=2+2:ncpus=1", "scatter", (Chunk(count=1, cores=2), Chunk(count=2))),
])
def test_select_chunks_and_place_arrangements(select, place, chunks):
    assert parse_select(select, place) == chunks


@pytest.mark.parametrize("select, place, problem", [
    ("", None, "no chunks"),
    ("2:ncpus=4+", None, "chunk 2 is empty"),
    ("0:ncpus=4", None, "count of chunk"),
    ("2:ncpus=0", None, "ncpus in chunk '2:ncpus=0' must be between 1"),
    ("2:ncpus", None, "'ncpus' in chunk '2:ncpus' is not resource=value"),
    ("2:ncpus=2:ncpus=4", None, "gives ncpus twice"),
    ("1:mem=lots", None, "mem in chunk '1:mem=lots'"),
    ("1:host=a b", None, "not a host name"),
    ("1:9x=1", None, "not a resource name"),
    ("1:ncpus=2", "tight", "'tight' is not free, pack"),
    ("1:ncpus=2", "pack:scatter", "more than one arrangement"),
    ("1:host=a+1:host=b", "pack", "names several hosts: a, b"),
    ("2:ncpus=60000", "pack", "needs 120000 cores"),
])
def test_bad_select_specs_are_refused(select, place, problem):
    with pytest.raises(RequestError, match=re.escape(problem)):
        parse_select(select, place)


def test_select_wins_over_nodes_and_place_applies_to_it():
    parsed = parse_resource_list({"select": "2:ncpus=4", "place": "scatter", "nodes": "9",
                                  "ncpus": "8"})
    assert parsed.chunks == (Chunk(count=2, cores=4),)


# --- which resource decides, and memory -----------------------------------------------------

@pytest.mark.parametrize("resources, chunks", [
    ({}, (Chunk(count=1),)),
    ({"walltime": "10", "nodect": "7"}, (Chunk(count=1),)),
    ({"nodes": "2:ppn=2", "neednodes": "1:CLOUD"}, (Chunk(count=2, cores=2),)),
    ({"neednodes": "1:CLOUD"}, (Chunk(count=1, properties=CLOUD),)),
    ({"procs": "8"}, (Chunk(count=8, distinct=False),)),
    ({"procs": " 8 ", "ncpus": "4"}, (Chunk(count=8, distinct=False),)),
    ({"ncpus": "4"}, (Chunk(count=1, cores=4),)),
    ({"nodes": "1", "procs": "8"}, (Chunk(count=1),)),
    ({"nodes": "1", "place": "pack"}, (Chunk(count=1),)),
])
def test_the_first_of_select_nodes_neednodes_procs_ncpus_decides(resources, chunks):
    assert parse_resource_list(resources).chunks == chunks


@pytest.mark.parametrize("resources, mems", [
    ({"nodes": "3", "mem": "1gb"}, [342]),
    ({"nodes": "2:ppn=4", "mem": "2gb", "vmem": "4gb"}, [2048]),
    ({"nodes": "2:ppn=4", "pmem": "512mb"}, [2048]),
    ({"nodes": "2:ppn=4", "pvmem": "1gb", "pmem": "512mb"}, [4096]),
    ({"nodes": "2:ppn=4", "pmem": "100mb", "mem": "2gb"}, [1024]),
    ({"nodes": "1:ppn=4+2:ppn=1", "pmem": "1gb"}, [4096, 1024]),
    ({"nodes": "1:ppn=4+2:ppn=1", "mem": "3gb"}, [1024, 1024]),
    ({"procs": "4", "mem": "1gb"}, [256]),
    ({"ncpus": "4", "pmem": "1gb"}, [4096]),
    ({"mem": "100"}, [1]),
    ({"select": "2:ncpus=2:mem=1gb", "mem": "16gb"}, [1024]),
    ({"select": "2:ncpus=2", "mem": "16gb"}, [8192]),
    ({"select": "2:ncpus=2:mem=1gb", "pmem": "1gb"}, [2048]),
])
def test_memory_per_slice_is_the_largest_of_job_process_and_chunk_memory(resources, mems):
    assert [chunk.mem_mb for chunk in parse_resource_list(resources).chunks] == mems


def test_walltime_and_array_reach_the_request():
    parsed = parse_resource_list({"walltime": "01:30:00"}, array="1-10%2")
    assert (parsed.walltime_seconds, parsed.array) == (5400, ArraySpec(size=10, slot_limit=2))


@pytest.mark.parametrize("resources, array, problem", [
    ({"procs": "0"}, None, "procs must be between 1"),
    ({"procs": "many"}, None, "procs must be a whole number, got 'many'"),
    ({"ncpus": "0"}, None, "ncpus must be between 1"),
    ({"mem": "2zb"}, None, "mem: size '2zb'"),
    ({"pmem": "-1"}, None, "pmem: size '-1'"),
    ({"walltime": "soon"}, None, "walltime 'soon'"),
    ({"nodes": ""}, None, "nodes='': no node count"),
    ({"nodes": 2}, None, "nodes must be text, got int"),
    ({}, 3, "array request must be text"),
    ({}, "3-1", "runs backwards"),
    ({"nodes": "1" * 9000}, None, "nodes is 9000 characters long"),
])
def test_bad_resource_lists_raise_request_errors_naming_the_resource(resources, array, problem):
    with pytest.raises(RequestError, match=re.escape(problem)):
        parse_resource_list(resources, array=array)


def test_hostile_text_is_cut_short_in_messages():
    with pytest.raises(RequestError) as raised:
        parse_walltime("x" * 5000)
    assert len(str(raised.value)) < 300


def test_the_same_resources_give_the_same_request_object():
    resources = {"nodes": "2:ppn=4:CLOUD", "mem": "2gb", "walltime": "02:00:00"}
    assert parse_resource_list(resources) is parse_resource_list(dict(resources))


# --- properties -------------------------------------------------------------------------------

PROPERTY_NAMES = ("CLOUD", "bigmem", "ssd", "gpu_node", "zone-a")


@st.composite
def nodes_parts(draw):
    count = draw(st.integers(min_value=1, max_value=64))
    ppn = draw(st.none() | st.integers(min_value=1, max_value=128))
    gpus = draw(st.none() | st.integers(min_value=0, max_value=8))
    properties = draw(st.lists(st.sampled_from(PROPERTY_NAMES), unique=True, max_size=3))
    fields = [f"ppn={ppn}"] * (ppn is not None) + [f"gpus={gpus}"] * (gpus is not None)
    fields = draw(st.permutations(fields + properties))
    text = ":".join([str(count), *fields])
    return text, Chunk(count=count, cores=ppn or 1, gpus=gpus or 0,
                       properties=frozenset(properties))


@settings(deadline=None, max_examples=150)
@given(parts=st.lists(nodes_parts(), min_size=1, max_size=6),
       suffix=st.sampled_from(["", "#excl", "#shared"]),
       mem_mb=st.none() | st.integers(min_value=1, max_value=10**6))
def test_random_nodes_specs_round_trip_to_the_right_totals(parts, suffix, mem_mb):
    resources = {"nodes": "+".join(text for text, _ in parts) + suffix}
    if mem_mb is not None:
        resources["mem"] = f"{mem_mb}mb"
    parsed = parse_resource_list(resources)
    slices = sum(chunk.count for _, chunk in parts)
    assert parsed.node_slices == slices
    assert parsed.cores == sum(chunk.count * chunk.cores for _, chunk in parts)
    assert [(c.count, c.cores, c.gpus, c.properties) for c in parsed.chunks] == [
        (c.count, c.cores, c.gpus, c.properties) for _, c in parts]
    expected_mem = 0 if mem_mb is None else -(-mem_mb // slices)
    assert all(chunk.mem_mb == expected_mem for chunk in parsed.chunks)


GRAMMAR_TEXT = st.text(alphabet="0123456789:+=,#%-. pngucsmkgbwtCLOUDexlh", max_size=40)
ANY_TEXT = st.text(max_size=60) | GRAMMAR_TEXT


def assert_sane(parsed: Request) -> None:
    assert parsed.chunks
    assert 1 <= parsed.node_slices <= MAX_COUNT
    assert all(1 <= chunk.cores <= MAX_CORES and chunk.count >= 1 for chunk in parsed.chunks)


@settings(deadline=None, max_examples=300)
@given(text=ANY_TEXT)
def test_random_text_raises_nothing_but_request_error(text):
    for parse in (parse_size_mb, parse_walltime, parse_array_spec, parse_nodes_spec,
                  parse_select):
        try:
            parse(text)
        except RequestError:
            pass
    try:
        parse_qsub_resources([text])
    except RequestError:
        pass


@settings(deadline=None, max_examples=300)
@given(resources=st.dictionaries(
           st.sampled_from(["nodes", "neednodes", "select", "place", "procs", "ncpus", "mem",
                            "vmem", "pmem", "pvmem", "walltime", "nodect", "other"]),
           ANY_TEXT, max_size=5),
       array=st.none() | ANY_TEXT)
def test_random_resource_lists_raise_nothing_but_request_error(resources, array):
    try:
        parsed = parse_resource_list(resources, array=array)
    except RequestError:
        return
    assert_sane(parsed)


@pytest.mark.parametrize("parse", [parse_size_mb, parse_walltime, parse_array_spec,
                                   parse_nodes_spec, parse_select])
@pytest.mark.parametrize("value", [None, 5, ["1-3"], {"a": 1}])
def test_values_that_are_not_text_raise_request_error(parse, value):
    with pytest.raises(RequestError, match="must be text"):
        parse(value)


def test_a_list_of_values_that_are_not_text_is_refused():
    with pytest.raises(RequestError, match="must be text"):
        parse_qsub_resources([{"nodes": "1"}])
