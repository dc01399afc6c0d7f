"""qsub runs torque.cfg's SUBMITFILTER as TORQUE 6.1 does: the reference's own filter and
command lines (20_submitfilter.txt) give the same exit codes, output and filter logs
(21_filter_logs_all.txt) through the emulator's qsub executable."""
from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from dtserver.fakes.torque.persistence import EmulatorHome
from tests.cli_emulator.support import TIMEOUT, ok, run, shell, xml_jobs
from tests.torque_captures import DATA, Capture, find, load_blocks

REFERENCE = load_blocks("20_submitfilter.txt")
REFERENCE_FILTER = "/opt/filter/filter.sh"
REFERENCE_CWD = "/home/tuser"
HOOK = Path(__file__).resolve().parents[2] / "hooks" / "torque_submitfilter"

# 20_ command line -> its 21_ filter log. Left out: the 5 s and hanging filters (timing,
# tested below), `qsub -I`, and blocks that need qstat -B or another torque.cfg.
CASES = {
    "qsub -l nodes=1:ppn=1 -q batch -v FOO=bar fjob.sh": "pass",
    "FILTER_MODE=reject1 qsub -l nodes=1 fjob.sh": "reject1",
    "FILTER_MODE=reject255 qsub -l nodes=1 fjob.sh": "reject255",
    "FILTER_MODE=reject2 qsub fjob.sh": "reject2",
    "FILTER_MODE=modify qsub -N modjob fjob.sh": "modify",
    "FILTER_MODE=modify_nodes qsub -l nodes=1:ppn=1 fjob.sh": "modify_nodes",
    "FILTER_MODE=modify_nodes qsub -N modnodes2 fjob.sh": "modify_nodes2",
    "FILTER_MODE=empty qsub fjob.sh": "empty",
    "qsub -N 'my job' -v 'A=1,B=two words' fjob.sh": "quoting",
    "qsub -N \"it's\" fjob.sh": "singlequote",
    "printf '#!/bin/sh\\n#PBS -l walltime=00:05:00\\nsleep 1\\n' | qsub -N fromstdin": "stdin",
    "qsub -C '#FOO' -N dashc fjob.sh": "dashC",
    "qsub -t 1-2 -q cloud -A acct fjob.sh": "array",
}


@dataclass(frozen=True)
class Site:
    """A submit host: the reference filter installed, fjob.sh in the user's directory."""

    bin_dir: Path
    work: Path
    filter: Path
    log: Path

    def qsub(self, line: str) -> subprocess.CompletedProcess[bytes]:
        self.log.unlink(missing_ok=True)
        return shell(self.bin_dir, line, cwd=self.work)

    def logged(self) -> list[str]:
        if not self.log.exists():
            return []
        return essentials(self.log.read_text(), str(self.filter), str(self.work))


@pytest.fixture
def site(tmp_path: Path, home: EmulatorHome, bin_dir: Path) -> Site:
    work = tmp_path / "work"
    work.mkdir()
    (work / "fjob.sh").write_text(reference("cat fjob.sh").stdout)
    log = tmp_path / "filter.log"
    installed = tmp_path / "opt" / "filter.sh"
    installed.parent.mkdir()
    installed.write_text(reference(f"cat {REFERENCE_FILTER}").stdout.replace(
        "LOG=/opt/filter/filter.log", f"LOG={log}"))
    installed.chmod(0o755)
    home.config_file.write_text(f"SUBMITFILTER {installed}\n")
    # The reference cluster had CLOUD nodes with 2 cores: qsub checks nodes= requests.
    ok(bin_dir, "qmgr", "-c", "create node cn01 np=2,properties=CLOUD")
    return Site(bin_dir, work, installed, log)


def reference(command: str) -> Capture:
    """The first 20_ block of `command` (the pass run is captured twice, as 35 and 36)."""
    return find(REFERENCE, command)[0]


def filter_logs() -> dict[str, list[str]]:
    """21_: scenario name -> the lines that depend on qsub, not on the host."""
    text = (DATA / "21_filter_logs_all.txt").read_text()
    parts = re.split(r"^### filter log for scenario '([^']+)'.*$", text, flags=re.M)
    return {name: essentials(body, REFERENCE_FILTER, REFERENCE_CWD)
            for name, body in zip(parts[1::2], parts[2::2])}


