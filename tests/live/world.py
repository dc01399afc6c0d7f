"""The end-to-end world: the reconciler and TorqueBatch over the TorqueEmulator, on a
FakeClock, with the REAL Nova API of tests/tooling/novastack behind NovaCloud.

Simulated time (TORQUE, timers, job run times) moves STEP per pass; Nova moves in wall
time, so each pass also waits a little for it. The world plays cloud-init: when one of our
servers is ACTIVE it starts that node's pbs_mom in the emulator, and when the server is
gone the mom dies with it. It never opens a connection to an instance address.
"""
from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable

from dtserver.batch.torque import TorqueBatch
from dtserver.bootstrap import build_nova_cloud
from dtserver.clock import FakeClock, SystemClock
from dtserver.cloud import Cloud
from dtserver.cloud.nova_session import build_nova_client
from dtserver.fakes.torque.server import TorqueEmulator
from dtserver.fakes.torque.state import EmulatedJob
from dtserver.model import Flavor, Instance, InstanceSpec, Quota
from dtserver.policy import Policy, Pool
from dtserver.reconcile.loop import Reconciler
from dtserver.store.sqlite import SqliteStore
from tests.tooling.novastack.plugin import CLOUD_NAME, LiveNova

CLUSTER = "e2e"
TORQUE_SERVER = "vm"
POOL = "cloud"
FLAVOR = "dt.medium"             # 2 cores: one node per nodes=1:ppn=2 job
STEP = timedelta(seconds=5)      # simulated time per pass
WALL_PAUSE = 0.15                # seconds per pass for Nova to move on
USER_DATA = """#cloud-config
fqdn: $hostname
runcmd:
  - [/usr/local/sbin/dt-join-torque, $torque_server, $pool]
"""


def live_policy(live: LiveNova, *, max_nodes: int = 4, name_prefix: str = "e2e-") -> Policy:
    """One pool of 2-core nodes; short timers so a whole life fits in well under a minute."""
    flavor = next(item for item in live.flavors if item.name == FLAVOR)
    pool = Pool(name=POOL, flavors=(flavor,), image=live.endpoint.image,
                zone=live.endpoint.zone, network=live.endpoint.network, max_nodes=max_nodes,
                name_prefix=name_prefix, user_data_template=USER_DATA)
    return Policy(pools=(pool,), queues=frozenset({"batch"}),
                  idle_timeout=timedelta(seconds=30), launch_grace=timedelta(seconds=30),
                  boot_timeout=timedelta(seconds=600))


class Crash(BaseException):
    """The reconciler process dies here: nothing in it catches a BaseException."""


