"""Golden tests: replay the scenarios of the real TORQUE 6.1 captures on the emulator.

Texts, exit codes and stderr are compared exactly. XML is compared through the real
parser: element order, values and Resource_List, with times, session ids and the mom's
status values (host-specific) normalised away; status keeps its list of keys.
"""
from __future__ import annotations

import ast
import re
import shlex
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import unescape

import pytest

from dtserver.batch.torque_commands import CommandResult
from dtserver.clock import FakeClock
from dtserver.fakes.torque.server import TorqueEmulator
from tests.torque_captures import DATA, Capture, load_blocks

START = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
TORQUE_COMMANDS = {"qmgr", "pbsnodes", "qnodes", "qstat", "qsub", "qdel"}
UNRESOLVABLE = {"nosuchhost"}
# Keys only the network-namespace moms of the captures report.
HOST_SPECIFIC_STATUS_KEYS = {"macaddr"}
# Job fields that carry times or pids, not behaviour.
VOLATILE_JOB_FIELDS = {"ctime", "mtime", "qtime", "etime", "start_time", "comp_time",
                       "session_id", "total_runtime"}
RUNTIME_KNOB = re.compile(r"-v DT_EMULATOR_RUNTIME=\S+ ")


# --- builders -------------------------------------------------------------------------------

def emulator(**options: object) -> tuple[FakeClock, TorqueEmulator]:
    clock = FakeClock(START)
    options.setdefault("resolvable", lambda name: name not in UNRESOLVABLE)
    return clock, TorqueEmulator(clock, **options)


def sh(emu: TorqueEmulator, line: str, stdin: bytes | None = None) -> CommandResult:
    return emu.run(shlex.split(line), stdin=stdin)


def ok(emu: TorqueEmulator, line: str) -> CommandResult:
    result = sh(emu, line)
    assert result.status == 0, (line, result.stderr)
    return result


def capture_cluster(clock: FakeClock, emu: TorqueEmulator) -> None:
    """The node set of 08_-15_: vm with a reporting 2-cpu mom, cn01-03 never reported."""
    ok(emu, "qmgr -c 'create node vm'")
    ok(emu, "qmgr -c 'create node cn01 np=4,properties=CLOUD'")
    ok(emu, "qmgr -c 'create node cn02 np = 2, properties = \"CLOUD,bigmem\"'")
    ok(emu, "qmgr -c 'create node cn03 np=8,properties=CLOUD'")
    ok(emu, "qmgr -c 'set node cn03 note = \"scaler managed\"'")
    emu.mom_up("vm", ncpus=2, mem_mb=24105)
    clock.advance(20)


def is_replayable(capture: Capture) -> bool:
    """A TORQUE client run as root, without shell plumbing the emulator cannot see."""
    return (capture.user == "root" and capture.argv[0] in TORQUE_COMMANDS
            and not any(mark in capture.command for mark in "|>;$"))


# --- normalisers ----------------------------------------------------------------------------

def status_keys(status: str) -> str:
    keys = [item.split("=", 1)[0] for item in status.split(",")]
    return ",".join(key for key in keys if key not in HOST_SPECIFIC_STATUS_KEYS)


def normalize_text(text: str) -> str:
    """Status values differ per host and per second; keep which keys were reported."""
    text = re.sub(r"<status>(.*?)</status>",
                  lambda match: f"<status>{status_keys(match.group(1))}</status>", text)
    return re.sub(r"^(\s+status = )(.*)$",
                  lambda match: match.group(1) + status_keys(match.group(2)),
                  text, flags=re.MULTILINE)


def node_elements(xml_text: str) -> dict[str, list[tuple[str, str]]]:
    nodes = {}
    for node in ET.fromstring(xml_text):
        fields = []
        for element in node:
            text = element.text or ""
            fields.append((element.tag, status_keys(text) if element.tag == "status" else text))
        nodes[node.findtext("name")] = fields
    return nodes


