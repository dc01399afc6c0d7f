"""Reading SWF traces: fields, replay conventions, bad lines reported and skipped."""
from __future__ import annotations

import gzip

from dtserver.sim.swf import concurrency_profile, parse_swf, read_swf

HEADER = """; Version: 2.2
; Computer: test cluster
; UnixStartTime: 1027839845
; MaxProcs: 64
;
"""


def line(number: int, submit: float, runtime: float, cores: int, *, wait: float = 0,
         requested_cores: int = -1, requested_time: float = -1, status: int = 1,
         user: int = 3, queue: int = 1) -> str:
    fields = [number, submit, wait, runtime, cores, -1, -1, requested_cores, requested_time,
              -1, status, user, 1, -1, queue, -1, -1, -1]
    return " ".join(str(field) for field in fields)


def test_a_job_line_becomes_a_job_with_the_replay_fields():
    trace = parse_swf([*HEADER.splitlines(),
                       line(7, 120, 3600, 8, wait=40, requested_time=7200, user=12)])
    [job] = trace.jobs
    assert (job.number, job.submit, job.runtime, job.cores) == (7, 120, 3600, 8)
    assert (job.requested_time, job.recorded_wait, job.user, job.status) == (7200, 40, 12, 1)
    assert trace.header["UnixStartTime"] == "1027839845"
    assert trace.unix_start == 1027839845


def test_requested_processors_stand_in_when_allocated_are_unknown():
    [job] = parse_swf([line(1, 0, 60, -1, requested_cores=4)]).jobs
    assert job.cores == 4


def test_unknown_requested_time_is_none():
    [job] = parse_swf([line(1, 0, 60, 2)]).jobs
    assert job.requested_time is None and job.recorded_wait == 0


def test_bad_lines_are_reported_with_their_numbers_and_skipped():
    lines = [HEADER.rstrip("\n"), line(1, 0, 60, 2), "1 2 3", line(3, 10, 60, 2).replace(
        " 60 ", " sixty "), line(4, 20, 60, 2)]
    trace = parse_swf("\n".join(lines).splitlines())
    assert [job.number for job in trace.jobs] == [1, 4]
    assert trace.bad_lines == 2
    assert [(problem.line, problem.reason) for problem in trace.problems] == [
        (7, "3 fields, expected 18"), (8, "not a number: 'sixty'")]


def test_jobs_that_did_not_run_and_cancelled_jobs_are_counted_and_skipped():
    trace = parse_swf([line(1, 0, 0, 4), line(2, 0, 60, 0), line(3, 0, 60, 4, status=5),
                       line(4, 0, 60, 4, status=2), line(5, 0, 60, 4, status=0)])
    assert [job.number for job in trace.jobs] == [5]   # a failed job still ran
    assert trace.skipped == {"run time <= 0": 1, "cores <= 0": 1, "cancelled (status 5)": 1,
                             "status 2 (partial record)": 1}


def test_cancelled_jobs_are_kept_when_asked():
    trace = parse_swf([line(1, 0, 60, 4, status=5)], keep_cancelled=True)
    assert len(trace.jobs) == 1


def test_limit_keeps_the_first_replayable_jobs():
    trace = parse_swf([line(n, n * 10, 60, 1) for n in range(1, 11)], limit=3)
    assert [job.number for job in trace.jobs] == [1, 2, 3]


def test_gzipped_and_plain_files_read_the_same(tmp_path):
    text = HEADER + "\n".join(line(n, n, 30, 1) for n in range(1, 4)) + "\n"
    plain = tmp_path / "t.swf"
    plain.write_text(text)
    packed = tmp_path / "t.swf.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    assert read_swf(plain).jobs == read_swf(packed).jobs
    assert read_swf(packed).name == "t.swf.gz"


def test_jobs_are_sorted_by_submit_time():
    trace = parse_swf([line(2, 50, 10, 1), line(1, 10, 10, 1)])
    assert [job.number for job in trace.jobs] == [1, 2]
    assert trace.span_seconds == 40


def test_concurrency_profile_sums_overlapping_jobs():
    profile = list(concurrency_profile([(0, 10, 4), (5, 15, 2), (10, 20, 1)]))
    assert profile == [(0, 4), (5, 6), (10, 3), (15, 1), (20, 0)]


def test_the_header_tells_the_cores_per_node_of_the_traced_machine():
    def cores_per_node(*header: str) -> int | None:
        return parse_swf([*header, line(1, 0, 60, 1)]).cores_per_node

    assert cores_per_node("; MaxNodes: 100", "; MaxProcs: 100") == 1
    assert cores_per_node("; MaxNodes: 151", "; MaxProcs: 2004") == 13
    assert cores_per_node("; MaxProcs: 64") is None
    assert cores_per_node("; MaxNodes: 0", "; MaxProcs: 64") is None
    assert cores_per_node("; MaxNodes: -1", "; MaxProcs: 64") is None
    assert cores_per_node("; MaxNodes: many", "; MaxProcs: 64") is None
