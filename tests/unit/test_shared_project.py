"""Two installations in one cloud project with the same cluster_id (issue 13): each owns
only the instances its own database made, so neither deletes, adopts nor counts the
other's, busy or not; each tells its operator once per foreign instance."""
from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from dtserver.actions import AdoptInstance, DeleteInstance
from dtserver.batch.torque import TorqueBatch
from dtserver.bootstrap import build_nova_cloud
from dtserver.clock import FakeClock
from dtserver.cloud.nova import CLUSTER_KEY, INSTALLATION_KEY, RECORD_KEY, cluster_tag
from dtserver.fakes.nova import FakeNova
from dtserver.fakes.nova_resources import FakeServer
from dtserver.fakes.torque.server import TorqueEmulator
from dtserver.fakes.world import DEMO_FLAVORS, DEMO_IMAGE, LockedRunner, play_worker_user_data
from dtserver.model import NodeState
from dtserver.policy import Policy, Pool
from dtserver.reconcile.loop import Reconciler, Report
from dtserver.store.sqlite import SqliteStore
from tests.builders import T0

CLUSTER = "default"          # the default cluster_id: what two careless sites both keep


class Installation:
    """One dynamictorque: its own TORQUE server, database and slot names; the project's
    Nova is shared. Its workers' user-data reports to its own TORQUE only."""

    def __init__(self, path: Path, clock: FakeClock, nova: FakeNova, prefix: str) -> None:
        self.prefix = prefix
        self.emulator = TorqueEmulator(clock, scheduler_iteration=60.0)
        self.store = SqliteStore(path)
        pool = Pool("cloud", DEMO_FLAVORS, DEMO_IMAGE, max_nodes=2, name_prefix=prefix)
        self.policy = Policy(pools=(pool,), idle_timeout=timedelta(seconds=120),
                             boot_timeout=timedelta(seconds=600),
                             down_timeout=timedelta(seconds=300))
        self.cloud = build_nova_cloud(nova, self.store, cluster_id=CLUSTER, clock=clock)
        self.reconciler = Reconciler(
            batch=TorqueBatch(LockedRunner(self.emulator, threading.RLock())),
            cloud=self.cloud, store=self.store, clock=clock, policy=self.policy)
        self.reports: list[Report] = []
        play_worker_user_data(nova, self._mom_starts, self._mom_stops)

    def _mom_starts(self, server: FakeServer) -> None:
        if server.name.startswith(self.prefix):
            self.emulator.mom_up(server.name, int(server.flavor["vcpus"]))

    def _mom_stops(self, server: FakeServer) -> None:
        if server.name.startswith(self.prefix):
            self.emulator.mom_down(server.name)

    def run_once(self) -> None:
        self.reports.append(self.reconciler.run_once())

    def instance_ids(self) -> set[str]:
        return {record.instance_id for record in self.store.records(include_deleted=True)
                if record.instance_id}

    def touched(self) -> set[str]:
        """Instances any of its plans meant to delete or adopt."""
        return {action.instance_id for report in self.reports for action in report.plan.actions
                if isinstance(action, (DeleteInstance, AdoptInstance))}


def test_two_installations_with_one_cluster_id_never_delete_each_others_busy_nodes(tmp_path):
    clock = FakeClock(T0)
    nova = FakeNova(clock, flavors=DEMO_FLAVORS, images=(DEMO_IMAGE,), boot_delay=60.0)
    first = Installation(tmp_path / "first.db", clock, nova, "first-")
    second = Installation(tmp_path / "second.db", clock, nova, "second-")
    both = (first, second)
    assert first.store.installation_id() != second.store.installation_id()
    for site in both:
        site.run_once()                              # slots exist before qsub needs them
        site.emulator.submit(resources={"nodes": "1:ppn=4"}, runtime=3600)

    for _ in range(40):                              # 400 s: boot, join, run, idle timers
        clock.advance(10)
        nova.tick()
        for site in both:
            site.run_once()

    servers = {server.id: server for server in nova.peek()}
    for site, other in ((first, second), (second, first)):
        (job,) = site.emulator.jobs()
        assert job.state == "R"
        (record,) = site.store.records()
        assert record.state is NodeState.BUSY
        # Its own instance only, tagged alike but told apart by the installation id.
        assert site.instance_ids() == {record.instance_id}
        server = servers[record.instance_id]
        assert server.metadata[CLUSTER_KEY] == CLUSTER
        assert server.metadata[INSTALLATION_KEY] == site.store.installation_id()
        assert cluster_tag(CLUSTER) in server.tags
        assert {instance.id for instance in site.cloud.owned_instances()} == \
            {record.instance_id}
        # Nothing of the other's was ever planned for deletion or adoption, or counted.
        assert site.touched().isdisjoint(other.instance_ids())
        assert all(record.instance_id not in other.instance_ids()
                   for record in site.store.records(include_deleted=True))
        # Told once, in the store the operator reads, which instance is not ours and why.
        warnings = [event for event in site.store.events(limit=500) if event.kind == "foreign"]
        assert len(warnings) == 1
        assert warnings[0].hostname == servers[other.instance_ids().pop()].name
        assert other.store.installation_id() in warnings[0].message
    assert len(servers) == 2
    assert not any(call.operation == "servers.delete" for call in nova.calls)


def test_an_instance_made_before_installation_ids_is_kept_only_by_the_site_that_made_it(
        tmp_path):
    clock = FakeClock(T0)
    nova = FakeNova(clock, flavors=DEMO_FLAVORS, images=(DEMO_IMAGE,), boot_delay=60.0)
    old = Installation(tmp_path / "old.db", clock, nova, "old-")
    stranger = Installation(tmp_path / "stranger.db", clock, nova, "stranger-")
    old.run_once()
    stranger.run_once()
    old.emulator.submit(resources={"nodes": "1:ppn=4"}, runtime=3600)
    for _ in range(20):
        clock.advance(10)
        nova.tick()
        old.run_once()
    (record,) = old.store.records()
    assert record.state is NodeState.BUSY
    # As an older release left it: cluster tag and record id, no installation id.
    nova.servers.delete_meta(record.instance_id, [INSTALLATION_KEY])
    (server,) = nova.peek()
    assert INSTALLATION_KEY not in server.metadata and server.metadata[RECORD_KEY] == record.id

    for _ in range(5):
        clock.advance(10)
        nova.tick()
        old.run_once()
        stranger.run_once()

    assert {instance.id for instance in old.cloud.owned_instances()} == {record.instance_id}
    assert stranger.cloud.owned_instances() == ()
    assert old.store.record(record.id).state is NodeState.BUSY
    assert record.instance_id not in stranger.touched()
    assert [event.kind for event in stranger.store.events(limit=500)].count("foreign") == 1
    assert [server.id for server in nova.peek()] == [record.instance_id]
