"""What the scenario tests and the simulator share: the safety invariants of docs/design.md
checked against the emulated world itself (TORQUE emulator and FakeNova), not against
our records."""
from __future__ import annotations

from dtserver.fakes.nova import FakeNova
from dtserver.fakes.nova_resources import FakeServer
from dtserver.fakes.world import FakeWorld
from dtserver.model import DtError, NodeState
from dtserver.policy import Policy
from dtserver.store import Store

OWNER_KEY = "dynamictorque:cluster"


class WorldInvariantError(DtError):
    """The emulated world shows something the scaler must never cause."""


def owned_servers(nova: FakeNova, cluster_id: str) -> list[FakeServer]:
    return [server for server in nova.peek() if server.metadata.get(OWNER_KEY) == cluster_id]


def live_servers(nova: FakeNova, cluster_id: str) -> list[FakeServer]:
    """Owned servers not being deleted."""
    return [server for server in owned_servers(nova, cluster_id)
            if getattr(server, "OS-EXT-STS:task_state", None) != "deleting"]


class InvariantWatch:
    """Checks the invariants after every step; remembers which jobs ran at the last one."""

    def __init__(self, world: FakeWorld, store: Store, policy: Policy, cluster_id: str) -> None:
        self.world = world
        self.store = store
        self.policy = policy
        self.cluster_id = cluster_id
        self.running_before: set[str] = set()
        self.checks = 0

    def check(self) -> None:
        """Raises WorldInvariantError naming every violation found."""
        problems = self.violations()
        self.checks += 1
        if problems:
            raise WorldInvariantError("; ".join(problems))

    def violations(self) -> list[str]:
        emulator = self.world.emulator
        problems: list[str] = []
        jobs = {job.id: job for job in emulator.jobs()}
        running = {job_id for job_id, job in jobs.items() if job.state == "R"}
        # 1. a running job is never killed: it runs on, or completes with exit status 0.
        for job_id in sorted(self.running_before - running):
            job = jobs.get(job_id)
            if job is not None and not (job.state == "C" and job.exit_status == 0):
                problems.append(f"job {job_id} was killed or requeued: {job}")
        self.running_before = running
        # 4. limits hold, launches in flight included.
        live = live_servers(self.world.nova, self.cluster_id)
        cores = sum(int(server.flavor["vcpus"]) for server in live)
        max_nodes = sum(pool.max_nodes for pool in self.policy.pools)
        if len(live) > max_nodes:
            problems.append(f"{len(live)} servers > max_nodes={max_nodes}")
        if self.policy.max_cores is not None and cores > self.policy.max_cores:
            problems.append(f"{cores} cores > max_cores={self.policy.max_cores}")
        # A slot without a live record is an empty placeholder no job can be scheduled on.
        taken = {record.hostname for record in self.store.records()}
        for node in emulator.nodes():
            if self.policy.pool_of_slot(node.name) is None or node.name in taken:
                continue
            if node.jobs:
                problems.append(f"jobs on unused slot {node.name}: {node.jobs}")
            if "down" not in node.state and "offline" not in node.state:
                problems.append(f"unused slot {node.name} is schedulable: {node.state}")
        return problems

    def leftovers(self) -> list[str]:
        """2. every instance we created is found again: what is still there once drained."""
        left = [f"server {server.name}" for server in live_servers(self.world.nova,
                                                                    self.cluster_id)]
        left += [f"record {record.hostname} ({record.state.value})"
                 for record in self.store.records() if record.state is not NodeState.DELETED]
        return left