def job_summary(job: ET.Element) -> list[tuple[str, object]]:
    """Every element in order; nested ones as their (tag, text) lists; volatile values blank."""
    summary: list[tuple[str, object]] = []
    for element in job:
        if len(element):
            children = [(child.tag, child.text or "") for child in element]
            if element.tag in ("resources_used", "Walltime"):
                children = [(tag, "") for tag, _ in children]
            summary.append((element.tag, children))
        elif element.tag in VOLATILE_JOB_FIELDS:
            summary.append((element.tag, ""))
        elif element.tag == "Variable_List":
            items = (element.text or "").split(",")
            summary.append((element.tag, [item for item in items
                                          if not item.startswith("DT_EMULATOR_RUNTIME=")]))
        elif element.tag == "submit_args":
            text = RUNTIME_KNOB.sub("", element.text or "")
            summary.append((element.tag, re.sub(r"\S*/sleep\.sh", "sleep.sh", text)))
        elif element.tag == "comment":
            summary.append((element.tag, re.sub(r"Job started on .*", "Job started on <when>",
                                                element.text or "")))
        else:
            summary.append((element.tag, element.text or ""))
    return summary


def jobs_by_id(xml_text: str) -> dict[str, list[tuple[str, object]]]:
    return {job.findtext("Job_Id"): job_summary(job) for job in ET.fromstring(xml_text)}


def captured_xml(name: str) -> str:
    return (DATA / "xml" / name).read_text()


def timeline(source: str, heading: str, pattern: str) -> list[tuple]:
    """The `t+Ns ...` lines that follow `heading` in a capture file, as regex groups."""
    lines = (DATA / source).read_text().splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(heading))
    entries = []
    for line in lines[start + 1:]:
        match = re.fullmatch(pattern, line)
        if match is None:
            if entries:
                break
            continue
        entries.append((int(match.group(1)), *match.groups()[1:]))
    return entries


def assert_replays(emu: TorqueEmulator, clock: FakeClock, captures: list[Capture],
                   *, pause: float = 0.25,
                   before: dict[int, float] | None = None) -> int:
    """Run every replayable capture in order and compare; returns how many were compared."""
    compared = 0
    for index, capture in enumerate(captures):
        if not is_replayable(capture):
            continue
        clock.advance((before or {}).get(index, 0.0))
        result = emu.run(capture.argv)
        assert (result.status, normalize_text(result.stdout.decode()), result.stderr) == (
            capture.exit_code, normalize_text(capture.stdout), capture.stderr), capture.source
        compared += 1
        clock.advance(pause)
    return compared


# --- qmgr and pbsnodes, command by command ------------------------------------------------------

def test_qmgr_node_commands_of_05_give_the_captured_output_and_exit_codes() -> None:
    clock, emu = emulator()
    captures = load_blocks("05_qmgr_nodes.txt")
    # `p n @default` ran after every node had got the hierarchy (states are plain `down`).
    print_all = next(index for index, capture in enumerate(captures)
                     if capture.command == "qmgr -c 'p n @default'")
    assert assert_replays(emu, clock, captures, before={print_all: 20.0}) >= 30


def test_pbsnodes_on_a_never_reported_node_match_06() -> None:
    clock, emu = emulator()
    ok(emu, "qmgr -c 'create node vm'")
    assert assert_replays(emu, clock, load_blocks("06_pbsnodes_never_reported.txt")) == 7


def test_pbsnodes_listings_of_free_and_down_nodes_match_08() -> None:
    clock, emu = emulator()
    capture_cluster(clock, emu)
    assert assert_replays(emu, clock, load_blocks("08_pbsnodes_free_and_down.txt")) == 10


def test_offline_note_clear_and_reset_of_09_match() -> None:
    clock, emu = emulator()
    capture_cluster(clock, emu)
    captures = load_blocks("09_pbsnodes_offline_note_clear.txt")
    last = max(index for index, capture in enumerate(captures) if is_replayable(capture))
    # The last `pbsnodes -x vm` shows `free` again: the mom had reported after `-r`.
    assert assert_replays(emu, clock, captures, before={last: 46.0}) >= 25


