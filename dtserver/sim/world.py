"""What the scenario tests and the simulator share: the safety invariants of DESIGN.md §4
checked against the emulated world itself (TORQUE emulator and FakeNova), not against
our records, and a Cloud whose instances boot after sampled delays."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from dtserver.bootstrap import FakeWorld
from dtserver.cloud import Cloud
from dtserver.cloud.fake_nova import FakeNova, FakeServer
from dtserver.model import DtError, Flavor, Instance, InstanceSpec, NodeState, Quota
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
    """Checks DESIGN.md §4 after every step; remembers which jobs ran at the last one."""

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


class SampledBootCloud:
    """A Cloud over FakeNova in which each instance boots after its own sampled delay.

    FakeNova has one boot delay for all; it is set afresh before each create."""

    def __init__(self, cloud: Cloud, nova: FakeNova, sample: Callable[[], float]) -> None:
        self._cloud = cloud
        self._nova = nova
        self._sample = sample

    def flavors(self) -> tuple[Flavor, ...]:
        return self._cloud.flavors()

    def create_instance(self, spec: InstanceSpec) -> Instance:
        self._nova._boot_delay = timedelta(seconds=max(0.0, self._sample()))
        return self._cloud.create_instance(spec)

    def owned_instances(self) -> tuple[Instance, ...]:
        return self._cloud.owned_instances()

    def delete_instance(self, instance_id: str) -> None:
        self._cloud.delete_instance(instance_id)

    def quota(self) -> Quota:
        return self._cloud.quota()


class CachedCloud:
    """A Cloud over FakeNova that lists instances again only when something changed.

    Between two of its own creates or deletes, FakeNova changes only when a boot or a
    delete completes, at `next_event_at()`; until then the last listing still holds. Only
    for a world nobody else touches (the simulator: no injected faults, no other users)."""

    def __init__(self, cloud: Cloud, nova: FakeNova) -> None:
        self._cloud = cloud
        self._nova = nova
        self._instances: tuple[Instance, ...] | None = None
        self._quota: Quota | None = None
        self._valid_until: datetime | None = None

    def flavors(self) -> tuple[Flavor, ...]:
        return self._cloud.flavors()

    def create_instance(self, spec: InstanceSpec) -> Instance:
        self._forget()
        return self._cloud.create_instance(spec)

    def owned_instances(self) -> tuple[Instance, ...]:
        self._check()
        if self._instances is None:
            self._instances = self._cloud.owned_instances()
            self._remember()
        return self._instances

    def delete_instance(self, instance_id: str) -> None:
        self._forget()
        self._cloud.delete_instance(instance_id)

    def quota(self) -> Quota:
        self._check()
        if self._quota is None:
            self._quota = self._cloud.quota()
            self._remember()
        return self._quota

    def _check(self) -> None:
        if self._valid_until is not None and self._nova.clock.now() >= self._valid_until:
            self._forget()

    def _remember(self) -> None:
        self._valid_until = self._nova.next_event_at()

    def _forget(self) -> None:
        self._instances = None
        self._quota = None
        self._valid_until = None
