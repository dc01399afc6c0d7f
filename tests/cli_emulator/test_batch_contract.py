"""One Batch contract, two transports: TorqueBatch over the in-process TorqueEmulator, and
over the CLI emulator's executables run as real subprocesses by SubprocessRunner."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from dtserver.batch import BatchCommandError, BatchUnavailable, NodeBusy
from dtserver.batch.torque import TorqueBatch
from dtserver.batch.torque_commands import CommandResult, Runner, SubprocessRunner
from dtserver.clock import FakeClock
from dtserver.fakes.torque.cli import install_bin
from dtserver.fakes.torque.persistence import EmulatorHome, init_home
from dtserver.fakes.torque.server import TorqueEmulator
from dtserver.model import JobState
from tests.builders import T0
from tests.cli_emulator.support import run

CLOUD = frozenset({"CLOUD"})
SLOT_NOTE = "dynamictorque: slot"
SCRIPT = b"#!/bin/sh\nsleep 300\n"


@dataclass(frozen=True)
class Cluster:
    """A TORQUE server as the Batch port sees it (`runner`), plus what happens outside it:
    `control` takes dt-torque-emulator's words (`mom-up NAME NCPUS`, `clock advance S`,
    `server down|up`)."""

    runner: Runner
    control: Callable[..., None]

    @property
    def batch(self) -> TorqueBatch:
        return TorqueBatch(self.runner)

    def qsub(self, *args: str) -> CommandResult:
        return self.runner.run(["qsub", "-v", "DT_EMULATOR_RUNTIME=300", *args], stdin=SCRIPT)


def in_process() -> Cluster:
    clock = FakeClock(T0)
    emulator = TorqueEmulator(clock, scheduler_iteration=60.0)

    def control(command: str, *args: str) -> None:
        if command == "clock":
            clock.advance(float(args[1]))
        elif command == "mom-up":
            emulator.mom_up(args[0], int(args[1]))
        elif command == "mom-down":
            emulator.mom_down(args[0])
        else:
            emulator.set_down(args[0] == "down")
    return Cluster(emulator, control)


def through_executables(tmp_path: Path) -> Cluster:
    home = EmulatorHome(tmp_path / "torque")
    init_home(home, simulated_start=T0, scheduler_iteration=60.0)
    bin_dir = tmp_path / "bin"
    install_bin(bin_dir, home=home)

    def control(*words: str) -> None:
        done = run(bin_dir, "dt-torque-emulator", *words)
        assert done.returncode == 0, done.stderr
    return Cluster(SubprocessRunner(str(bin_dir), timeout=30.0), control)


@pytest.fixture(params=["in-process", "executables"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Cluster:
    return in_process() if request.param == "in-process" else through_executables(tmp_path)


def slots(cluster: Cluster, *names: str) -> None:
    for name in names:
        cluster.batch.register_slot(name, 8, CLOUD, SLOT_NOTE)


def submitted(cluster: Cluster, *args: str) -> str:
    result = cluster.qsub(*args)
    assert result.status == 0, result.stderr
    return result.stdout.decode().strip()


def test_an_empty_server_has_no_nodes_and_no_jobs(cluster: Cluster) -> None:
    assert cluster.batch.nodes() == ()
    assert tuple(cluster.batch.jobs()) == ()


def test_a_registered_slot_is_an_offline_node_with_its_note(cluster: Cluster) -> None:
    slots(cluster, "vnode-001")

    [node] = cluster.batch.nodes()

    assert (node.name, node.np, node.properties, node.note) \
        == ("vnode-001", 8, CLOUD, SLOT_NOTE)
    assert node.is_offline and node.is_down and not node.has_reported


def test_a_slot_is_registered_again_once_the_server_has_announced_it(cluster: Cluster) -> None:
    slots(cluster, "vnode-001")
    slots(cluster, "vnode-001")        # while the entry settles: left alone, nothing refused
    cluster.control("clock", "advance", "20")
    [announced] = cluster.batch.nodes()
    cluster.batch.register_slot("vnode-001", 4, CLOUD, SLOT_NOTE)

    [node] = cluster.batch.nodes()
    # Announcing the entry dropped the creation's offline flag; the later pass sets it again.
    assert not announced.is_offline and announced.note == SLOT_NOTE
    assert (node.np, node.note) == (4, SLOT_NOTE) and node.is_offline


def test_qsub_accepts_a_job_larger_than_running_capacity_once_slots_exist(
        cluster: Cluster) -> None:
    refused = cluster.qsub("-l", "nodes=2:ppn=4:CLOUD")
    slots(cluster, "vnode-001", "vnode-002")

    job_id = submitted(cluster, "-l", "nodes=2:ppn=4:CLOUD")

    assert refused.status == 190       # cannot locate feasible nodes (15_)
    [job] = cluster.batch.jobs()
    assert (job.id, job.state) == (job_id, JobState.QUEUED)
    assert (job.request.node_slices, job.request.cores) == (2, 8)


def test_a_joined_node_runs_jobs_once_its_mom_reports_and_the_scheduler_is_poked(
        cluster: Cluster) -> None:
    slots(cluster, "vnode-001")
    job_id = submitted(cluster, "-l", "nodes=1:ppn=2:CLOUD")
    cluster.batch.join_node("vnode-001", "10.0.0.1", 8, CLOUD)
    cluster.control("mom-up", "vnode-001", "4")
    cluster.control("clock", "advance", "20")

    [node] = cluster.batch.nodes()
    assert node.states == {"free"} and node.has_reported and node.note is None
    assert node.np == 4                # auto_node_np: the mom's cpus
    assert [job.state for job in cluster.batch.jobs()] == [JobState.QUEUED]

    cluster.batch.poke_scheduler()

    [job] = cluster.batch.jobs()
    assert (job.id, job.state, job.exec_hosts) == (job_id, JobState.RUNNING, ("vnode-001",))


def test_a_node_running_a_job_is_never_released(cluster: Cluster) -> None:
    slots(cluster, "vnode-001")
    job_id = submitted(cluster, "-l", "nodes=1:ppn=2:CLOUD")
    cluster.batch.join_node("vnode-001", "10.0.0.1", 8, CLOUD)
    cluster.control("mom-up", "vnode-001", "4")
    cluster.control("clock", "advance", "20")
    cluster.batch.poke_scheduler()

    with pytest.raises(NodeBusy) as busy:
        cluster.batch.release_node("vnode-001", 8, CLOUD, SLOT_NOTE)

    assert busy.value.jobs == (job_id,)
    [node] = cluster.batch.nodes()
    assert node.is_offline and node.jobs == (job_id,)
    [job] = cluster.batch.jobs()
    assert job.state is JobState.RUNNING

    cluster.control("clock", "advance", "300")
    cluster.batch.release_node("vnode-001", 8, CLOUD, SLOT_NOTE)

    [slot] = cluster.batch.nodes()
    assert slot.is_offline and slot.note == SLOT_NOTE and slot.jobs == ()


def test_offline_and_clear_set_and_remove_the_flag_and_the_note(cluster: Cluster) -> None:
    slots(cluster, "vnode-001")
    cluster.batch.join_node("vnode-001", "10.0.0.1", 8, CLOUD)
    cluster.control("mom-up", "vnode-001", "4")
    cluster.control("clock", "advance", "20")

    cluster.batch.offline_node("vnode-001", "dynamictorque: draining idle")
    [drained] = cluster.batch.nodes()
    cluster.batch.clear_node("vnode-001")
    [cleared] = cluster.batch.nodes()

    assert (drained.states, drained.note) == ({"offline"}, "dynamictorque: draining idle")
    assert (cleared.states, cleared.note) == ({"free"}, None)


def test_an_unknown_node_cannot_be_offlined_although_pbsnodes_exits_0(
        cluster: Cluster) -> None:
    slots(cluster, "vnode-001")

    with pytest.raises(BatchCommandError):
        cluster.batch.offline_node("vnode-404", "dynamictorque: draining idle")


def test_a_stopped_server_is_unavailable_never_empty(cluster: Cluster) -> None:
    slots(cluster, "vnode-001")
    submitted(cluster, "-l", "nodes=1:CLOUD")
    cluster.control("server", "down")

    for call in (cluster.batch.nodes, cluster.batch.jobs, cluster.batch.poke_scheduler,
                 lambda: cluster.batch.offline_node("vnode-001", "dynamictorque: x"),
                 lambda: cluster.batch.release_node("vnode-001", 8, CLOUD, SLOT_NOTE)):
        with pytest.raises(BatchUnavailable):
            call()

    cluster.control("server", "up")
    assert [node.name for node in cluster.batch.nodes()] == ["vnode-001"]
    assert len(tuple(cluster.batch.jobs())) == 1


def test_jobs_expand_arrays_and_keep_to_the_monitored_queues(cluster: Cluster) -> None:
    slots(cluster, "vnode-001")
    array_id = submitted(cluster, "-q", "cloud", "-t", "1-3", "-l", "nodes=1:ppn=1:CLOUD")
    submitted(cluster, "-q", "batch", "-l", "nodes=1:CLOUD,mem=2gb")

    monitored = TorqueBatch(cluster.runner, queues=frozenset({"cloud"})).jobs()
    every = cluster.batch.jobs()

    seq = array_id.partition("[")[0]
    assert [job.id for job in monitored] == [f"{seq}[{index}].vm" for index in (1, 2, 3)]
    memory = [job for job in every if job.queue == "batch"]
    assert [chunk.mem_mb for chunk in memory[0].request.chunks] == [2048]
    assert len(every) == 4