def test_creation_window_of_49_refuses_a_state_change_and_its_note() -> None:
    clock, emu = emulator()
    assert assert_replays(emu, clock, load_blocks("49_okclients_window.txt")) == 2
    assert "     note = some text, with comma\n" in ok(emu, "pbsnodes -a N").stdout.decode()


def test_print_server_matches_03b() -> None:
    _, emu = emulator()
    ok(emu, "qmgr -c 'set queue cloud resources_default.neednodes = CLOUD'")
    ok(emu, "qmgr -c 'set server next_job_number = 57'")
    ok(emu, "qmgr -c 'set server record_job_info = True'")
    captured = load_blocks("03b_qmgr_print_server_final.txt")[0]
    assert sh(emu, captured.command).stdout.decode() == captured.stdout


def test_scheduler_iteration_set_and_unset_match_47() -> None:
    clock, emu = emulator()
    compared = 0
    for capture in load_blocks("47_scheduler_poke.txt"):
        if capture.argv[0] == "qmgr":
            result = emu.run(capture.argv)
            assert (result.status, result.stdout.decode(), result.stderr) == (
                capture.exit_code, capture.stdout, capture.stderr), capture.source
            compared += 1
    assert compared == 6


@pytest.mark.parametrize("trqauthd", [True, False])
def test_clients_fail_as_in_48_when_the_server_is_down(trqauthd: bool, tmp_path: Path) -> None:
    clock, emu = emulator()
    capture_cluster(clock, emu)
    emu.set_down(True, trqauthd=trqauthd)
    sections = (DATA / "48_server_down.txt").read_text().split(
        "## trqauthd running, pbs_server stopped")
    part = tmp_path / "48_server_down.txt"
    part.write_text(sections[0 if trqauthd else 1])
    captures = load_blocks(part)
    assert len(captures) >= 4
    for capture in captures:
        argv, stdin = capture.argv, None
        if "|" in capture.command:
            argv = tuple(shlex.split(capture.command.split("|", 1)[1]))[2:]
            stdin = b"sleep 1\n"
        result = emu.run(argv, stdin=stdin)
        assert (result.status, result.stdout, result.stderr) == (
            capture.exit_code, b"", capture.stderr), capture.source


# --- qsub and qstat ------------------------------------------------------------------------------

def replay_submissions(emu: TorqueEmulator, clock: FakeClock, source: str,
                       script: Path) -> list[tuple[Capture, CommandResult]]:
    """qsub blocks run as tuser, with the job's sleep passed as DT_EMULATOR_RUNTIME."""
    results = []
    for capture in load_blocks(source):
        if capture.user != "tuser" or "qsub" not in capture.command:
            continue
        stdin = None
        words = shlex.split(capture.command)
        if words[0] == "echo":
            stdin = (words[1] + "\n").encode()
            words = words[3:]
        seconds = re.search(r"SLEEPSECS=(\d+)", capture.command)
        runtime = seconds.group(1) if seconds else "900"
        argv = [words[0], "-v", f"DT_EMULATOR_RUNTIME={runtime}",
                *(str(script) if word == "sleep.sh" else word for word in words[1:])]
        results.append((capture, emu.run(argv, stdin=stdin)))
        clock.advance(10.0 if "quick" in capture.command else 0.2)
    return results


@pytest.fixture
def sleep_script(tmp_path: Path) -> Path:
    script = tmp_path / "sleep.sh"
    script.write_text("#!/bin/sh\nsleep ${SLEEPSECS:-900}\n")
    return script


