"""What the scenario tests and the simulator share: the safety invariants of docs/design.md
checked against the emulated world itself (TORQUE emulator and FakeNova), not against
our records."""
from __future__ import annotations

from datetime import datetime

from dtserver.bootstrap import FakeWorld
from dtserver.cloud import CloudError
from dtserver.cloud.fake_nova import FakeNova, FakeServer
from dtserver.cloud.nova import NovaCloud
from dtserver.model import DtError, Instance, InstanceSpec, NodeState
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


class IncrementalNovaCloud(NovaCloud):
    """NovaCloud over FakeNova that re-reads only the servers that may have changed.

    Listing every server on every pass costs more than the whole plan once a simulated
    cluster holds hundreds of instances. A server changes only when we create or delete
    it, or when its boot or its deletion completes, at FakeNova's `next_event_at()`; so
    after the first listing, those servers are fetched one by one (`servers.get`) and
    read with NovaCloud's own conversion. Only for a FakeNova nobody else changes (the
    simulator: no injected faults, no foreign servers); any error falls back to a full
    listing, which raises as NovaCloud does."""

    def __init__(self, nova: FakeNova, *, cluster_id: str, installation: str) -> None:
        super().__init__(nova, cluster_id=cluster_id, installation=installation,
                         clock=nova.clock)
        self._nova = nova
        self._known: dict[str, Instance] | None = None   # creation order
        self._stale: set[str] = set()
        self._deleting: set[str] = set()
        self._due: datetime | None = None

    def create_instance(self, spec: InstanceSpec) -> Instance:
        instance = super().create_instance(spec)
        self._stale.add(instance.id)
        return instance

    def delete_instance(self, instance_id: str) -> None:
        try:
            super().delete_instance(instance_id)
        finally:
            self._stale.add(instance_id)
            self._deleting.add(instance_id)

    def mark_entry_ready(self, instance_id: str) -> None:
        try:
            super().mark_entry_ready(instance_id)
        finally:
            self._stale.add(instance_id)

    def owned_instances(self) -> tuple[Instance, ...]:
        known = self._known
        if known is None:
            return self._list_all()
        if self._due is not None and self._nova.clock.now() >= self._due:
            self._stale.update(instance.id for instance in known.values()
                               if instance.status == "BUILD" or instance.id in self._deleting)
        try:
            present = set(self._nova.server_ids()) if self._stale else set()
            for server_id in sorted(self._stale):
                self._read_again(known, server_id, present)
        except CloudError:
            return self._list_all()
        self._settle(known)
        # Nova lists the newest first.
        return tuple(reversed(known.values()))

    def _list_all(self) -> tuple[Instance, ...]:
        listed = super().owned_instances()
        self._known = {instance.id: instance for instance in reversed(listed)}
        self._settle(self._known)
        return listed

    def _settle(self, known: dict[str, Instance]) -> None:
        self._stale.clear()
        self._deleting &= known.keys()
        self._due = self._nova.next_event_at()

    def _read_again(self, known: dict[str, Instance], server_id: str,
                    present: set[str]) -> None:
        if server_id not in present:
            known.pop(server_id, None)      # deleted and gone: Nova would answer 404
            return
        server = self._call("servers.get", self._nova.servers.get, server_id)
        if self._owns(server):
            known[server_id] = self._instance(server)
        else:
            known.pop(server_id, None)
