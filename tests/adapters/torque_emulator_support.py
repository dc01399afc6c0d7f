"""What the test_torque_emulator_* modules share: a TorqueEmulator on a FakeClock driven
by command lines as the reconciler runs them, and the answers of real TORQUE (the captures
in tests/data/torque) the tests expect.

The golden comparisons with the real captures are in test_emulator_fidelity.py.
"""
from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from dtserver.batch.torque_commands import CommandResult
from dtserver.clock import FakeClock
from dtserver.fakes.torque.server import TorqueEmulator
from tests.torque_captures import find, load_blocks

START = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
NOT_ENOUGH = "Not Running: Not enough of the right type of nodes are available"
SLOT_NOTE = "dynamictorque: slot, no instance"
# Measured on real TORQUE (49_): pbsnodes' answer to a state change in the creation window.
WINDOW_REFUSAL = find(load_blocks("49_okclients_window.txt"), "pbsnodes -o -N x N")[0].stderr
OKCLIENTS_NOT_SENT = WINDOW_REFUSAL.removeprefix("Error setting note attribute for N - ")
SCRIPT_FILE_REFUSALS = {capture.command: capture
                        for capture in load_blocks("50_qsub_script_file_checks.txt")}


def emulator(**options: object) -> tuple[FakeClock, TorqueEmulator]:
    clock = FakeClock(START)
    return clock, TorqueEmulator(clock, **options)


def sh(emu: TorqueEmulator, line: str, stdin: bytes | None = None) -> CommandResult:
    return emu.run(shlex.split(line), stdin=stdin)


def ok(emu: TorqueEmulator, line: str, stdin: bytes | None = None) -> str:
    result = sh(emu, line, stdin)
    assert result.status == 0, (line, result.stderr)
    return result.stdout.decode()


def cluster(clock: FakeClock, emu: TorqueEmulator, *nodes: tuple[str, int, str]) -> None:
    """Create (name, cpus, properties) nodes with a mom each, and wait until they are free."""
    for name, cpus, properties in nodes:
        extra = f",properties={properties}" if properties else ""
        ok(emu, f"qmgr -c 'create node {name} np={cpus}{extra}'")
        emu.mom_up(name, ncpus=cpus)
    clock.advance(20)


def poke(emu: TorqueEmulator) -> None:
    ok(emu, "qmgr -c 'set server scheduling = True'")


def xml_jobs(emu: TorqueEmulator, line: str = "qstat -x -t") -> dict[str, ET.Element]:
    data = ET.fromstring(ok(emu, line).split("\n", 1)[1])
    return {job.findtext("Job_Id"): job for job in data}


def window_refusal(name: str) -> str:
    return WINDOW_REFUSAL.replace(" for N - ", f" for {name} - ")


def restarted(clock: FakeClock, emu: TorqueEmulator) -> TorqueEmulator:
    """A copy of `emu`, made from its saved JSON state, whose pbs_server restarted."""
    copy = TorqueEmulator.from_state(clock, json.loads(json.dumps(emu.to_state())))
    copy.restart()
    return copy


def states_and_notes(emu: TorqueEmulator) -> dict[str, tuple[str, str | None]]:
    return {node.name: (node.state, node.note) for node in emu.nodes()}