@pytest.fixture
def mixed_queue(sleep_script: Path) -> TorqueEmulator:
    """The job set of 10_ submitted on the cluster of the captures (12_ shows it)."""
    clock, emu = emulator()
    capture_cluster(clock, emu)
    ok(emu, "qmgr -c 'set queue cloud resources_default.neednodes = CLOUD'")
    for capture, result in replay_submissions(emu, clock, "10_qsub_submissions.txt",
                                              sleep_script):
        assert (result.status, result.stdout.decode(), result.stderr) == (
            capture.exit_code, capture.stdout, capture.stderr), capture.source
    return emu


@pytest.mark.parametrize("argv, golden", [
    (("qstat", "-x"), "qstat-x.mixed.xml"),
    (("qstat", "-f", "-x"), "qstat-f-x.mixed.xml"),
    (("qstat", "-t", "-x"), "qstat-t-x.mixed.xml"),
])
def test_qstat_xml_of_the_mixed_queue_matches_the_capture(
        mixed_queue: TorqueEmulator, argv: tuple[str, ...], golden: str) -> None:
    result = mixed_queue.run(argv)
    assert result.status == 0
    assert result.stdout.startswith(b'<?xml version="1.0"?>\n<Data><Job>')
    assert result.stdout.endswith(b"</Job></Data>\n")
    ours = jobs_by_id(result.stdout.decode().split("\n", 1)[1])
    theirs = jobs_by_id(captured_xml(golden).split("\n", 1)[1])
    assert list(ours) == list(theirs)
    for job_id, summary in theirs.items():
        assert ours[job_id] == summary, job_id


def test_qstat_table_of_the_mixed_queue_matches_12(mixed_queue: TorqueEmulator) -> None:
    captures = load_blocks("12_qstat_mixed_states.txt")
    for command in ("qstat", "qstat -t"):
        capture = next(capture for capture in captures if capture.command == command)
        assert sh(mixed_queue, command).stdout.decode() == capture.stdout


def test_job_exclusive_node_matches_14(mixed_queue: TorqueEmulator) -> None:
    captures = load_blocks("14_pbsnodes_job_exclusive.txt")
    for capture in captures:
        if capture.command in ("pbsnodes -x vm", "pbsnodes -a vm", "pbsnodes -l all",
                               "pbsnodes -l active", "qnodes -x vm"):
            result = mixed_queue.run(capture.argv)
            assert normalize_text(result.stdout.decode()) == normalize_text(capture.stdout), \
                capture.source


def test_qdel_of_30_deletes_the_running_job_and_starts_the_next_ones(
        mixed_queue: TorqueEmulator) -> None:
    deleted = ok(mixed_queue, "qdel 1")
    assert deleted.stdout == b"" and deleted.stderr == ""
    ours = jobs_by_id(sh(mixed_queue, "qstat -f -x 1").stdout.decode().split("\n", 1)[1])
    golden = captured_xml("qstat-f-x.job1.deleted_while_running.xml").split("\n", 1)[1]
    assert ours == jobs_by_id(golden)
    for capture in load_blocks("30_qdel_and_completed.txt"):
        if capture.command in ("qdel 9999", "qdel 0"):
            result = mixed_queue.run(capture.argv)
            assert (result.status, result.stderr) == (capture.exit_code, capture.stderr)
    # 31_: pbs_sched started the next jobs that fit the freed node, in FIFO order.
    after = load_blocks("31_after_free_slot.txt")
    node = next(capture for capture in after if capture.command == "pbsnodes -x vm")
    assert node_elements(sh(mixed_queue, "pbsnodes -x vm").stdout.decode()) == \
        node_elements(node.stdout)


def jobs_by_name(data: bytes) -> dict[bytes, bytes]:
    """Job_Name -> the raw <Job> element of a `qstat -x` output, read as bytes."""
    return {re.search(rb"<Job_Name>(.*?)</Job_Name>", element).group(1): element
            for element in re.findall(rb"<Job>.*?</Job>", data, flags=re.DOTALL)}


def user_part(element: bytes) -> tuple[bytes, bytes]:
    """(the -v entries of Variable_List, submit_args) of a raw <Job> element."""
    variables = re.search(rb"PBS_O_LANG=C\.UTF-8,(.*?)PBS_O_WORKDIR=", element, re.DOTALL)
    arguments = re.search(rb"<submit_args>(.*?)</submit_args>", element, re.DOTALL)
    return variables.group(1), arguments.group(1)


