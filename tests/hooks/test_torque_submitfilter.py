"""The TORQUE submit filter, run as qsub runs it: `sh -c` with quoted argv, stdout to a file."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hooks.support import (CUT_SHORT_SECONDS, FILTER, FJOB, PBS_HOOK, Certificate,
                                 HungServer, ProxyTrap, RecordingServer, closed_port_url,
                                 current_user, filter_log, proxy_environment, run_filter,
                                 write_config)


def posted(service: RecordingServer) -> dict[str, Any]:
    assert len(service.received) == 1, service.received
    return service.received[0].body


# --- the script passes through untouched --------------------------------------------------

@pytest.mark.parametrize("script", [
    FJOB,
    b"",
    b"\n",
    b"#!/bin/sh\r\n#PBS -l nodes=1\r\necho crlf\r\n",
    b"#!/bin/sh\necho no final newline",
    b"\x00\xff\xfe#PBS -l nodes=1\n\x80invalid utf-8\x00\n",
    b"#!/bin/sh\n" + b"echo padding padding padding\n" * 200_000,
], ids=["reference", "empty", "newline", "crlf", "no-final-newline", "binary", "6MB"])
def test_stdout_is_stdin_byte_for_byte(tmp_path: Path, service: RecordingServer,
                                       script: bytes) -> None:
    config = write_config(tmp_path, url=service.url)

    run = run_filter(["-l", "nodes=1", "job.sh"], script, config=config, cwd=tmp_path)

    assert run.status == 0
    assert run.stdout == script
    assert run.stderr == b""


@pytest.fixture(scope="module")
def down_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("down"), url=closed_port_url())


FRAGMENTS = [b"#PBS -l nodes=2:ppn=4\n", b"#PBS -N x\r\n", b"\\\n", b"\r\n", b"\x00", b"'",
             b'"', b"#!", b":", b"echo hi\n", b"\xff\xfe", b"#PBS -W depend=afterok:1\n"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(st.one_of(st.binary(max_size=64), st.sampled_from(FRAGMENTS)),
                       max_size=12).map(b"".join))
def test_any_bytes_pass_through_unchanged_and_exit_0(down_config: Path, script: bytes) -> None:
    run = run_filter(["-N", "prop", "job.sh"], script, config=down_config,
                     cwd=down_config.parent)

    assert (run.status, run.stdout) == (0, script)


def test_a_script_that_cannot_be_copied_whole_fails_the_submission(tmp_path: Path) -> None:
    # Exit 1 makes qsub abort ("submit filter returned an error code") instead of queueing a
    # cut script; /dev/full refuses every write with ENOSPC.
    config = write_config(tmp_path, url=closed_port_url())
    with open("/dev/full", "wb") as full:
        done = subprocess.run([str(FILTER), "job.sh"], input=FJOB, stdout=full,
                              stderr=subprocess.PIPE, env={"DT_FILTER_CONFIG": str(config)},
                              timeout=10, check=False)

    assert done.returncode == 1
    assert b"cannot copy the job script" in done.stderr


# --- the filter never fails the submission --------------------------------------------------

def test_service_down_still_exits_0_quietly(tmp_path: Path) -> None:
    config = write_config(tmp_path, url=closed_port_url())

    run = run_filter(["-l", "nodes=1", "job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
    assert "hint not sent" in filter_log(tmp_path)
    assert "ConnectionRefusedError" in filter_log(tmp_path)


def test_hung_service_costs_qsub_less_than_the_deadline(tmp_path: Path,
                                                        hung_service: HungServer) -> None:
    config = write_config(tmp_path, url=hung_service.url)

    run = run_filter(["-l", "nodes=1", "job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
    assert run.elapsed < CUT_SHORT_SECONDS
    assert "timed out" in filter_log(tmp_path)


def test_a_lookup_that_hangs_is_cut_by_the_watchdog(tmp_path: Path,
                                                    service: RecordingServer) -> None:
    # Opening a FIFO nobody writes blocks in C, like a hung DNS or NSS lookup: no socket
    # timeout applies, only the watchdog.
    fifo = tmp_path / "token.fifo"
    os.mkfifo(fifo)
    config = write_config(tmp_path, url=service.url, token_file=fifo)

    run = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout) == (0, FJOB)
    assert run.elapsed < CUT_SHORT_SECONDS
    assert "hint abandoned reason=deadline" in filter_log(tmp_path)
    assert service.received == []


@pytest.mark.parametrize("status", [500, 400, 401])
def test_service_errors_are_logged_and_the_job_goes_on(tmp_path: Path, service: RecordingServer,
                                                       status: int) -> None:
    service.status = status
    config = write_config(tmp_path, url=service.url)

    run = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
    assert f"hint refused status={status}" in filter_log(tmp_path)


@pytest.mark.parametrize("text", [
    "this is not a setting\n",
    "colour = blue\n",
    "url = ftp://example.org\n",
    "timeout_seconds = 5\n",
    "timeout_seconds = soon\n",
    "warn_on_stderr = perhaps\n",
    "\xff\n",
])
def test_broken_config_sends_nothing_and_still_exits_0(tmp_path: Path, service: RecordingServer,
                                                       text: str) -> None:
    config = tmp_path / "filter.conf"
    config.write_text(f"url = {service.url}\n{text}", encoding="latin-1")

    run = run_filter(["-l", "nodes=1", "job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
    assert service.received == []


def test_a_named_config_that_is_missing_sends_nothing(tmp_path: Path,
                                                      service: RecordingServer) -> None:
    run = run_filter(["job.sh"], FJOB, config=tmp_path / "missing.conf", cwd=tmp_path)

    assert (run.status, run.stdout) == (0, FJOB)
    assert service.received == []


def test_warn_on_stderr_prints_one_short_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, url=closed_port_url(), warn_on_stderr="yes")

    run = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout) == (0, FJOB)
    assert run.stderr.count(b"\n") == 1
    assert b"the job is submitted as usual" in run.stderr


def test_the_hint_token_is_sent_as_a_bearer_token(tmp_path: Path,
                                                  service: RecordingServer) -> None:
    token = tmp_path / "hint.token"
    token.write_text("hint-token-123\n", encoding="utf-8")
    config = write_config(tmp_path, url=service.url, token_file=token)

    run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)

    assert service.received[0].headers["Authorization"] == "Bearer hint-token-123"
    assert service.received[0].path == "/v1/hints"
    assert service.received[0].headers["Content-Type"] == "application/json"


def test_a_url_with_a_path_prefix_posts_below_it(tmp_path: Path, service: RecordingServer) -> None:
    config = write_config(tmp_path, url=service.url + "/dynamictorque/")

    run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)

    assert service.received[0].path == "/dynamictorque/v1/hints"


def test_https_url_posts_over_tls_trusting_the_configured_ca(
        tmp_path: Path, tls_service: RecordingServer, certificate: Certificate) -> None:
    config = write_config(tmp_path, url=tls_service.url, ca_file=certificate.cert)

    run = run_filter(["-l", "nodes=1", "job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout) == (0, FJOB)
    assert tls_service.received[0].body["resources"] == ["walltime=00:10:00", "nodes=1"]


def test_https_service_with_an_untrusted_certificate_gets_nothing(
        tmp_path: Path, tls_service: RecordingServer) -> None:
    config = write_config(tmp_path, url=tls_service.url)

    run = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
    assert tls_service.received == []
    assert "CERTIFICATE_VERIFY_FAILED" in filter_log(tmp_path)


# --- what the hint says ---------------------------------------------------------------------

def test_reference_submission_posts_the_full_hint(tmp_path: Path,
                                                  service: RecordingServer) -> None:
    config = write_config(tmp_path, url=service.url)

    run = run_filter(["-l", "nodes=1:ppn=1", "-q", "batch", "-v", "FOO=bar", "fjob.sh"], FJOB,
                     config=config, cwd=tmp_path)

    assert run.status == 0
    assert posted(service) == {
        "user": current_user(),
        "submit_host": os.uname().nodename,
        "resources": ["walltime=00:10:00", "nodes=1:ppn=1"],
        "directives": ["#PBS -N fjob", "#PBS -l walltime=00:10:00"],
        "queue": "batch",
        "job_name": "fjob",
    }
    assert "hint sent status=202" in filter_log(tmp_path)


BARE = b"#!/bin/sh\nhostname\n"


@pytest.mark.parametrize("args, script, expected", [
    (["-t", "1-10%2", "-q", "cloud", "-A", "acct", "fjob.sh"], FJOB,
     {"array": "1-10%2", "queue": "cloud", "account": "acct"}),
    (["-N", "my job", "-v", "A=1,B=two words", "fjob.sh"], FJOB, {"job_name": "my job"}),
    (["-lnodes=2:ppn=4,walltime=01:00:00", "-l", "mem=2gb", "job.sh"], BARE,
     {"resources": ["nodes=2:ppn=4,walltime=01:00:00", "mem=2gb"]}),
    (["-zl", "nodes=3", "job.sh"], BARE, {"resources": ["nodes=3"]}),
    (["job.sh", "-q", "batch"], BARE, {"queue": "batch", "job_name": "job.sh"}),
    (["-q", "batch@vm", "dir/run.sh"], BARE, {"queue": "batch", "job_name": "run.sh"}),
    (["-N", "x"], BARE, {"job_name": "x", "resources": []}),
    ([], BARE, {"job_name": "STDIN"}),
    (["-P", "alice:physics", "job.sh"], BARE, {"user": "alice"}),
], ids=["array", "quoted-spaces", "combined-l", "grouped-flags", "options-after-script",
        "queue-at-server", "stdin-named", "stdin-default-name", "proxy-user"])
def test_argv_is_read_as_qsub_reads_it(tmp_path: Path, service: RecordingServer,
                                       args: list[str], script: bytes,
                                       expected: dict[str, Any]) -> None:
    config = write_config(tmp_path, url=service.url)

    run_filter(args, script, config=config, cwd=tmp_path)

    hint = posted(service)
    assert {key: hint.get(key) for key in expected} == expected


def test_queue_given_only_as_at_server_is_left_out(tmp_path: Path,
                                                   service: RecordingServer) -> None:
    config = write_config(tmp_path, url=service.url)

    run_filter(["-q", "@vm", "job.sh"], BARE, config=config, cwd=tmp_path)

    assert "queue" not in posted(service)


def test_command_line_beats_directives_and_later_directives_beat_earlier(
        tmp_path: Path, service: RecordingServer) -> None:
    script = (b"#!/bin/bash\n#PBS -q cloud\n#PBS -A first\n#PBS -A dirac\n#PBS -N early\n"
              b"#PBS -l nodes=1:ppn=1,walltime=00:05:00\nhostname\n")
    config = write_config(tmp_path, url=service.url)

    run_filter(["-q", "batch", "-N", "late", "-l", "nodes=2:ppn=4", "job.sh"], script,
               config=config, cwd=tmp_path)

    hint = posted(service)
    assert (hint["queue"], hint["account"], hint["job_name"]) == ("batch", "dirac", "late")
    # Directives first, then the command line: the service merges them with the later winning.
    assert hint["resources"] == ["nodes=1:ppn=1,walltime=00:05:00", "nodes=2:ppn=4"]


@pytest.mark.parametrize("script, resources, directives", [
    (b"#!/bin/sh\n\n: a colon line\n  #PBS -l nodes=1\n# comment\n#PBS -l mem=1gb\necho hi\n"
     b"#PBS -l nodes=9\n",
     ["nodes=1", "mem=1gb"], ["#PBS -l nodes=1", "#PBS -l mem=1gb"]),
    (b"#!/bin/sh\r\n#PBS -l nodes=2\r\n#PBS -q cloud\r\necho\r\n#PBS -l nodes=9\r\n",
     ["nodes=2"], ["#PBS -l nodes=2", "#PBS -q cloud"]),
    (b"#PBS -l nodes=1:ppn=2,\\\nwalltime=01:00:00\nhostname\n",
     ["nodes=1:ppn=2,walltime=01:00:00"], ["#PBS -l nodes=1:ppn=2,walltime=01:00:00"]),
    (b"#PBS -l nodes=2 # two nodes\n", ["nodes=2"], ["#PBS -l nodes=2 # two nodes"]),
    (b"#PBS\t-lnodes=3\n#PBSnothing\n", ["nodes=3"], ["#PBS\t-lnodes=3", "#PBSnothing"]),
    (b"hostname\n#PBS -l nodes=9\n", [], []),
], ids=["leading-block", "crlf", "continuation", "trailing-comment", "tab-and-attached",
        "command-first"])
def test_directives_are_read_up_to_the_first_command(
        tmp_path: Path, service: RecordingServer, script: bytes, resources: list[str],
        directives: list[str]) -> None:
    config = write_config(tmp_path, url=service.url)

    run = run_filter(["job.sh"], script, config=config, cwd=tmp_path)

    assert run.stdout == script
    assert (posted(service)["resources"], posted(service)["directives"]) == (resources,
                                                                             directives)


def test_dash_c_changes_the_directive_prefix(tmp_path: Path, service: RecordingServer) -> None:
    script = b"#!/bin/sh\n#FOO -l nodes=4\n#PBS -l nodes=9\nhostname\n"
    config = write_config(tmp_path, url=service.url)

    run_filter(["-C", "#FOO", "-N", "dashc", "job.sh"], script, config=config, cwd=tmp_path)

    assert posted(service)["resources"] == ["nodes=4"]
    assert posted(service)["directives"] == ["#FOO -l nodes=4"]


def test_directive_words_keep_their_quotes_as_qsub_make_argv_does(
        tmp_path: Path, service: RecordingServer) -> None:
    config = write_config(tmp_path, url=service.url)

    run_filter(["job.sh"], b'#PBS -N "two words"\n#PBS -A a\\ b\n', config=config, cwd=tmp_path)

    assert (posted(service)["job_name"], posted(service)["account"]) == ('"two words"', "a b")


def test_interactive_qsub_passes_its_made_up_stdin_and_posts_argv(
        tmp_path: Path, service: RecordingServer) -> None:
    config = write_config(tmp_path, url=service.url)

    run = run_filter(["-I", "-N", "inter", "-l", "nodes=1,walltime=00:01:00"], b"\n",
                     config=config, cwd=tmp_path, interactive=True)

    assert (run.status, run.stdout) == (0, b"\n")
    hint = posted(service)
    assert (hint["resources"], hint["job_name"], hint["directives"]) == (
        ["nodes=1,walltime=00:01:00"], "inter", [])


@pytest.mark.parametrize("args, script, reason", [
    (["-h", "job.sh"], BARE, "held"),
    (["job.sh"], b"#PBS -h\nhostname\n", "held"),
    (["-a", "202701010000", "job.sh"], BARE, "deferred"),
    (["-W", "depend=afterok:12.vm", "job.sh"], BARE, "dependency"),
    (["-Z", "job.sh"], BARE, "qsub-will-refuse"),
    (["job.sh", "-N"], BARE, "qsub-will-refuse"),
    (["job.sh"], b'#PBS -N "unmatched\nhostname\n', "qsub-will-refuse"),
    (["job.sh"], b"#PBS -l nodes=1,\\\n", "qsub-will-refuse"),
], ids=["held", "held-directive", "deferred", "dependency", "unknown-option", "missing-value",
        "unmatched-quote", "continuation-at-eof"])
def test_jobs_that_will_not_wait_for_nodes_get_no_hint(
        tmp_path: Path, service: RecordingServer, args: list[str], script: bytes,
        reason: str) -> None:
    config = write_config(tmp_path, url=service.url)

    run = run_filter(args, script, config=config, cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, script, b"")
    assert service.received == []
    assert f"hint skipped reason={reason}" in filter_log(tmp_path)


def test_control_characters_never_reach_the_hint_text(tmp_path: Path,
                                                      service: RecordingServer) -> None:
    config = write_config(tmp_path, url=service.url)

    run_filter(["job.sh"], b"#PBS -l nodes=1 \x1b[31m\n#PBS -N a\x07b\n", config=config,
               cwd=tmp_path)

    hint = posted(service)
    assert hint["directives"] == ["#PBS -l nodes=1 \ufffd[31m", "#PBS -N a\ufffdb"]
    assert "job_name" not in hint


# --- a hostile log_file or proxy setting ----------------------------------------------------
# Any user can put a FIFO, a directory or a symlink where log_file points (a /tmp path,
# say). None of them may hang qsub, change the script or make the filter write elsewhere.
# The 30 s timeout only detects a hang; run_filter kills a filter that outlives it.

HANG = 30


@pytest.fixture(params=["service answers", "lookup hangs"])
def config_with_log(request: pytest.FixtureRequest, tmp_path: Path,
                    service: RecordingServer) -> Any:
    """A config whose log_file the test replaces; with "lookup hangs" the worker is still
    busy at the deadline (a token FIFO blocks it as a hung DNS lookup would)."""
    def make(log: Path) -> Path:
        extra: dict[str, Any] = {}
        if request.param == "lookup hangs":
            token = tmp_path / "token.fifo"
            os.mkfifo(token)
            extra["token_file"] = token
        return write_config(tmp_path, url=service.url, log_file=log, warn_on_stderr="yes",
                            **extra)
    return make


def test_a_fifo_as_log_file_does_not_hang_qsub(tmp_path: Path, config_with_log: Any) -> None:
    log = tmp_path / "filter.log.fifo"
    os.mkfifo(log)                    # nobody reads it: a blocking open would wait forever

    run = run_filter(["-l", "nodes=1", "job.sh"], FJOB, config=config_with_log(log),
                     cwd=tmp_path, timeout=HANG)

    assert (run.status, run.stdout) == (0, FJOB)


def test_a_fifo_with_a_reader_gets_no_log_lines(tmp_path: Path, service: RecordingServer) -> None:
    log = tmp_path / "filter.log.fifo"
    os.mkfifo(log)
    reader = os.open(log, os.O_RDONLY | os.O_NONBLOCK)      # someone listening in
    try:
        config = write_config(tmp_path, url=service.url, log_file=log)

        run = run_filter(["-l", "nodes=1", "job.sh"], FJOB, config=config, cwd=tmp_path,
                         timeout=HANG)

        try:
            heard = os.read(reader, 1 << 16)
        except BlockingIOError:
            heard = b""
    finally:
        os.close(reader)
    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
    assert len(service.received) == 1           # the hint went out; only the log was skipped
    assert heard == b""


@pytest.mark.parametrize("target_exists", [True, False], ids=["to-a-file", "dangling"])
def test_a_symlink_as_log_file_is_not_followed(tmp_path: Path, config_with_log: Any,
                                               target_exists: bool) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "victim"
    if target_exists:
        target.write_bytes(b"not yours\n")
    log = tmp_path / "filter.log"
    log.symlink_to(target)

    run = run_filter(["-l", "nodes=1", "job.sh"], FJOB, config=config_with_log(log),
                     cwd=tmp_path, timeout=HANG)

    assert (run.status, run.stdout) == (0, FJOB)
    assert log.is_symlink()
    if target_exists:
        assert target.read_bytes() == b"not yours\n"
    else:
        assert not target.exists()


def test_a_directory_as_log_file_is_skipped(tmp_path: Path, config_with_log: Any) -> None:
    log = tmp_path / "filter.log.d"
    log.mkdir()

    run = run_filter(["-l", "nodes=1", "job.sh"], FJOB, config=config_with_log(log),
                     cwd=tmp_path, timeout=HANG)

    assert (run.status, run.stdout) == (0, FJOB)
    assert list(log.iterdir()) == []


def test_a_log_file_the_filter_creates_is_private_to_the_submitter(
        tmp_path: Path, service: RecordingServer) -> None:
    config = write_config(tmp_path, url=service.url)

    run = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout) == (0, FJOB)
    assert "hint sent status=202" in filter_log(tmp_path)
    assert (tmp_path / "filter.log").stat().st_mode & 0o777 == 0o600


def test_proxy_variables_never_carry_the_hint_or_its_token(
        tmp_path: Path, service: RecordingServer, proxy_trap: ProxyTrap) -> None:
    # qsub hands the user's environment to the filter; the hint token must not go to a
    # proxy the user names (the filter speaks HTTP on its own sockets).
    token = tmp_path / "hint.token"
    token.write_text("hint-secret\n", encoding="utf-8")
    config = write_config(tmp_path, url=service.url, token_file=token)

    run = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path,
                     environ=proxy_environment(proxy_trap.url))

    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
    assert service.received[0].headers["Authorization"] == "Bearer hint-secret"
    assert proxy_trap.requests() == []


# --- the files themselves ------------------------------------------------------------------

def test_filter_is_an_executable_for_the_system_python() -> None:
    assert os.access(FILTER, os.X_OK)
    assert FILTER.read_text(encoding="utf-8").startswith("#!/usr/bin/python3 -IS\n")


@pytest.mark.parametrize("path, allowed, oldest", [
    (FILTER, {"__future__"}, (3, 7)),
    (PBS_HOOK, {"pbs"}, (3, 6)),
])
def test_hooks_import_only_the_standard_library_and_parse_on_old_pythons(
        path: Path, allowed: set[str], oldest: tuple[int, int]) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), feature_version=oldest)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - allowed <= set(sys.stdlib_module_names)
    assert not imported & {"dtserver", "admin", "requests"}