def essentials(log: str, filter_path: str, cwd: str) -> list[str]:
    """argv, cwd, the `sh -c` line, stdin and mode of each run; the filter path, cwd and
    qsub's temporary output file named the same way on every host."""
    kept, in_stdin = [], False
    for line in log.splitlines():
        in_stdin = in_stdin or line == "--- stdin begin"
        if in_stdin or line.startswith(("argc=", "argv[", "pwd:", "parent cmdline:", "mode=")):
            line = line.replace(filter_path, "FILTER").replace(cwd, "CWD")
            kept.append(re.sub(r">\S*/qsub\.\S+", ">QSUB_OUTPUT", line))
        in_stdin = in_stdin and line != "--- stdin end"
    return kept


def shape(text: str) -> str:
    """Job ids differ by sequence number only."""
    return re.sub(r"\b\d+(\[\])?\.vm\b", r"N\1.vm", text)


@pytest.mark.parametrize("command", list(CASES), ids=list(CASES.values()))
def test_qsub_with_the_reference_filter_answers_as_the_real_one(site: Site,
                                                               command: str) -> None:
    expected = reference(command)

    done = site.qsub(command)

    assert done.returncode == expected.exit_code
    assert shape(done.stdout.decode()) == shape(expected.stdout)
    assert done.stderr.decode() == expected.stderr
    assert site.logged() == filter_logs()[CASES[command]]


@pytest.mark.parametrize("command, script", [
    ("qsub dos.sh", b"#!/bin/sh\r\nsleep 1\r\n"),
    ("qsub utf8.sh", "#!/bin/sh\n# d\u00e9j\u00e0 vu\nsleep 1\n".encode()),
])
def test_qsub_refuses_a_dos_or_non_ascii_script_file_before_the_filter_runs(
        site: Site, command: str, script: bytes) -> None:
    expected = find(load_blocks("50_qsub_script_file_checks.txt"), command)[0]
    (site.work / command.split()[1]).write_bytes(script)

    done = site.qsub(command)

    assert (done.returncode, done.stdout, done.stderr.decode()) \
        == (expected.exit_code, b"", expected.stderr)
    assert site.logged() == []
    assert xml_jobs(site.bin_dir) == {}


def test_a_crlf_script_on_stdin_goes_through_the_filter_and_is_queued(site: Site) -> None:
    done = site.qsub("printf '#!/bin/sh\\r\\n#PBS -N crlfstdin\\r\\nsleep 1\\r\\n' | qsub")

    assert (done.returncode, done.stderr) == (0, b"")
    assert "--- stdin begin" in site.log.read_text()
    job = xml_jobs(site.bin_dir)[done.stdout.decode().strip()]
    assert job.findtext("Job_Name") == "crlfstdin"


def test_the_filter_output_is_the_script_qsub_reads(site: Site) -> None:
    modified = site.qsub("FILTER_MODE=modify qsub -N modjob fjob.sh").stdout.decode().strip()
    from_filter = site.qsub("FILTER_MODE=modify_nodes qsub -N modnodes2 fjob.sh")
    overridden = site.qsub("FILTER_MODE=modify_nodes qsub -l nodes=1:ppn=1 fjob.sh")
    jobs = xml_jobs(site.bin_dir)

    job = jobs[modified]
    assert job.findtext("Job_Name") == "modjob"            # the command line wins
    assert job.findtext("Account_Name") == "filteracct"    # added by the filter
    # The filter put its walltime before the script's own, and the later line wins (20_).
    assert job.findtext("Resource_List/walltime") == "00:10:00"
    variables = job.findtext("Variable_List", "").split(",")
    assert variables[6] == f"PBS_O_SUBMIT_FILTER={site.filter}"   # after PBS_O_LANG (41_)
    nodes = {name: jobs[done.stdout.decode().strip()].findtext("Resource_List/nodes")
             for name, done in (("filter", from_filter), ("command line", overridden))}
    assert nodes == {"filter": "1:ppn=2:CLOUD", "command line": "1:ppn=1"}