def test_variables_with_bytes_xml_forbids_come_out_raw_as_in_51() -> None:
    """Control, quote, newline and non-UTF-8 bytes in `qsub -v`: Variable_List and
    submit_args byte for byte as real TORQUE printed them (-V is not emulated: the
    emulator has no environment of its own to export)."""
    captured = jobs_by_name((DATA / "xml" / "qstat-x.control-bytes.xml").read_bytes())
    _, emu = emulator(submit_user="dtjob")
    ok(emu, "qmgr -c 'create node vm'")     # the batch queue's default nodes=1 must fit
    submitted = []
    for name, element in captured.items():
        _, arguments = user_part(element)
        if arguments.endswith(b" -V"):
            continue
        # The bytes as qsub got them: str with surrogate escapes, as sys.argv holds them.
        text = unescape(arguments.decode("utf-8", "surrogateescape"),
                        {"&quot;": '"', "&apos;": "'"})
        argv = ["qsub", *text.split(" ")]
        assert emu.run(argv, stdin=b"#!/bin/sh\nsleep 1\n").status == 0, argv
        submitted.append(name)
    assert len(submitted) == 8
    ours = emu.run(["qstat", "-x"])
    assert ours.status == 0
    assert list(jobs_by_name(ours.stdout)) == submitted
    for name, element in jobs_by_name(ours.stdout).items():
        assert user_part(element) == user_part(captured[name]), name


def test_qsub_feasibility_checks_of_15(sleep_script: Path) -> None:
    clock, emu = emulator()
    capture_cluster(clock, emu)
    ok(emu, "qmgr -c 'set server next_job_number = 23'")
    results = replay_submissions(emu, clock, "15_qsub_feasibility_checks.txt", sleep_script)
    assert len(results) == 10
    for capture, result in results:
        assert (result.status, result.stdout.decode(), result.stderr) == (
            capture.exit_code, capture.stdout, capture.stderr), capture.source
    listing = next(capture for capture in load_blocks("15_qsub_feasibility_checks.txt")
                   if capture.command.startswith("qstat -x | python3"))
    for line in listing.stdout.splitlines():
        job_id, _, state, resources = line.split(" ", 3)
        job = emu.job(job_id)
        assert (job.state, dict(job.resources)) == (state, ast.literal_eval(resources)), line


def test_qsub_refuses_the_script_files_of_50(tmp_path: Path) -> None:
    clock, emu = emulator()
    capture_cluster(clock, emu)
    (tmp_path / "dos.sh").write_bytes(b"#!/bin/sh\r\nsleep 1\r\n")
    (tmp_path / "utf8.sh").write_bytes("#!/bin/sh\n# gr\u00fc\u00dfe\nsleep 1\n".encode())
    captures = load_blocks("50_qsub_script_file_checks.txt")
    for capture in captures:
        argv = [str(tmp_path / word) if word.endswith(".sh") else word for word in capture.argv]
        result = emu.run(argv)
        assert (result.status, result.stdout.decode(), result.stderr) == (
            capture.exit_code, capture.stdout, capture.stderr), capture.source
    assert len(captures) == 2 and emu.jobs() == ()


