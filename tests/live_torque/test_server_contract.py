"""The behaviours of a real pbs_server that the emulator must reproduce, run against both:
the okclients window of a new entry, a note given at creation, saved offline flags and
notes across `delete node` + `create node` and a restart, the refused early mom, qsub's
own checks of a script file, and the raw bytes of a user's variables in `qstat -x`. The
emulator runs on a fake clock; real TORQUE (tests/tooling/realtorque) on the wall clock
with a real mom in a network namespace."""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Iterator, Protocol

import pytest

from dtserver.batch.hosts import HostsFile
from dtserver.batch.torque_commands import CommandResult
from dtserver.batch.torque_parse import iter_qstat_jobs, parse_pbsnodes_xml
from dtserver.clock import FakeClock
from dtserver.fakes.torque.server import TorqueEmulator
from dtserver.model import JobState, Node
from tests.builders import T0
from tests.torque_captures import DATA, load_blocks
from tests.tooling.realtorque.moms import CloudServer, MomFleet
from tests.tooling.realtorque.plugin import LiveTorque

SETTLE = 12.0              # past the ~10 s a new entry settles (SEND_DELAY_AFTER_RELOAD)
STATUS_INTERVAL = 20       # the moms' $status_update_time here, to keep the early mom short
SLOT_NOTE = "dynamictorque: slot, no instance"
MOM_ADDRESS = "169.254.80.250"      # outside what the Nova harness hands out
JOB_SCRIPT = b"#!/bin/sh\nsleep 1\n"


class Backend(Protocol):
    def run(self, *argv: str) -> CommandResult: ...
    def submit(self, *argv: str) -> CommandResult: ...
    def wait(self, seconds: float) -> None: ...
    def restart(self) -> None: ...
    def start_mom(self, name: str, cores: int) -> None: ...


@dataclass
class Emulated:
    emulator: TorqueEmulator
    clock: FakeClock

    def run(self, *argv: str) -> CommandResult:
        return self.emulator.run(list(argv))

    def submit(self, *argv: str) -> CommandResult:
        return self.emulator.run(["qsub", *argv], stdin=JOB_SCRIPT)

    def wait(self, seconds: float) -> None:
        self.clock.advance(timedelta(seconds=seconds))
        self.emulator.advance()

    def restart(self) -> None:
        self.emulator.restart()

    def start_mom(self, name: str, cores: int) -> None:
        self.emulator.mom_up(name, cores)


@dataclass
class Real:
    torque: LiveTorque
    fleet: MomFleet
    servers: list[CloudServer]

    def run(self, *argv: str) -> CommandResult:
        result = self.torque.server.run(argv)
        return CommandResult(tuple(argv), result.returncode, result.stdout,
                             result.stderr.decode(errors="replace"))

    def submit(self, *argv: str) -> CommandResult:
        """qsub as the job user: the server refuses root's jobs."""
        result = self.torque.server.run(["qsub", *argv], user=self.torque.job_user,
                                        input=JOB_SCRIPT)
        return CommandResult(("qsub", *argv), result.returncode, result.stdout,
                             result.stderr.decode(errors="replace"))

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    def restart(self) -> None:
        self.torque.server.restart_server()

    def start_mom(self, name: str, cores: int) -> None:
        self.servers.append(CloudServer(f"contract-{name}", name, "ACTIVE", MOM_ADDRESS, cores))
        self.fleet.sync()


