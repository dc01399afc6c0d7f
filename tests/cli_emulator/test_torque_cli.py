"""The CLI emulator's shared state: every command is its own process, as with real TORQUE."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dtserver.batch.torque import TorqueBatch
from dtserver.batch.torque_commands import SubprocessRunner
from dtserver.clock import FakeClock, SystemClock
from dtserver.fakes.torque.cli import install_bin, main
from dtserver.fakes.torque.persistence import (
    HOME_VARIABLE, EmulatorHome, EmulatorHomeError, init_home)
from dtserver.fakes.torque.server import TorqueEmulator
from dtserver.model import JobState
from tests.builders import T0
from tests.cli_emulator.support import TIMEOUT, node_states, ok, run, shell, xml_jobs
from tests.torque_captures import load_blocks

CONTROL = "dt-torque-emulator"
CREATE_CN01 = ("qmgr", "-c", "create node cn01 np=4,properties=CLOUD")


def test_a_node_created_by_one_process_is_seen_by_the_next(bin_dir: Path) -> None:
    ok(bin_dir, *CREATE_CN01)

    assert node_states(bin_dir) == {"cn01": "down,offline,MOM-list-not-sent"}


def test_the_simulated_clock_moves_only_when_told(bin_dir: Path) -> None:
    ok(bin_dir, *CREATE_CN01)
    ok(bin_dir, CONTROL, "mom-up", "cn01", "4")
    assert ok(bin_dir, CONTROL, "clock", "advance", "14.5") \
        == f"{(T0 + timedelta(seconds=14.5)).isoformat()} simulated\n"
    assert node_states(bin_dir) == {"cn01": "down"}

    ok(bin_dir, CONTROL, "clock", "advance", "0.5")

    assert node_states(bin_dir) == {"cn01": "free"}      # 15 s after create (44_)


def test_a_dead_mom_is_marked_down_only_when_the_server_notices(bin_dir: Path) -> None:
    ok(bin_dir, *CREATE_CN01)
    ok(bin_dir, CONTROL, "mom-up", "cn01", "4")
    ok(bin_dir, CONTROL, "clock", "set", (T0 + timedelta(seconds=20)).isoformat())
    ok(bin_dir, CONTROL, "mom-down", "cn01")
    ok(bin_dir, CONTROL, "clock", "advance", "179")
    assert node_states(bin_dir) == {"cn01": "free"}

    ok(bin_dir, CONTROL, "clock", "advance", "1")

    assert node_states(bin_dir) == {"cn01": "down"}


def test_the_clock_never_runs_backwards_and_a_refused_command_changes_nothing(
        bin_dir: Path, home: EmulatorHome) -> None:
    later = (T0 + timedelta(hours=1)).isoformat()
    ok(bin_dir, CONTROL, "clock", "set", later)
    saved = home.state_file.read_bytes()

    back = run(bin_dir, CONTROL, "clock", "set", T0.isoformat())

    assert back.returncode == 1
    assert b"time does not run backwards" in back.stderr
    assert home.state_file.read_bytes() == saved
    assert ok(bin_dir, CONTROL, "clock") == f"{later} simulated\n"


def test_a_home_without_a_simulated_clock_follows_real_time(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = EmulatorHome(tmp_path / "real")
    init_home(home)
    before = SystemClock().now()

    assert main([CONTROL, "--home", str(home.path), "clock"]) == 0

    shown, mode = capsys.readouterr().out.split()
    assert mode == "real"
    assert before <= datetime.fromisoformat(shown) <= before + timedelta(seconds=TIMEOUT)


def test_concurrent_commands_run_one_after_the_other(bin_dir: Path, tmp_path: Path) -> None:
    ok(bin_dir, *CREATE_CN01)
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\nsleep 1\n")
    qsubs = [subprocess.Popen([str(bin_dir / "qsub"), "-N", f"c{index}", str(script)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for index in range(6)]
    ids = []
    for qsub in qsubs:
        stdout, stderr = qsub.communicate(timeout=TIMEOUT)
        assert qsub.returncode == 0, stderr
        ids.append(stdout.decode().strip())

    assert sorted(ids) == [f"{number}.vm" for number in range(6)]
    assert sorted(xml_jobs(bin_dir)) == sorted(ids)


def test_the_state_is_one_json_file_replaced_whole(bin_dir: Path, home: EmulatorHome) -> None:
    ok(bin_dir, *CREATE_CN01)
    ok(bin_dir, "pbsnodes", "-N", "slot", "cn01")    # a note alone: taken in the window

    assert sorted(path.name for path in home.path.iterdir()) \
        == ["server.json", "server.lock", "torque.cfg"]
    document = json.loads(home.state_file.read_text())
    assert document["format"] == 1
    assert document["clock"] == T0.isoformat()
    assert document["state"]["nodes"]["cn01"]["note"] == "slot"


def test_emulator_state_survives_a_json_round_trip() -> None:
    clock = FakeClock(T0)
    original = TorqueEmulator(clock, scheduler_iteration=60.0)
    for line in ("qmgr -c 'create node cn01 np=4,properties=CLOUD'",
                 "qmgr -c 'create node cn02 np=2'"):
        assert original.run(shlex.split(line)).status == 0
    original.mom_up("cn01", 4)
    clock.advance(20)
    original.submit(resources={"nodes": "1:ppn=2"}, runtime=120, array="1-3")
    original.submit(resources={"nodes": "1:ppn=4"}, runtime=30, hold=True)
    original.run(["pbsnodes", "-o", "-N", "drain me", "cn02"])
    original.mom_down("cn01")

    copy = TorqueEmulator.from_state(clock, json.loads(json.dumps(original.to_state())),
                                     scheduler_iteration=60.0)
    outputs = []
    for emulator in (original, copy):
        emulator.mom_up("cn01", 4)
        emulator.submit(resources={"nodes": "1:ppn=1"}, runtime=60)
        outputs.append([emulator.run(shlex.split(line)).stdout for line in (
            "qstat -x -t", "pbsnodes -x", "qmgr -c 'p s'")])
    clock.advance(400)
    for emulator, seen in zip((original, copy), outputs):
        seen.append(emulator.run(["qstat", "-x", "-t"]).stdout)

    assert outputs[0] == outputs[1]


def test_a_saved_state_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="not a TorqueEmulator state"):
        TorqueEmulator.from_state(FakeClock(T0), {"now": 0.0})


def test_init_refuses_to_replace_a_server_unless_forced(bin_dir: Path,
                                                        home: EmulatorHome) -> None:
    ok(bin_dir, *CREATE_CN01)
    with pytest.raises(EmulatorHomeError, match="exists"):
        init_home(home, simulated_start=T0)

    init_home(home, simulated_start=T0, force=True)

    assert run(bin_dir, "pbsnodes", "-x").returncode == 1    # no node list any more


def test_a_command_without_a_server_says_how_to_make_one(tmp_path: Path) -> None:
    install_bin(tmp_path / "bin")
    unset = {key: value for key, value in os.environ.items() if key != HOME_VARIABLE}
    empty = {**unset, HOME_VARIABLE: str(tmp_path / "nothing")}

    no_variable = run(tmp_path / "bin", "qstat", "-x", env=unset)
    no_server = run(tmp_path / "bin", "qstat", "-x", env=empty)

    assert (no_variable.returncode, no_variable.stdout) == (2, b"")
    assert f"{HOME_VARIABLE} is not set".encode() in no_variable.stderr
    assert (no_server.returncode, no_server.stdout) == (2, b"")
    assert b"dt-torque-emulator init" in no_server.stderr


def test_commands_installed_without_a_home_use_the_variable_when_they_run(
        tmp_path: Path, home: EmulatorHome) -> None:
    install_bin(tmp_path / "loose")

    done = run(tmp_path / "loose", "qmgr", "-c", "create node cn09 np=1",
               env={**os.environ, HOME_VARIABLE: str(home.path)})

    assert done.returncode == 0, done.stderr
    assert "cn09" in json.loads(home.state_file.read_text())["state"]["nodes"]


def test_with_a_hosts_file_only_listed_names_can_become_nodes(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.0.0.5 vnode-001 # BEGIN dynamictorque\n")
    home = EmulatorHome(tmp_path / "torque")
    init_home(home, simulated_start=T0, hosts_file=hosts)
    install_bin(tmp_path / "bin", home=home)

    listed = run(tmp_path / "bin", "qmgr", "-c", "create node vnode-001 np=2")
    unlisted = run(tmp_path / "bin", "qmgr", "-c", "create node vnode-002 np=2")

    assert listed.returncode == 0
    assert (unlisted.returncode, unlisted.stderr) \
        == (2, b"qmgr obj=vnode-002 svr=default: Unknown node \n")


def test_a_restarted_server_rebuilds_its_nodes_from_what_it_saved(bin_dir: Path) -> None:
    ok(bin_dir, *CREATE_CN01)
    ok(bin_dir, "pbsnodes", "-N", "slot", "cn01")
    ok(bin_dir, CONTROL, "mom-up", "cn01", "4")

    ok(bin_dir, CONTROL, "server", "restart")

    assert node_states(bin_dir) == {"cn01": "down"}
    assert "     note = slot\n" in ok(bin_dir, "pbsnodes", "-a", "cn01")
    ok(bin_dir, CONTROL, "clock", "advance", "16")
    assert node_states(bin_dir) == {"cn01": "free"}


@pytest.mark.parametrize("trqauthd", [True, False], ids=["trqauthd-down", "server-down"])
def test_clients_of_a_stopped_server_answer_as_in_the_capture(
        bin_dir: Path, tmp_path: Path, trqauthd: bool) -> None:
    blocks = load_blocks("48_server_down.txt")
    blocks = blocks[:4] if trqauthd else blocks[4:]
    ok(bin_dir, *CREATE_CN01)
    ok(bin_dir, CONTROL, "server", "down", *(["--trqauthd"] if trqauthd else []))

    for block in blocks:
        done = shell(bin_dir, block.command, cwd=tmp_path)
        assert (done.returncode, done.stdout.decode(), done.stderr.decode()) \
            == (block.exit_code, block.stdout, block.stderr), block.source

    ok(bin_dir, CONTROL, "server", "up")
    assert node_states(bin_dir) == {"cn01": "down,offline,MOM-list-not-sent"}



def test_bytes_xml_forbids_in_a_variable_come_out_raw_and_every_job_still_reads(
        bin_dir: Path, tmp_path: Path) -> None:
    """51_qsub_control_bytes.txt through real processes: qsub gets the bytes in its argv,
    qstat -x prints them raw, and TorqueBatch over subprocesses reads every job."""
    ok(bin_dir, *CREATE_CN01)
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\nsleep 1\n")
    for name, value in (("plain", b"A=plain"), ("soh", b"X=a\x01b"), ("xff", b"X=a\xffb"),
                        ("after", b"B=plain")):
        done = subprocess.run([bytes(bin_dir / "qsub"), b"-N", name.encode(), b"-v", value,
                               bytes(script)], capture_output=True, timeout=TIMEOUT,
                              check=False)
        assert done.returncode == 0, done.stderr

    raw = run(bin_dir, "qstat", "-x").stdout
    assert b",X=a\x01b," in raw and b",X=a\xffb," in raw
    jobs = TorqueBatch(SubprocessRunner(str(bin_dir))).jobs()
    assert [job.id for job in jobs] == ["0.vm", "1.vm", "2.vm", "3.vm"]
    assert all(job.state is JobState.QUEUED for job in jobs)
