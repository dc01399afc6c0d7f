"""deploy/torque/setup_torque.py: the qmgr commands it prints and runs.

Checked three ways: against the qmgr commands the real TORQUE 6.1 accepted (captures in
tests/data/torque), by feeding them to the TorqueEmulator, and by qsub's submit-time
feasibility check, which refuses a `-l nodes=` request no node entry could satisfy.
"""
from __future__ import annotations

import importlib.util
import io
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Sequence

import pytest

from dtserver.batch.hosts import BEGIN_MARKER, HostsFile
from dtserver.batch.torque_commands import CommandResult
from dtserver.clock import FakeClock
from dtserver.config import build_policy, load_settings
from dtserver.fakes.torque.server import TorqueEmulator
from dtserver.model import Flavor
from dtserver.planning.repair import SLOT_NOTE
from tests.builders import T0
from tests.torque_captures import load_blocks

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "torque" / "setup_torque.py"
REFERENCE_FILES = ("02_qmgr_basic_setup.txt", "04_qmgr_cloud_queue.txt", "05_qmgr_nodes.txt",
                   "42_cloud_queue_neednodes_variants.txt", "47_scheduler_poke.txt")
SCRIPT_BODY = b"#!/bin/sh\nhostname\n"
FLAVORS = ("--flavor", "m1.small=2", "--flavor", "m1.large=4")
NOTE = f'note="{SLOT_NOTE}"'
# Forms the real TORQUE 6.1.3 accepted that no capture in tests/data/torque holds yet: a
# note among the attributes of `create node` (measured by an operator on 6.1.3).
ACCEPTED_WITHOUT_CAPTURE = frozenset({'create node NODE np=N,properties=CLOUD,note="NOTE"',
                                      'create node NODE np=N,properties="PROPERTIES",'
                                      'note="NOTE"'})


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("setup_torque", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is being made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


setup_torque = load_script()


def config(tmp_path: Path, extra: str = "", *, pools: str = "") -> Path:
    """Three slots in the pool [cloud] defines, or the given [pool NAME] sections."""
    size = "" if pools else "number_of_dynamic_worker_nodes: 3\n"
    path = tmp_path / "dynamic_torque.conf"
    path.write_text(f"[global]\nstate_dir: {tmp_path / 'state'}\n{extra}"
                    "[cloud]\ncloud_image_uuid: image-1\nworker_node_flavor: m1.small,m1.large\n"
                    f"{size}{pools}", encoding="utf-8")
    return path


def no_lookups(name: str) -> tuple[str, str]:
    raise AssertionError(f"looked up {name}")


def resolving(names: dict[str, tuple[str, str]]) -> Callable[[str], tuple[str, str]]:
    """A resolver for `names`: host -> (its address, the name that address resolves to)."""
    def resolve(host: str) -> tuple[str, str]:
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return names[host]
    return resolve


def run(argv: Sequence[str], runner: object | None = None, *,
        resolve: Callable[[str], tuple[str, str]] = no_lookups) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = setup_torque.main(list(argv), runner=runner, resolve=resolve, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def printed_commands(output: str) -> list[tuple[str, ...]]:
    return [tuple(shlex.split(line)) for line in output.splitlines() if line.startswith("qmgr ")]


def fresh_server(**options: object) -> TorqueEmulator:
    """A server with no nodes and only the batch queue (the emulator starts with a cloud
    queue already set up; a new site does not have one)."""
    emulator = TorqueEmulator(FakeClock(T0), **options)
    assert emulator.run(("qmgr", "-c", "delete queue cloud")).status == 0
    return emulator


def qsub(emulator: TorqueEmulator, *args: str) -> CommandResult:
    return emulator.run(("qsub", *args), stdin=SCRIPT_BODY)


class NoCommands:
    def run(self, argv: Sequence[str], **_: object) -> CommandResult:
        raise AssertionError(f"a dry run ran {argv}")


# --- what the dry run prints --------------------------------------------------------------

def test_dry_run_prints_the_qmgr_commands_and_runs_none(tmp_path: Path) -> None:
    status, output, _ = run(["-c", str(config(tmp_path)), "--dry-run", *FLAVORS], NoCommands())
    assert status == 0
    assert [command[2] for command in printed_commands(output)] == [
        "set server auto_node_np = True",
        "create queue cloud",
        "set queue cloud queue_type = Execution",
        "set queue cloud resources_default.neednodes = 1:CLOUD",
        "set queue cloud enabled = True",
        "set queue cloud started = True",
        f"create node cloud-001 np=4,properties=CLOUD,{NOTE}",
        f"create node cloud-002 np=4,properties=CLOUD,{NOTE}",
        f"create node cloud-003 np=4,properties=CLOUD,{NOTE}",
        "set server scheduling = True",
    ]
    assert output.splitlines()[-1] == "SUBMITFILTER /usr/local/sbin/dynamictorque-submitfilter"


def test_the_readme_shows_what_the_dry_run_prints(tmp_path: Path) -> None:
    readme = (ROOT / "deploy" / "torque" / "README.md").read_text(encoding="utf-8")
    shown = readme.split("the dry run prints:\n\n```\n", 1)[1].split("```", 1)[0]
    path = config(tmp_path, "[torque]\ntorque_server: head\n")
    _, output, _ = run(["-c", str(path), "--dry-run", "--flavor", "m1.small=1",
                        "--flavor", "m1.large=4", "--manager", "dynamictorque"],
                       resolve=resolving({"head": ("10.0.0.1", "head")}))
    assert output.replace(str(path), "/etc/dynamictorque/dynamic_torque.conf") == shown


def test_dry_run_lines_are_comments_commands_or_the_submitfilter_line(tmp_path: Path) -> None:
    _, output, _ = run(["-c", str(config(tmp_path)), "--dry-run", "--slot-np", "8"])
    for line in output.splitlines():
        assert line.startswith(("# ", "qmgr -c ", "SUBMITFILTER /")), line


def test_slot_np_is_the_largest_flavor_unless_given(tmp_path: Path) -> None:
    path = config(tmp_path)
    _, by_flavor, _ = run(["-c", str(path), "--dry-run", *FLAVORS])
    _, given, _ = run(["-c", str(path), "--dry-run", "--slot-np", "16"])
    assert f"create node cloud-001 np=4,properties=CLOUD,{NOTE}" in by_flavor
    assert f"create node cloud-001 np=16,properties=CLOUD,{NOTE}" in given


def test_slot_names_are_the_reconcilers(tmp_path: Path) -> None:
    path = config(tmp_path, pools="[pool gpu]\nflavors: g1.large\nproperties: CLOUD,GPU\n"
                                   "max_nodes: 2\nname_prefix: gpu-\n[pool big]\nmax_nodes: 12\n")
    settings = load_settings(path)
    flavors = {name: Flavor(name, cores, 1024)
               for name, cores in (("m1.small", 2), ("m1.large", 4), ("g1.large", 8))}
    policy = build_policy(settings, flavors)
    slots = setup_torque.pool_slots(settings, flavor_cores={
        name: flavor.cores for name, flavor in flavors.items()})
    assert [item.names for item in slots] == [pool.slot_names for pool in policy.pools]
    assert [item.np for item in slots] == [pool.slot_np for pool in policy.pools]
    assert slots[1].names[-1] == "big-012"


def test_pools_with_several_properties_get_them_quoted_and_share_the_queue_one(
        tmp_path: Path) -> None:
    path = config(tmp_path, pools="[pool gpu]\nflavors: g1.large\nproperties: CLOUD,GPU\n"
                                   "max_nodes: 1\n[pool cpu]\nmax_nodes: 1\n")
    status, output, _ = run(["-c", str(path), "--dry-run", *FLAVORS, "--flavor", "g1.large=8"])
    assert status == 0
    assert [command[2] for command in printed_commands(output)
            if command[2].startswith("create node")] == [
        f'create node gpu-001 np=8,properties="CLOUD,GPU",{NOTE}',
        f"create node cpu-001 np=4,properties=CLOUD,{NOTE}"]
    assert "set queue cloud resources_default.neednodes = 1:CLOUD" in output


def test_a_manager_is_added_as_the_reference_adds_one(tmp_path: Path) -> None:
    _, output, _ = run(["-c", str(config(tmp_path)), "--dry-run", "--slot-np", "2",
                        "--manager", "dynamictorque@head"])
    assert printed_commands(output)[0] == (
        "qmgr", "-c", "set server managers += dynamictorque@head")


def test_a_manager_without_host_is_named_as_pbs_server_names_this_host(
        tmp_path: Path) -> None:
    """pbs_server names a client by its source address; on the server host that is the
    address torque_server resolves to, so HOST is that address's name (not hostname)."""
    path = config(tmp_path, "[torque]\ntorque_server: dt-head\n")
    status, output, _ = run(["-c", str(path), "--dry-run", "--slot-np", "2",
                             "--manager", "dynamictorque", "--manager", "admin@login1"],
                            resolve=resolving({"dt-head": ("169.254.80.1", "head")}))
    assert status == 0
    assert "# pbs_server names this host head (torque_server dt-head is 169.254.80.1)" \
        in output.splitlines()
    assert [command[2] for command in printed_commands(output)[:2]] == [
        "set server managers += dynamictorque@head", "set server managers += admin@login1"]


def test_a_loopback_torque_server_makes_the_manager_user_at_localhost(tmp_path: Path) -> None:
    path = config(tmp_path, "[torque]\ntorque_server: localhost\n")
    status, output, _ = run(["-c", str(path), "--dry-run", "--slot-np", "2",
                             "--manager", "dynamictorque"],
                            resolve=resolving({"localhost": ("127.0.0.1", "localhost")}))
    assert status == 0
    assert printed_commands(output)[0][2] == "set server managers += dynamictorque@localhost"


def test_a_manager_without_host_needs_torque_server_to_resolve(tmp_path: Path) -> None:
    path = config(tmp_path, "[torque]\ntorque_server: nosuch\n")
    status, output, error = run(["-c", str(path), "--dry-run", "--slot-np", "2",
                                 "--manager", "dynamictorque"], resolve=resolving({}))
    assert status == 2
    assert "torque_server nosuch" in error and "dynamictorque@HOST" in error
    assert "qmgr" not in output


@pytest.mark.parametrize("option", [("--queue", "cloud q"), ("--queue", "c'q"),
                                    ("--manager", "dynamic torque"),
                                    ("--manager", "a@b, c@d"), ("--flavor", "m1.small=0"),
                                    ("--slot-np", "-1"), ("--queue-property", "CLOUD,GPU")])
def test_values_that_would_break_a_qmgr_command_are_refused(
        tmp_path: Path, option: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["-c", str(config(tmp_path)), "--dry-run", "--slot-np", "2", *option]
    try:
        status, _, _ = run(argv, NoCommands())
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    capsys.readouterr()


def test_without_flavor_sizes_the_script_says_what_to_pass(tmp_path: Path) -> None:
    status, _, error = run(["-c", str(config(tmp_path)), "--dry-run",
                            "--flavor", "m1.small=2"])
    assert status == 2
    assert "m1.large" in error and "--flavor" in error


def test_a_queue_the_reconciler_does_not_monitor_is_refused(tmp_path: Path) -> None:
    path = config(tmp_path, "[torque]\ntorque_queue_to_monitor: batch\n")
    status, _, error = run(["-c", str(path), "--dry-run", "--slot-np", "2"])
    assert status == 2
    assert "torque_queue_to_monitor" in error


def test_a_broken_config_is_reported_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "dynamic_torque.conf"
    path.write_text("[cloud]\ncloud_image_uuid: image-1\nworker_node_flavr: m1.small\n",
                    encoding="utf-8")
    status, _, error = run(["-c", str(path), "--dry-run", "--slot-np", "2"])
    assert status == 2
    assert "worker_node_flavor" in error


def test_the_script_runs_as_a_file(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "-c", str(config(tmp_path)),
                             "--dry-run", "--slot-np", "2"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert f"qmgr -c 'create node cloud-003 np=2,properties=CLOUD,{NOTE}'" in result.stdout


# --- the real TORQUE's syntax -------------------------------------------------------------

def shape(directive: str) -> str:
    """A qmgr directive with its names and numbers abstracted, spacing normalised."""
    text = re.sub(r"\s*([=,])\s*", r"\1", directive)
    text = re.sub(r"\s*(\+=|-=)\s*", r" \1 ", text)
    text = re.sub(r"^create node \S+", "create node NODE", text)
    text = re.sub(r'properties="[^"]*"', 'properties="PROPERTIES"', text)
    text = re.sub(r'note="[^"]*"', 'note="NOTE"', text)
    text = re.sub(r"\b[\w.-]+@[\w.-]+\b", "USER@HOST", text)
    return re.sub(r"\d+", "N", text)


def reference_shapes() -> set[str]:
    """Shapes of the qmgr -c directives the real server accepted (exit 0)."""
    shapes = set()
    for name in REFERENCE_FILES:
        for capture in load_blocks(name):
            argv = capture.argv
            if capture.exit_code == 0 and argv[:2] == ("qmgr", "-c") and len(argv) == 3:
                shapes.add(shape(argv[2]))
    return shapes


def test_every_printed_command_has_a_form_the_real_torque_accepted(tmp_path: Path) -> None:
    path = config(tmp_path, pools="[pool gpu]\nflavors: g1.large\nproperties: CLOUD,GPU\n"
                                   "max_nodes: 1\n[pool cpu]\nmax_nodes: 2\n")
    _, output, _ = run(["-c", str(path), "--dry-run", *FLAVORS, "--flavor", "g1.large=8",
                        "--manager", "dynamictorque@head"])
    accepted = reference_shapes() | ACCEPTED_WITHOUT_CAPTURE
    commands = printed_commands(output)
    assert len(commands) == 11
    for command in commands:
        assert command[:2] == ("qmgr", "-c") and len(command) == 3
        assert shape(command[2]) in accepted, command[2]


def test_the_shapes_tell_a_rejected_form_apart() -> None:
    """The real server refused attributes separated by a space (05_, exit 2)."""
    assert shape("create node cn04 np=4 properties=CLOUD") not in reference_shapes()


# --- the emulator ---------------------------------------------------------------------------

def test_the_emulator_accepts_every_command_and_then_qsub_finds_feasible_nodes(
        tmp_path: Path) -> None:
    emulator = fresh_server()
    assert qsub(emulator, "-l", "nodes=1:ppn=4:CLOUD").status == 190
    _, output, _ = run(["-c", str(config(tmp_path)), "--dry-run", *FLAVORS,
                        "--manager", "dynamictorque@head"])
    for command in printed_commands(output):
        result = emulator.run(command)
        assert result.status == 0, (command, result.stderr)
    accepted = qsub(emulator, "-l", "nodes=1:ppn=4:CLOUD")
    assert accepted.status == 0, accepted.stderr
    assert accepted.stdout.decode().strip().endswith(".vm")
    # Every slot has the largest flavor's cores, and no more.
    assert qsub(emulator, "-l", "nodes=3:ppn=4:CLOUD").status == 0
    assert qsub(emulator, "-l", "nodes=1:ppn=5:CLOUD").status == 190


def test_a_cloud_queue_job_without_a_nodes_spec_gets_neednodes_1_cloud(tmp_path: Path) -> None:
    emulator = fresh_server()
    _, output, _ = run(["-c", str(config(tmp_path)), "--dry-run", "--slot-np", "2"])
    for command in printed_commands(output):
        emulator.run(command)
    submitted = qsub(emulator, "-q", "cloud")
    assert submitted.status == 0, submitted.stderr
    job = emulator.job(submitted.stdout.decode().strip())
    assert job.resources["neednodes"] == "1:CLOUD"


def test_applying_creates_the_slots_and_a_second_run_finds_them_present(
        tmp_path: Path) -> None:
    emulator = fresh_server()
    path = config(tmp_path)
    status, output, error = run(["-c", str(path), *FLAVORS], emulator)
    assert status == 0, error
    assert {(node.name, node.np, node.properties, node.note) for node in emulator.nodes()} == {
        (f"cloud-00{index}", 4, ("CLOUD",), SLOT_NOTE) for index in (1, 2, 3)}
    assert "ok       qmgr -c 'create queue cloud'" in output
    status, output, error = run(["-c", str(path), *FLAVORS], emulator)
    assert status == 0, error
    assert "present  qmgr -c 'create queue cloud'" in output
    assert ("present  qmgr -c 'create node cloud-001 np=4,properties=CLOUD,"
            f"{NOTE}'") in output


def test_applying_gives_slot_names_a_placeholder_address_first(tmp_path: Path) -> None:
    hosts_path = tmp_path / "hosts"
    hosts_path.write_text("127.0.0.1\tlocalhost\n", encoding="utf-8")
    hosts = HostsFile(hosts_path)
    # As the real server: a node name must resolve, here through our hosts block.
    emulator = fresh_server(resolvable=lambda name: hosts.address(name) is not None)
    path = config(tmp_path, f"[torque]\nhosts_file: {hosts_path}\n")
    status, _, error = run(["-c", str(path), "--slot-np", "2"], emulator)
    assert status == 0, error
    assert hosts.entries() == {f"cloud-00{index}": hosts.placeholder_address
                               for index in (1, 2, 3)}
    assert hosts_path.read_text(encoding="utf-8").startswith(
        f"127.0.0.1\tlocalhost\n{BEGIN_MARKER}\n")
    assert len(emulator.nodes()) == 3


def test_dry_run_lists_the_hosts_entries_it_would_add_and_writes_none(tmp_path: Path) -> None:
    hosts_path = tmp_path / "hosts"
    path = config(tmp_path, f"[torque]\nhosts_file: {hosts_path}\n")
    status, output, _ = run(["-c", str(path), "--dry-run", "--slot-np", "2"], NoCommands())
    assert status == 0
    assert "# hosts: 127.0.0.2\tcloud-003" in output.splitlines()
    assert not hosts_path.exists()


def test_a_failing_command_stops_the_run_with_exit_1(tmp_path: Path) -> None:
    emulator = fresh_server(resolvable=lambda name: False)
    status, output, error = run(["-c", str(config(tmp_path)), "--slot-np", "2"], emulator)
    assert status == 1
    assert "create node cloud-001" in error and "Unknown node" in error
    assert "cloud-002" not in output + error
    assert "SUBMITFILTER" not in output
