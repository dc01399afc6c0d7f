"""End to end on the real Nova API: queued jobs make servers, the servers become TORQUE
nodes and run the jobs, then go idle, are drained and deleted; nothing else is touched."""
from __future__ import annotations

import pytest

from dtserver.cloud.nova import CLUSTER_KEY, POOL_KEY, RECORD_KEY, cluster_tag
from dtserver.model import NodeState
from tests.live.world import CLUSTER, FLAVOR, POOL, TORQUE_SERVER, LiveWorld

pytestmark = pytest.mark.live_nova


def add_foreign_server(world: LiveWorld) -> str:
    """Another cluster's server in our project, wearing our tags and a node-like name."""
    flavor = next(item for item in world.live.flavors if item.name == FLAVOR)
    return world.live.client("someone-else").servers.create(
        "e2e-001", world.live.endpoint.image, flavor.id,
        meta={CLUSTER_KEY: "another-cluster", POOL_KEY: POOL, RECORD_KEY: "theirs"},
        tags=["dynamictorque", cluster_tag(CLUSTER)],
        nics=[{"net-id": world.live.endpoint.network}]).id


def test_queued_jobs_run_on_real_servers_that_are_then_drained_and_deleted(world):
    foreign = add_foreign_server(world)
    reconciler = world.reconciler()
    world.step(reconciler)                       # node slots exist before qsub needs them
    jobs = world.submit(3, runtime=60)

    world.run_until(reconciler, lambda: len(world.seen) == 3 and all(
        job.state == "C" for job in world.jobs().values()))

    flavor = next(item for item in world.live.flavors if item.name == FLAVOR)
    names = {instance.name for instance in world.seen.values()}
    assert len(world.cloud.created) == 3
    for instance in world.seen.values():
        assert instance.flavor_id == flavor.id
        assert {"dynamictorque", cluster_tag(CLUSTER)} <= instance.tags
        assert (instance.metadata[CLUSTER_KEY], instance.pool) == (CLUSTER, POOL)
        assert instance.record_id in {record.id for record in world.store.records(
            include_deleted=True)}
        assert instance.zone == world.live.endpoint.zone
        assert instance.addresses and instance.addresses[0].startswith("169.254.")
        user_data = world.user_data(instance.id)
        assert f"fqdn: {instance.name}" in user_data
        assert f"dt-join-torque, {TORQUE_SERVER}, {POOL}" in user_data
    # Each job ran on a node that one of our servers became.
    assert {world.exec_hosts[job].split("/")[0] for job in jobs} == names
    assert all(world.emulator.node(name).np == flavor.cores for name in names)

    world.run_until(reconciler, lambda: not world.owned_ids() and all(
        record.state is NodeState.DELETED
        for record in world.store.records(include_deleted=True)))

    drained = {event.hostname for event in world.store.events(limit=200)
               if event.kind == "drain"}
    assert drained == names
    assert world.live.server_ids() == {foreign}
    assert world.nova.owned_instances() == ()
    # The slots are back to empty, offline node entries.
    assert all("offline" in world.emulator.node(name).state for name in names)
