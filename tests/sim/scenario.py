"""A whole emulated cluster driven pass by pass, with the safety invariants of docs/design.md
checked against the world itself (dtserver.sim.world, shared with the simulator)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from dtserver.batch.torque import TorqueBatch
from dtserver.bootstrap import build_fake_world, build_nova_cloud
from dtserver.clock import FakeClock
from dtserver.fakes.world import DEMO_FLAVORS, DEMO_IMAGE, FakeWorld
from dtserver.model import NodeEvent
from dtserver.policy import Policy, Pool
from dtserver.reconcile.loop import Reconciler, Report
from dtserver.sim.world import InvariantWatch, live_servers, owned_servers
from dtserver.store.sqlite import SqliteStore
from tests.builders import T0

CLUSTER = "scenario"


def scenario_policy(**overrides) -> Policy:
    pool = Pool("cloud", DEMO_FLAVORS, DEMO_IMAGE, max_nodes=overrides.pop("max_nodes", 6),
                min_nodes=overrides.pop("min_nodes", 0), name_prefix="vnode-")
    settings = dict(idle_timeout=timedelta(seconds=300), boot_timeout=timedelta(seconds=600),
                    down_timeout=timedelta(seconds=300), hint_ttl=timedelta(seconds=20),
                    max_cores=overrides.pop("max_cores", 32))
    settings.update(overrides)
    return Policy(pools=(pool,), **settings)


@dataclass
class Cluster:
    path: Path
    policy: Policy
    boot_delay: float = 60.0
    clock: FakeClock = field(default_factory=lambda: FakeClock(T0))
    ids: itertools.count = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.world: FakeWorld = build_fake_world(self.clock, boot_delay=self.boot_delay,
                                                 scheduler_iteration=60.0)
        self.store = SqliteStore(self.path / "dt.db")
        self.node_events: list[NodeEvent] = []
        self.reconciler = self.new_reconciler()
        self.watch = InvariantWatch(self.world, self.store, self.policy, CLUSTER)
        self.reports: list[Report] = []
        # The first pass registers the node slots: qsub refuses `-l nodes=` jobs before.
        self.reports.append(self.reconciler.run_once())

    def new_reconciler(self) -> Reconciler:
        """A fresh reconciler on the same store, as after a crash and restart."""
        return Reconciler(batch=TorqueBatch(self.world.runner()),
                          cloud=build_nova_cloud(self.world.nova, self.store,
                                                 cluster_id=CLUSTER, clock=self.clock),
                          store=self.store, clock=self.clock, policy=self.policy,
                          new_id=lambda: f"rec-{next(self.ids)}",
                          on_event=self.node_events.append)

    # -- driving ---------------------------------------------------------------------------
    def submit(self, resources: dict[str, str], runtime: float, **kwargs) -> str:
        return self.world.emulator.submit(resources=resources, runtime=runtime, **kwargs)

    def step(self, seconds: float = 10.0) -> Report:
        self.clock.advance(seconds)
        self.world.nova.tick()
        report = self.reconciler.run_once()
        self.reports.append(report)
        self.check_invariants()
        return report

    def run(self, seconds: float, every: float = 10.0) -> None:
        for _ in range(int(seconds // every)):
            self.step(every)

    # -- what the world says -----------------------------------------------------------------
    def our_servers(self) -> list:
        return owned_servers(self.world.nova, CLUSTER)

    def live_servers(self) -> list:
        return live_servers(self.world.nova, CLUSTER)

    def jobs(self):
        return self.world.emulator.jobs()

    # -- the invariants, at every step -----------------------------------------------------
    def check_invariants(self) -> None:
        problems = self.watch.violations()
        assert not problems, problems

    def assert_nothing_leaked(self) -> None:
        """2. every instance we created is found again: none left once all is drained."""
        left = self.watch.leftovers()
        assert left == [], left