@pytest.fixture(params=["emulator", pytest.param("real", marks=pytest.mark.live_torque)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "emulator":
        clock = FakeClock(T0)
        yield Emulated(TorqueEmulator(clock, server_name="dt-head",
                                      mom_status_interval=STATUS_INTERVAL), clock)
        return
    torque: LiveTorque = request.getfixturevalue("clean_torque")
    hosts = HostsFile(Path("/etc/hosts"))
    for name in ("cn01", "cn02"):
        hosts.set(name, MOM_ADDRESS if name == "cn01" else hosts.placeholder_address)
    servers: list[CloudServer] = []
    workdir = torque.install.prefix.parent / "moms" / f"contract-{tmp_path.name}"
    fleet = MomFleet(torque.install, workdir, torque.server_name, lambda: servers,
                     gated=False, status_update_time=STATUS_INTERVAL)
    try:
        yield Real(torque, fleet, servers)
    finally:
        fleet.stop()


def node(server: Backend, name: str) -> Node:
    result = server.run("pbsnodes", "-x", name)
    assert result.status == 0, result.stderr
    (found,) = parse_pbsnodes_xml(result.stdout)
    return found


def created(server: Backend, name: str, note: str | None = None) -> None:
    attributes = "np=2,properties=CLOUD" + (f',note="{note}"' if note else "")
    result = server.run("qmgr", "-c", f"create node {name} {attributes}")
    assert (result.status, result.stderr) == (0, "")


def test_a_new_entry_refuses_state_changes_until_it_settles(server: Backend) -> None:
    capture = {step.command: step for step in load_blocks(DATA / "49_okclients_window.txt")}
    created(server, "cn01", "some text, with comma")
    assert node(server, "cn01").note == "some text, with comma"
    assert node(server, "cn01").is_settling

    refused = server.run("pbsnodes", "-o", "-N", "x", "cn01")
    expected = capture["pbsnodes -o -N x N"]
    assert (refused.status, refused.stderr) == (expected.exit_code,
                                                expected.stderr.replace("N -", "cn01 -"))
    assert node(server, "cn01").note == "some text, with comma"

    server.wait(SETTLE)
    settled = node(server, "cn01")
    assert not settled.is_settling and not settled.is_offline    # creation's flag dropped
    accepted = server.run("pbsnodes", "-o", "-N", "x", "cn01")
    assert (accepted.status, accepted.stderr) == (0, "")
    assert node(server, "cn01").is_offline and node(server, "cn01").note == "x"


def test_delete_and_create_leave_the_saved_note_and_offline_flag_for_a_restart(
        server: Backend) -> None:
    created(server, "cn01", SLOT_NOTE)
    created(server, "cn02", SLOT_NOTE)
    server.wait(SETTLE)
    for name in ("cn01", "cn02"):
        assert server.run("pbsnodes", "-o", "-N", "slot", name).stderr == ""
    # Joined: the entry is deleted and created again, without a note.
    assert server.run("qmgr", "-c", "delete node cn01").status == 0
    created(server, "cn01")
    # A state write while the new cn01 is still offline (settling) saves it offline.
    assert server.run("pbsnodes", "-c", "cn02").stderr == ""
    server.wait(SETTLE)
    assert not node(server, "cn01").is_offline and node(server, "cn01").note is None

    server.restart()
    back = node(server, "cn01")
    assert back.is_offline and back.note == "slot"


def test_a_mom_that_reports_before_its_entry_exists_is_heard_only_at_its_status_interval(
        server: Backend) -> None:
    server.start_mom("cn01", 2)
    server.wait(2)
    created(server, "cn01")
    server.wait(SETTLE + 1)
    assert not node(server, "cn01").is_ready
    deadline = time.monotonic() + 60
    waited = SETTLE + 1
    while not node(server, "cn01").is_ready:
        assert waited < STATUS_INTERVAL + 15 and time.monotonic() < deadline, node(server, "cn01")
        server.wait(1)
        waited += 1


def test_qsub_refuses_dos_and_non_ascii_script_files_before_anything_else(
        server: Backend, tmp_path: Path) -> None:
    steps = {step.command: step
             for step in load_blocks(DATA / "50_qsub_script_file_checks.txt")}
    for name, content in (("dos.sh", b"#!/bin/sh\r\necho hi\r\n"),
                          ("utf8.sh", "#!/bin/sh\necho h\u00e9\n".encode())):
        script = tmp_path / name
        script.write_bytes(content)
        result = server.run("qsub", str(script))
        expected = steps[f"qsub {name}"]
        assert (result.status, result.stderr) == (expected.exit_code, expected.stderr)


def test_bytes_xml_forbids_in_a_users_variables_come_out_raw_and_every_job_reads(
        server: Backend) -> None:
    """51_qsub_control_bytes.txt: qsub takes them, `qstat -x` prints them raw (no longer
    well-formed XML), and the parser still reads every job."""
    created(server, "cn01")             # the emulator's batch queue defaults to nodes=1
    # "\udcff" is how sys.argv holds the byte 0xff; it reaches qsub as that byte.
    for name, value in (("plain", "A=plain"), ("soh", "X=a\x01b"), ("xff", "X=a\udcffb"),
                        ("after", "B=plain")):
        submitted = server.submit("-N", name, "-v", value)
        assert (submitted.status, submitted.stderr) == (0, ""), name
    listing = server.run("qstat", "-x")
    assert listing.status == 0
    assert b",X=a\x01b," in listing.stdout and b",X=a\xffb," in listing.stdout
    assert b"<submit_args>-N soh -v X=a\x01b</submit_args>" in listing.stdout
    jobs = list(iter_qstat_jobs(io.BytesIO(listing.stdout)))
    assert len({job.id for job in jobs}) == 4
    assert all(job.state is JobState.QUEUED for job in jobs)