def test_queue_default_neednodes_variants_of_42() -> None:
    clock, emu = emulator()
    ok(emu, "qmgr -c 'create node vmm2 np=2,properties=CLOUD'")
    emu.mom_up("vmm2", ncpus=2)
    clock.advance(20)
    emu.submit(name="byname", resources={"nodes": "vmm2", "walltime": "00:05:00"},
               runtime=900)   # 50.vm held vmm2/0 while 42_ ran
    captures = load_blocks("42_cloud_queue_neednodes_variants.txt")
    submitted, compared = [], 0
    for capture in captures:
        if capture.user == "tuser":
            job_id = sh(emu, capture.command.replace("sleep.sh", ""), stdin=b"sleep 5\n")
            submitted.append(job_id.stdout.decode().strip())
        elif capture.command.startswith("qmgr"):
            assert emu.run(capture.argv).status == capture.exit_code
        elif capture.command.startswith("qstat -f"):
            job = emu.job(submitted[-1])
            lines = capture.stdout.splitlines()
            expected = [line.strip().removeprefix("Resource_List.").split(" = ")
                        for line in lines if "Resource_List." in line]
            assert [list(pair) for pair in job.resources.items()] == expected
            state = next(line.split(" = ")[1] for line in lines if "job_state" in line)
            assert job.state == state
            compared += 1
    assert compared == 2


# --- node lifecycles ---------------------------------------------------------------------

def test_scale_up_timeline_of_44_node_free_at_15s_job_started_by_periodic_cycle() -> None:
    clock, emu = emulator()
    # Put the first periodic pbs_sched cycle 162 s after `create node`, as it fell in 44_.
    ok(emu, "qmgr -c 'create node cn01 np=4,properties=CLOUD'")   # never reports
    clock.advance(600 - 162)
    emu.submit(queue="cloud", name="scaleme",
               resources={"nodes": "1:ppn=2:CLOUD", "walltime": "00:05:00"}, runtime=20)
    ok(emu, "qmgr -c 'create node cnns2 np=2,properties=CLOUD'")
    emu.mom_up("cnns2", ncpus=2)
    expected = timeline("44_autoscale_e2e_netns.txt", "t+0s mom started",
                        r"t\+(\d+)s node=(\S+) job=(\S+)")
    assert len(expected) > 150
    elapsed = 0
    for second, node_state, job_state in expected:
        clock.advance(second - elapsed)
        elapsed = second
        assert (emu.node("cnns2").state, emu.job("0.vm").state) == (node_state, job_state), second


def test_mom_killed_timeline_of_17_node_free_until_marked_down() -> None:
    clock, emu = emulator()
    ok(emu, "qmgr -c 'create node vm'")
    emu.mom_up("vm", ncpus=2)
    clock.advance(30)
    before = node_elements(sh(emu, "pbsnodes -x vm").stdout.decode())
    emu.mom_down("vm")
    expected = timeline("17_mom_stop_restart_timeline.txt", "### timeline: kill",
                        r"t\+(\d+)s state=(\S+)")
    elapsed = 0
    for second, state in expected:
        clock.advance(second - elapsed)
        elapsed = second
        assert emu.node("vm").state == state, second
    after = node_elements(sh(emu, "pbsnodes -x vm").stdout.decode())
    captured = next(capture for capture in load_blocks("17_mom_stop_restart_timeline.txt")
                    if capture.command == "pbsnodes -x vm")
    assert after == node_elements(captured.stdout)
    assert [field for field in after["vm"] if field[0] != "state"] == \
        [field for field in before["vm"] if field[0] != "state"]
    emu.mom_up("vm", ncpus=2)
    for second, state in timeline("17_mom_stop_restart_timeline.txt", "### restart pbs_mom",
                                  r"t\+(\d+)s state=(\S+)"):
        clock.advance(second and 1)
        assert emu.node("vm").state == state, second


def test_drained_node_whose_mom_stops_becomes_down_offline_as_in_46() -> None:
    clock, emu = emulator(node_down_delay=262)       # 46_ measured 260-265 s
    ok(emu, "qmgr -c 'create node cnns2 np=2,properties=CLOUD'")
    emu.mom_up("cnns2", ncpus=2)
    clock.advance(30)
    ok(emu, "pbsnodes -o -N 'scale-down: draining' cnns2")
    emu.mom_down("cnns2")
    elapsed = 0
    for second, state in timeline("46_scale_down_stop_mom.txt", "### kill -TERM",
                                  r"t\+(\d+)s node=(\S+)"):
        clock.advance(second - elapsed)
        elapsed = second
        assert emu.node("cnns2").state == state, second
    golden = node_elements(captured_xml("pbsnodes-x.down-offline-mom-died-stale-status.xml"))
    assert node_elements(sh(emu, "pbsnodes -x cnns2").stdout.decode()) == golden
    assert sh(emu, "qmgr -c 'delete node cnns2'").status == 0
    assert "cnns2" not in sh(emu, "pbsnodes -l all").stdout.decode()


