"""A whole elastic cluster through the CLI emulator, with no TORQUE call made in-process.

Users submit with the `qsub` executable; the reconciler reads and changes TORQUE only
through TorqueBatch over SubprocessRunner (real qstat, pbsnodes and qmgr processes) and
Nova through FakeNova; when FakeNova turns a server ACTIVE, its pbs_mom starts with
`dt-torque-emulator mom-up`, and a deleted server's mom stops with `mom-down`. The test's
FakeClock and the emulator's simulated clock move together (`dt-torque-emulator clock set`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from dtserver.batch.torque import TorqueBatch
from dtserver.batch.torque_commands import SubprocessRunner
from dtserver.bootstrap import build_nova_cloud
from dtserver.clock import FakeClock
from dtserver.fakes.nova import FakeNova
from dtserver.fakes.nova_resources import FakeServer
from dtserver.fakes.torque.cli import install_bin
from dtserver.fakes.torque.persistence import EmulatorHome, init_home, open_server
from dtserver.fakes.torque.state import EmulatedJob, EmulatedNode
from dtserver.fakes.world import DEMO_FLAVORS, DEMO_IMAGE, play_worker_user_data
from dtserver.model import NodeState
from dtserver.policy import Policy, Pool
from dtserver.reconcile.loop import Reconciler, Report
from dtserver.store.sqlite import SqliteStore
from tests.builders import T0
from tests.cli_emulator.support import run

CLUSTER_ID = "cli"
POLICY = Policy(
    pools=(Pool("cloud", DEMO_FLAVORS, DEMO_IMAGE, max_nodes=4, name_prefix="vnode-"),),
    max_cores=32, idle_timeout=timedelta(seconds=60), boot_timeout=timedelta(seconds=600),
    down_timeout=timedelta(seconds=300), hint_ttl=timedelta(seconds=20))
SCRIPT = "#!/bin/sh\n#PBS -l walltime=00:10:00\nsleep 120\n"
# qsub arguments; each job runs 120 s.
JOBS = (
    ("-N", "mpi", "-l", "nodes=2:ppn=4"),
    ("-N", "bigmem", "-l", "nodes=1:ppn=1,mem=2gb"),
    ("-N", "arr", "-t", "1-3", "-l", "nodes=1:ppn=1"),
    ("-N", "procs", "-l", "procs=2"),
    ("-N", "cloudq", "-q", "cloud", "-l", "nodes=1:ppn=2:CLOUD"),
)


@dataclass
class CliCluster:
    path: Path
    clock: FakeClock = field(default_factory=lambda: FakeClock(T0))
    reports: list[Report] = field(default_factory=list)
    running_before: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.home = EmulatorHome(self.path / "torque")
        init_home(self.home, simulated_start=T0, scheduler_iteration=60.0,
                  keep_completed=7200.0)
        self.bin_dir = self.path / "bin"
        install_bin(self.bin_dir, home=self.home)
        (self.path / "job.sh").write_text(SCRIPT)
        self.nova = FakeNova(self.clock, flavors=DEMO_FLAVORS, images=(DEMO_IMAGE,),
                             boot_delay=timedelta(seconds=30))
        play_worker_user_data(self.nova, self.mom_starts,
                              lambda server: self.control("mom-down", server.name))
        ids = itertools.count()
        store = SqliteStore(self.path / "dt.db")
        self.reconciler = Reconciler(
            batch=TorqueBatch(SubprocessRunner(str(self.bin_dir), timeout=30.0)),
            cloud=build_nova_cloud(self.nova, store, cluster_id=CLUSTER_ID, clock=self.clock),
            store=store, clock=self.clock, policy=POLICY,
            new_id=lambda: f"rec-{next(ids)}")

    # -- the world outside the reconciler ----------------------------------------------------
    def control(self, *words: str) -> None:
        done = run(self.bin_dir, "dt-torque-emulator", *words)
        assert done.returncode == 0, (words, done.stderr)

    def mom_starts(self, server: FakeServer) -> None:
        """What the worker user-data does: start pbs_mom, which reports its cores."""
        self.control("mom-up", server.name, str(server.flavor["vcpus"]),
                     "--mem-mb", str(server.flavor["ram"]))

    def qsub(self, *args: str) -> tuple[int, str]:
        done = run(self.bin_dir, "qsub", *args, "job.sh", cwd=self.path)
        return done.returncode, (done.stdout or done.stderr).decode().strip()

    def step(self, seconds: float = 15.0) -> Report:
        self.clock.advance(seconds)
        self.control("clock", "set", self.clock.now().isoformat())
        self.nova.tick()
        report = self.reconciler.run_once()
        self.reports.append(report)
        self.check_invariants()
        return report

    # -- what the world says -----------------------------------------------------------------
    def torque(self) -> tuple[tuple[EmulatedJob, ...], tuple[EmulatedNode, ...]]:
        """The shared server state, read under its lock (not through the Batch port)."""
        with open_server(self.home) as server:
            return server.emulator.jobs(), server.emulator.nodes()

    def live_servers(self) -> list[FakeServer]:
        return [server for server in self.nova.peek()
                if getattr(server, "OS-EXT-STS:task_state", None) != "deleting"]

    def deletes(self) -> int:
        return sum(call.operation == "servers.delete" for call in self.nova.calls)

    def actions(self, kind: str) -> list[object]:
        return [action for report in self.reports for action in report.plan.actions
                if type(action).__name__ == kind]

    def check_invariants(self) -> None:
        jobs, _ = self.torque()
        states = {job.id: job for job in jobs}
        for job_id in self.running_before:
            job = states[job_id]
            assert job.state in ("R", "C") and job.exit_status in (None, 0), \
                f"job {job_id} was killed or requeued: {job}"
        self.running_before = {job.id for job in jobs if job.state == "R"}
        live = self.live_servers()
        assert len(live) <= 4
        assert sum(int(server.flavor["vcpus"]) for server in live) <= 32


def test_jobs_submitted_with_qsub_get_nodes_run_and_the_nodes_go_away(tmp_path: Path) -> None:
    cluster = CliCluster(tmp_path)

    # Without node entries qsub refuses a multi-node job (15_); the reconciler's first pass
    # registers the pool's slots with qmgr, and the same job is accepted.
    assert cluster.qsub("-l", "nodes=2:ppn=4") == (
        190, "qsub: submit error (Job exceeds queue resource limits MSG=cannot locate "
        "feasible nodes (nodes file is empty, all systems are busy, or no nodes have the "
        "requested feature))")
    cluster.reports.append(cluster.reconciler.run_once())
    _, slots = cluster.torque()
    assert [(node.name, node.state, node.np) for node in slots] \
        == [(f"vnode-00{index}", "down,offline,MOM-list-not-sent", 8) for index in range(1, 5)]
    submitted = set()
    for args in JOBS:
        status, job_id = cluster.qsub(*args, "-v", "DT_EMULATOR_RUNTIME=120")
        assert status == 0, job_id
        submitted.add(job_id)
    # Nothing runs yet: the running capacity is zero cores.
    assert all(job.state == "Q" for job in cluster.torque()[0])

    for _ in range(14):
        cluster.step()
        if all(job.state == "C" for job in cluster.torque()[0]):
            break
    jobs, nodes = cluster.torque()
    assert {job.array_parent or job.id for job in jobs} == submitted
    assert all(job.state == "C" and job.exit_status == 0 for job in jobs), jobs
    assert cluster.actions("JoinNode") and cluster.actions("PokeScheduler")
    used = [node for node in nodes if node.has_status]
    assert used and all(node.mom_up for node in used)

    # pbs_server stops while the nodes sit idle: past the idle timeout nothing is drained,
    # released or deleted, because TORQUE cannot be read.
    cluster.control("server", "down")
    deletes, servers = cluster.deletes(), len(cluster.live_servers())
    for _ in range(6):
        report = cluster.step()
        assert not [action for action in report.plan.actions
                    if type(action).__name__ in ("OfflineNode", "ReleaseNode",
                                                 "DeleteInstance")]
    assert (cluster.deletes(), len(cluster.live_servers())) == (deletes, servers)
    assert nodes == cluster.torque()[1]

    # TORQUE answers again: idle nodes are offlined with pbsnodes -o, released and deleted.
    cluster.control("server", "up")
    for _ in range(12):
        cluster.step()
        if not cluster.live_servers() and not cluster.reconciler.store.records():
            break
    assert cluster.actions("OfflineNode") and cluster.actions("ReleaseNode")
    assert cluster.live_servers() == []
    assert cluster.reconciler.store.records() == ()
    assert {record.state for record in cluster.reconciler.store.records(include_deleted=True)} \
        == {NodeState.DELETED}
    _, slots = cluster.torque()
    assert sorted(node.name for node in slots) == [f"vnode-00{index}" for index in range(1, 5)]
    # Empty slots again, never schedulable: down (no mom) and offline once the reconciler
    # has re-offlined them after the server sent the new entries' hierarchy.
    assert [(node.state, node.jobs, node.mom_up) for node in slots] \
        == [(node.state, (), False) for node in slots]
    assert all("down" in node.state for node in slots), [node.state for node in slots]