class RecordingCloud:
    """The Cloud port, noting every instance whose create reached Nova."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.created: list[Instance] = []

    def flavors(self) -> tuple[Flavor, ...]:
        return self.cloud.flavors()

    def create_instance(self, spec: InstanceSpec) -> Instance:
        instance = self.cloud.create_instance(spec)
        self.created.append(instance)
        return instance

    def owned_instances(self) -> tuple[Instance, ...]:
        return self.cloud.owned_instances()

    def delete_instance(self, instance_id: str) -> None:
        self.cloud.delete_instance(instance_id)

    def mark_entry_ready(self, instance_id: str) -> None:
        self.cloud.mark_entry_ready(instance_id)

    def quota(self) -> Quota:
        return self.cloud.quota()


class CurrentStore:
    """The store of the world's running reconciler, whichever restart it is: the cloud is
    built once, and a restart opens a new store on the same file."""

    def __init__(self, world: LiveWorld) -> None:
        self._world = world

    def __getattr__(self, name: str):
        return getattr(self._world.store, name)


class CrashingCloud(RecordingCloud):
    """Dies at the first create: before it reaches Nova, or after Nova took it but before
    the reconciler could write the instance id into its record."""

    def __init__(self, cloud: Cloud, *, after_create: bool) -> None:
        super().__init__(cloud)
        self.after_create = after_create

    def create_instance(self, spec: InstanceSpec) -> Instance:
        if not self.after_create:
            raise Crash(f"killed before servers.create of {spec.name}")
        super().create_instance(spec)
        raise Crash(f"killed after servers.create of {spec.name}")


@dataclass
class LiveWorld:
    live: LiveNova
    db_path: Path
    policy: Policy
    clock: FakeClock = field(default_factory=lambda: FakeClock(SystemClock().now()))
    moms: set[str] = field(default_factory=set)
    seen: dict[str, Instance] = field(default_factory=dict)       # ACTIVE, by instance id
    exec_hosts: dict[str, str] = field(default_factory=dict)      # job id -> exec_host
    passes: int = 0
    wall_pause: float = WALL_PAUSE   # 0 when another world's passes already give Nova time

    def __post_init__(self) -> None:
        self.emulator = TorqueEmulator(self.clock, server_name=TORQUE_SERVER)
        self.batch = TorqueBatch(self.emulator, queues=self.policy.queues)
        client = build_nova_client(cloud_name=CLOUD_NAME, auth={}, region=None)
        # Opened now for the installation id; each reconciler() opens it again.
        self.store: SqliteStore | None = SqliteStore(self.db_path)
        self.nova = build_nova_cloud(client, CurrentStore(self), cluster_id=CLUSTER,
                                     network=self.live.endpoint.network)
        self.cloud = RecordingCloud(self.nova)
        self._cores = {flavor.id: flavor.cores for flavor in self.live.flavors}

    def reconciler(self, cloud: Cloud | None = None) -> Reconciler:
        """A new reconciler process on the same SQLite file: a start or a restart."""
        if self.store is not None:
            self.store.close()
        self.store = SqliteStore(self.db_path)
        return Reconciler(batch=self.batch, cloud=cloud or self.cloud, store=self.store,
                          clock=self.clock, policy=self.policy, torque_server=TORQUE_SERVER)

    def submit(self, count: int, *, runtime: float = 60.0) -> list[str]:
        return [self.emulator.submit(resources={"nodes": "1:ppn=2"}, runtime=runtime,
                                     name=f"e2e{index}") for index in range(count)]

    def step(self, reconciler: Reconciler) -> None:
        self.clock.advance(STEP)
        reconciler.run_once()
        self.passes += 1
        self.play_cloud_init()
        self.note_jobs()
        time.sleep(self.wall_pause)

    def run_until(self, reconciler: Reconciler, condition: Callable[[], bool], *,
                  wall_seconds: float = 60.0) -> None:
        deadline = time.monotonic() + wall_seconds
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached within {wall_seconds:.0f} s "
                                     f"({self.passes} passes): {self.describe()}")
            self.step(reconciler)

    def play_cloud_init(self) -> None:
        """Start the mom of each ACTIVE server of ours once its node entry is announced (as
        the worker user-data does), stop the mom of each server gone."""
        owned = {instance.name: instance for instance in self.nova.owned_instances()}
        for name, instance in owned.items():
            if instance.status == "ACTIVE" and instance.entry_announced \
                    and name not in self.moms:
                self.seen[instance.id] = instance
                self.emulator.mom_up(name, self._cores[instance.flavor_id])
                self.moms.add(name)
        for name in self.moms - set(owned):
            self.emulator.mom_down(name)
            self.moms.discard(name)

    def note_jobs(self) -> None:
        for job in self.emulator.jobs():
            if job.exec_host:
                self.exec_hosts[job.id] = job.exec_host

    def jobs(self) -> dict[str, EmulatedJob]:
        return {job.id: job for job in self.emulator.jobs()}

    def user_data(self, instance_id: str) -> str:
        server = self.live.admin.servers.get(instance_id)
        return base64.b64decode(getattr(server, "OS-EXT-SRV-ATTR:user_data")).decode()

    def owned_ids(self) -> set[str]:
        return {instance.id for instance in self.nova.owned_instances()}

    def describe(self) -> str:
        records = self.store.records(include_deleted=True) if self.store else ()
        return (f"records={[(r.hostname, r.state.value) for r in records]} "
                f"owned={sorted(self.owned_ids())} "
                f"jobs={[(j.id, j.state, j.exec_host) for j in self.emulator.jobs()]} "
                f"nodes={[(n.name, n.state) for n in self.emulator.nodes()]}")

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
