"""Behaviour of the TorqueEmulator's client commands (qsub's rules, qdel, qstat, qmgr), its
server outage and simulation API, and the production TorqueBatch reading it.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dtserver.batch import BatchUnavailable
from dtserver.batch.torque import TorqueBatch
from dtserver.fakes.torque.state import EmulatorError
from dtserver.model import JobState
from tests.adapters.torque_emulator_support import (
    SCRIPT_FILE_REFUSALS, START, cluster, emulator, ok, sh)


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
