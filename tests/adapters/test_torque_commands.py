"""Argv builders and SubprocessRunner (real child processes: tiny scripts in tmp_path)."""
from __future__ import annotations

import logging
import shlex
from pathlib import Path

import pytest

from dtserver.batch import BatchUnavailable
from dtserver.batch.torque_commands import (
    CommandTimeout,
    InvalidArgument,
    SubprocessRunner,
    clear_node_argv,
    clear_note_argv,
    create_node_argv,
    delete_node_argv,
    offline_node_argv,
    pbsnodes_xml_argv,
    qstat_jobs_argv,
    set_node_np_argv,
    start_scheduling_argv,
    validate_hostname,
)
from tests.torque_captures import find, load_blocks


def test_argv_builders_spell_the_commands_of_the_captures():
    assert qstat_jobs_argv() == ("qstat", "-x", "-t")
    assert pbsnodes_xml_argv() == ("pbsnodes", "-x")
    assert pbsnodes_xml_argv("cn01") == ("pbsnodes", "-x", "cn01")
    assert delete_node_argv("cnns2") == ("qmgr", "-c", "delete node cnns2")
    assert offline_node_argv("cnns2", "scale-down: draining") == (
        "pbsnodes", "-o", "-N", "scale-down: draining", "cnns2")
    assert clear_node_argv("vm") == ("pbsnodes", "-c", "vm")
    assert clear_note_argv("vm") == ("pbsnodes", "-N", "n", "vm")
    assert start_scheduling_argv() == ("qmgr", "-c", "set server scheduling = True")


def test_create_node_argv_matches_the_captured_syntax():
    captured = find(load_blocks("05_qmgr_nodes.txt"),
                    "qmgr -c 'create node cn01 np=4,properties=CLOUD'")[0]
    assert create_node_argv("cn01", 4, {"CLOUD"}) == captured.argv
    assert create_node_argv("cn02", 2, {"bigmem", "CLOUD"}) == (
        "qmgr", "-c", 'create node cn02 np=2,properties="CLOUD,bigmem"')
    assert create_node_argv("cn03", 8, ()) == ("qmgr", "-c", "create node cn03 np=8")


def test_create_node_argv_sets_a_note_as_one_quoted_attribute_value():
    # Real TORQUE took this create with its note, the comma inside the quotes included (49_).
    command = """qmgr -c 'create node N np=4,properties=CLOUD,note="some text, with comma"'"""
    captured = find(load_blocks("49_okclients_window.txt"), command)[0]
    assert create_node_argv("N", 4, {"CLOUD"}, "some text, with comma") == captured.argv
    assert create_node_argv("cloud-001", 2, {"bigmem", "CLOUD"},
                            "dynamictorque: slot, no instance") == (
        "qmgr", "-c", 'create node cloud-001 np=2,properties="CLOUD,bigmem",'
                      'note="dynamictorque: slot, no instance"')


def test_create_node_argv_cleans_the_note_as_pbsnodes_notes_are():
    assert create_node_argv("cn01", 2, (), " two\nlines ") == (
        "qmgr", "-c", 'create node cn01 np=2,note="two lines"')


@pytest.mark.parametrize("note", ['say "hi"', '"', 'slot"'])
def test_create_node_argv_refuses_a_note_with_a_double_quote(note):
    # qmgr ends a quoted value at the next double quote: the rest would be read as syntax.
    with pytest.raises(InvalidArgument):
        create_node_argv("cn01", 2, {"CLOUD"}, note)


@pytest.mark.parametrize("note", ["", "n", "\n"])
def test_create_node_argv_refuses_a_note_that_reads_as_no_note(note):
    with pytest.raises(InvalidArgument):
        create_node_argv("cn01", 2, {"CLOUD"}, note)


@pytest.mark.parametrize("np", [0, -1, True, 2.5])
def test_create_node_argv_refuses_a_bad_np(np):
    with pytest.raises(InvalidArgument):
        create_node_argv("cn01", np, {"CLOUD"})


def test_set_node_np_argv_spells_the_directive_qmgr_prints_for_a_node():
    printed = find(load_blocks("03b_qmgr_print_server_final.txt"), "qmgr -c 'p n @default'")[0]
    assert set_node_np_argv("cn01", 4)[2] in printed.stdout.splitlines()
    assert set_node_np_argv("cloud-001", 8) == ("qmgr", "-c", "set node cloud-001 np = 8")


@pytest.mark.parametrize("hostname, np", [("cn01", 0), ("cn01", True), ("-o", 4),
                                          ("cn01;ls", 4)])
def test_set_node_np_argv_refuses_a_bad_name_or_np(hostname, np):
    with pytest.raises(InvalidArgument):
        set_node_np_argv(hostname, np)


@pytest.mark.parametrize("name", ["vm", "cn01", "cloud-001", "node1.cluster.example.org",
                                  "a" * 63, "0node"])
def test_valid_host_names_pass(name):
    assert validate_hostname(name) == name


@pytest.mark.parametrize("name", ["", "-o", "cn01-", "a" * 64, "a..b", "cn 01", "cn01\n",
                                  "cn_01", "cn01;ls", "$(reboot)", "ä"])
def test_invalid_host_names_are_refused(name):
    with pytest.raises(InvalidArgument):
        validate_hostname(name)


def script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_subprocess_runner_returns_status_stdout_and_stderr(tmp_path):
    script(tmp_path, "pbsnodes", 'printf "<Data></Data>\\n"; echo "oops $2" >&2; exit 3\n')
    result = SubprocessRunner(bin_dir=str(tmp_path)).run(["pbsnodes", "-x", "a b"])
    assert result.argv == ("pbsnodes", "-x", "a b")
    assert result.status == 3
    assert result.stdout == b"<Data></Data>\n"
    assert result.stderr == "oops a b\n"     # one argv element, no shell splitting


def test_subprocess_runner_passes_stdin_and_closes_it_otherwise(tmp_path):
    script(tmp_path, "qsub", "cat\n")
    runner = SubprocessRunner(bin_dir=str(tmp_path))
    assert runner.run(["qsub"], stdin=b"#PBS -l nodes=1\n").stdout == b"#PBS -l nodes=1\n"
    assert runner.run(["qsub"], timeout=5).stdout == b""


def test_subprocess_runner_timeout_is_unavailable(tmp_path):
    script(tmp_path, "qstat", "exec sleep 5\n")
    with pytest.raises(CommandTimeout) as caught:
        SubprocessRunner(bin_dir=str(tmp_path), timeout=0.2).run(["qstat", "-x"])
    assert isinstance(caught.value, BatchUnavailable)


def test_subprocess_runner_missing_program_is_unavailable(tmp_path):
    with pytest.raises(BatchUnavailable):
        SubprocessRunner(bin_dir=str(tmp_path)).run(["qstat", "-x"])


def test_subprocess_runner_logs_the_argv_of_every_command(tmp_path, caplog):
    script(tmp_path, "qmgr", "exit 0\n")
    argv = ["qmgr", "-c", "set server scheduling = True"]
    with caplog.at_level(logging.DEBUG, logger="dtserver.batch.torque_commands"):
        SubprocessRunner(bin_dir=str(tmp_path)).run(argv)
    assert shlex.join(argv) in caplog.text


def test_subprocess_runner_refuses_an_empty_argv_and_a_bad_timeout():
    with pytest.raises(InvalidArgument):
        SubprocessRunner().run([])
    with pytest.raises(ValueError):
        SubprocessRunner(timeout=0)