def test_scale_down_of_45_offline_with_job_then_delete_requeues_it() -> None:
    clock, emu = emulator()
    ok(emu, "qmgr -c 'create node cnns2 np=2,properties=CLOUD'")
    emu.mom_up("cnns2", ncpus=2)
    clock.advance(20)
    emu.submit(name="drainme", resources={"nodes": "cnns2:ppn=1", "walltime": "00:05:00"},
               runtime=60)
    ok(emu, "pbsnodes -o -N 'scale-down: draining' cnns2")
    golden = node_elements(captured_xml("pbsnodes-x.offline-with-running-job.xml"))
    assert node_elements(sh(emu, "pbsnodes -x cnns2").stdout.decode()) == {
        "cnns2": [(tag, "0/0.vm" if tag == "jobs" else text) for tag, text in golden["cnns2"]]}
    ok(emu, "qmgr -c 'create node cnns1 np=2,properties=CLOUD'")   # the cluster goes on
    captures = load_blocks("45_scale_down_netns.txt")
    delete = next(index for index, capture in enumerate(captures)
                  if capture.command == "qmgr -c 'delete node cnns2'")
    for capture in captures[delete:delete + 2]:
        result = emu.run(capture.argv)
        assert (result.status, result.stderr) == (capture.exit_code, capture.stderr), \
            capture.source
    job = emu.job("0.vm")
    assert (job.state, job.exec_host, job.exit_status) == ("Q", None, 0)
    clock.advance(600)           # the next periodic pbs_sched cycle
    assert emu.job("0.vm").comment == \
        "Not Running: Not enough of the right type of nodes are available"
    ok(emu, "qmgr -c 'create node cnns2 np=2,properties=CLOUD'")
    clock.advance(10)
    assert emu.node("cnns2").state == "down"
    clock.advance(5)
    assert emu.node("cnns2").state == "free"


def test_partly_used_node_stays_free_as_in_41() -> None:
    clock, emu = emulator()
    ok(emu, "qmgr -c 'create node vmm2 np=2,properties=CLOUD,mom_service_port=35002,"
            "mom_manager_port=35003'")
    emu.mom_up("vmm2", ncpus=2)
    clock.advance(20)
    emu.submit(name="byname", resources={"nodes": "vmm2", "walltime": "00:05:00"})
    golden = node_elements(captured_xml("pbsnodes-x.free-partially-used.xml"))
    assert node_elements(sh(emu, "pbsnodes -x vmm2").stdout.decode()) == {
        "vmm2": [(tag, "0/0.vm" if tag == "jobs" else text) for tag, text in golden["vmm2"]]}


def test_scheduler_poke_of_47_starts_a_job_left_queued_next_to_a_free_node() -> None:
    clock, emu = emulator()
    ok(emu, "qmgr -c 'create node vmm2 np=2,properties=CLOUD'")
    emu.mom_up("vmm2", ncpus=2)
    clock.advance(20)
    ok(emu, "pbsnodes -o -N 'hold for e2e test' vmm2")
    emu.submit(queue="cloud", name="poke",
               resources={"nodes": "1:ppn=1:CLOUD", "walltime": "00:05:00"}, runtime=10)
    ok(emu, "pbsnodes -c vmm2")
    for _ in range(10):
        clock.advance(1)
        assert (emu.node("vmm2").state, emu.job("0.vm").state) == ("free", "Q")
    ok(emu, "qmgr -c 'set server scheduling = True'")
    assert emu.job("0.vm").state == "R"
