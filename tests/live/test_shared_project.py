"""Two installations in one real Nova project with the same cluster_id (issue 13): each
has its own database, so its own installation id, and its own TORQUE. Both run a busy
node; neither deletes, adopts nor counts the other's server, and each records once that
a foreign one wears its cluster id."""
from __future__ import annotations

import time

import pytest

from dtserver.cloud.nova import CLUSTER_KEY, INSTALLATION_KEY
from dtserver.model import NodeState
from tests.live.world import CLUSTER, LiveWorld, live_policy

pytestmark = pytest.mark.live_nova

WALL_SECONDS = 90.0             # a bound for a loaded machine; ~16 s when idle


def busy(world: LiveWorld) -> bool:
    records = world.store.records()
    return bool(records) and all(record.state is NodeState.BUSY for record in records) \
        and all(job.state == "R" for job in world.jobs().values())


def test_two_installations_with_one_cluster_id_leave_each_others_busy_nodes_alone(
        clean_nova, tmp_path):
    # Each world's pass gives Nova the time the other's needs: no pause of their own.
    sites = [LiveWorld(clean_nova, tmp_path / f"{name}.db",
                       live_policy(clean_nova, max_nodes=1, name_prefix=f"{name}-"),
                       wall_pause=0.0)
             for name in ("one", "two")]
    try:
        reconcilers = [site.reconciler() for site in sites]
        for site, reconciler in zip(sites, reconcilers):
            site.step(reconciler)                    # slots exist before qsub needs them
            site.submit(1, runtime=3600)
        deadline = time.monotonic() + WALL_SECONDS
        while not all(busy(site) for site in sites):
            assert time.monotonic() < deadline, [site.describe() for site in sites]
            for site, reconciler in zip(sites, reconcilers):
                site.step(reconciler)
        # Each pass judged the other's server since it appeared; one more with both busy.
        for site, reconciler in zip(sites, reconcilers):
            site.step(reconciler)

        one, two = sites
        assert one.store.installation_id() != two.store.installation_id()
        servers = {server.id: server for server in clean_nova.admin.servers.list(limit=-1)}
        assert set(servers) == {*one.owned_ids(), *two.owned_ids()} and len(servers) == 2
        for site, other in ((one, two), (two, one)):
            (record,) = site.store.records(include_deleted=True)
            assert site.owned_ids() == {record.instance_id}
            metadata = servers[record.instance_id].metadata
            assert metadata[CLUSTER_KEY] == CLUSTER
            assert metadata[INSTALLATION_KEY] == site.store.installation_id()
            kinds = [event.kind for event in site.store.events(limit=500)]
            assert "delete" not in kinds
            (warning,) = [event for event in site.store.events(limit=500)
                          if event.kind == "foreign"]
            (theirs,) = other.owned_ids()
            assert warning.hostname == servers[theirs].name
            assert theirs in warning.message
            assert other.store.installation_id() in warning.message
    finally:
        for site in sites:
            site.close()
