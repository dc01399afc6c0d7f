"""The reconciler publishes the pools it runs with, for the API's hint verdicts: at its
first pass, again when its policy changes, and not at every pass."""
from __future__ import annotations

from dataclasses import replace

from dtserver.fakes.world import DEMO_FLAVORS
from dtserver.model import Flavor
from dtserver.policy import Policy, Pool
from dtserver.reconcile.catalogue import pool_catalogue
from dtserver.store import CataloguePool, PoolCatalogue
from tests.builders import T0, seconds
from tests.sim.scenario import Cluster, scenario_policy

SIZES = tuple(Flavor(flavor.name, flavor.cores, flavor.mem_mb, flavor.gpus)
              for flavor in DEMO_FLAVORS)


def test_the_first_pass_publishes_the_pools_as_the_planner_sees_them(tmp_path):
    cluster = Cluster(tmp_path, scenario_policy(max_nodes=6, max_cores=32))

    assert cluster.store.pool_catalogue() == (T0, PoolCatalogue(
        pools=(CataloguePool("cloud", SIZES, max_nodes=6, properties=frozenset({"CLOUD"})),),
        max_cores=32))


def test_later_passes_do_not_write_it_again(tmp_path):
    cluster = Cluster(tmp_path, scenario_policy())

    cluster.step(10)
    cluster.step(10)

    written, _ = cluster.store.pool_catalogue()
    assert written == T0


def test_a_restarted_reconciler_publishes_again(tmp_path):
    cluster = Cluster(tmp_path, scenario_policy())
    cluster.clock.advance(60)

    cluster.reconciler = cluster.new_reconciler()
    cluster.step(10)

    written, _ = cluster.store.pool_catalogue()
    assert written == T0 + seconds(70)


def test_a_changed_policy_is_published_at_the_next_pass(tmp_path):
    cluster = Cluster(tmp_path, scenario_policy())
    [pool] = cluster.reconciler.policy.pools
    wider = replace(cluster.reconciler.policy, queues=frozenset({"batch", "long"}),
                    pools=(replace(pool, max_nodes=12, queues=frozenset({"long"})),))

    cluster.reconciler.policy = wider
    cluster.step(10)

    written, catalogue = cluster.store.pool_catalogue()
    assert written == T0 + seconds(10)
    assert catalogue == pool_catalogue(wider)
    assert (catalogue.queues, catalogue.pools[0].max_nodes, catalogue.pools[0].queues) == (
        frozenset({"batch", "long"}), 12, frozenset({"long"}))


def test_the_catalogue_keeps_every_field_eligibility_reads():
    gpu = Flavor("g1", cores=8, mem_mb=32768, gpus=2, id="nova-flavor-id")
    policy = Policy(pools=(Pool("gpu", (gpu,), "image-id", properties=frozenset({"gpu"}),
                                queues=frozenset({"gpu"}), accounts=frozenset({"physics"}),
                                max_nodes=3, max_cores=24, min_nodes=1, zone="az1"),),
                    queues=frozenset({"gpu"}), max_cores=48)

    assert pool_catalogue(policy) == PoolCatalogue(
        pools=(CataloguePool("gpu", (Flavor("g1", 8, 32768, 2),), max_nodes=3, max_cores=24,
                             properties=frozenset({"gpu"}), queues=frozenset({"gpu"}),
                             accounts=frozenset({"physics"})),),
        queues=frozenset({"gpu"}), max_cores=48)