def test_an_empty_filter_output_prints_a_job_id_but_makes_no_job(site: Site) -> None:
    done = site.qsub("FILTER_MODE=empty qsub -N emptyout fjob.sh")
    job_id = done.stdout.decode().strip()

    assert (done.returncode, shape(job_id)) == (0, "N.vm")
    missing = run(site.bin_dir, "qstat", "-x", job_id)
    assert (missing.returncode, missing.stderr.decode()) \
        == (153, f"qstat: Unknown Job Id Error {job_id}\n")


def test_a_missing_filter_fails_every_qsub(site: Site, home: EmulatorHome) -> None:
    expected = reference("qsub -N missingfilter fjob.sh")
    home.config_file.write_text("SUBMITFILTER /opt/filter/does-not-exist\n")

    done = site.qsub("qsub -N missingfilter fjob.sh")

    assert (done.returncode, done.stdout, done.stderr.decode()) \
        == (expected.exit_code, b"", expected.stderr)


def test_a_filter_that_cannot_run_aborts_the_submission(site: Site,
                                                        home: EmulatorHome) -> None:
    expected = reference("qsub -N noexecfilter fjob.sh")
    site.filter.chmod(0o644)

    done = site.qsub("qsub -N noexecfilter fjob.sh")

    assert done.returncode == expected.exit_code
    assert done.stderr.decode() == expected.stderr.replace("/opt/filter/noexec.sh",
                                                           str(site.filter))
    assert xml_jobs(site.bin_dir) == {}


def test_a_hanging_filter_hangs_qsub_but_not_the_server(site: Site) -> None:
    qsub = subprocess.Popen(["sh", "-c", "FILTER_MODE=hang qsub -N hang fjob.sh"],
                            cwd=site.work, start_new_session=True,
                            env={**os.environ, "PATH": f"{site.bin_dir}:{os.defpath}"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not site.log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert site.log.exists(), "the filter never started"
        # qsub has no timeout of its own; the rest of the cluster keeps answering.
        assert ok(site.bin_dir, "qstat", "-x") == '<?xml version="1.0"?>\n<Data></Data>\n'
        assert qsub.poll() is None
    finally:
        os.killpg(qsub.pid, signal.SIGKILL)     # qsub's own session: sh, filter, sleep
        qsub.communicate(timeout=TIMEOUT)
    assert xml_jobs(site.bin_dir) == {}


@dataclass(frozen=True)
class HintService:
    url: str
    hints: list[tuple[str, dict[str, object]]]


@pytest.fixture
def hint_service() -> Iterator[HintService]:
    """A stand-in for the dynamictorque API that records the hints POSTed to it."""
    hints: list[tuple[str, dict[str, object]]] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:        # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hints.append((self.path, json.loads(body)))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet: the test reads what arrived."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield HintService(f"http://127.0.0.1:{server.server_address[1]}", hints)
    server.shutdown()
    server.server_close()
    thread.join(timeout=TIMEOUT)


@pytest.mark.skipif(not HOOK.exists() or not os.access("/usr/bin/python3", os.X_OK),
                    reason="hooks/torque_submitfilter or the system python3 is missing")
def test_our_submit_filter_through_qsub_queues_the_job_and_sends_a_hint(
        site: Site, home: EmulatorHome, tmp_path: Path,
        hint_service: HintService) -> None:
    config = tmp_path / "filter.conf"
    config.write_text(f"url = {hint_service.url}\n")
    home.config_file.write_text(f"SUBMITFILTER {HOOK}\n")

    done = shell(site.bin_dir, "qsub -q cloud -l nodes=1:ppn=2:CLOUD fjob.sh", cwd=site.work,
                 extra_env={"DT_FILTER_CONFIG": str(config)})

    assert (done.returncode, done.stderr) == (0, b"")
    job = xml_jobs(site.bin_dir)[done.stdout.decode().strip()]
    # The script came through whole: its directives still name and time the job.
    assert job.findtext("Job_Name") == "fjob"
    assert job.findtext("Resource_List/walltime") == "00:10:00"
    assert f"PBS_O_SUBMIT_FILTER={HOOK}" in job.findtext("Variable_List", "")
    [(path, hint)] = hint_service.hints
    assert path == "/v1/hints"
    assert hint["queue"] == "cloud" and hint["job_name"] == "fjob"
    assert hint["resources"] == ["walltime=00:10:00", "nodes=1:ppn=2:CLOUD"]
