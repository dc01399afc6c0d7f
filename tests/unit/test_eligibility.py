"""eligible_pools: the one rule set for "could any pool ever run this request", shared by
the planner's job verdicts and the API's hint verdicts."""
from __future__ import annotations

import pytest

from dtserver.actions import LaunchInstance
from dtserver.model import Chunk, Flavor, Request
from dtserver.planning import plan
from dtserver.planning.eligibility import eligible_pools
from dtserver.planning.invariants import check_plan
from tests.builders import LARGE, SMALL, job, policy, pool, request, snapshot

GPU = Flavor("g1.large", cores=8, mem_mb=32768, gpus=2)


def names(pools) -> list[str]:
    return [each.name for each in pools]


def test_every_pool_that_fits_is_eligible_reserved_pools_first():
    general = pool("cloud")
    physics = pool("physics", accounts={"physics"})

    pools, why = eligible_pools((general, physics), "batch", "physics", request(2, 4))

    assert (names(pools), why) == (["physics", "cloud"], "")


@pytest.mark.parametrize("pools, queue, account, req, reason", [
    ((), "batch", None, request(), "no pool configured"),
    ((pool(queues={"cloud"}),), "batch", None, request(), "no pool serves queue batch"),
    ((pool(accounts={"physics"}),), "batch", "chemistry", request(),
     "no pool serves account chemistry"),
    ((pool(),), "batch", None, request(properties={"bigmem", "ssd"}),
     "no pool has node properties bigmem, ssd"),
    ((pool(),), "batch", None, request(1, 16),
     "a node of 16 cores/0 MiB/0 GPUs is larger than any flavor (largest m1.large: 8 cores/"
     "16384 MiB/0 GPUs)"),
    ((pool(),), "batch", None, request(1, 1, mem_mb=20000), "larger than any flavor"),
    ((pool(),), "batch", None, request(1, 1, gpus=1), "larger than any flavor"),
    ((pool(max_nodes=3),), "batch", None, request(4, 1),
     "needs at least 4 nodes; pool cloud has max_nodes=3"),
    ((pool(max_nodes=1),), "batch", None, request(9, 1, distinct=False),
     "needs at least 2 nodes; pool cloud has max_nodes=1"),
    ((pool(max_nodes=1),), "batch", None, request(2, 1, mem_mb=12000, distinct=False),
     "needs at least 2 nodes; pool cloud has max_nodes=1"),
    ((pool(max_cores=12),), "batch", None, request(2, 8),
     "needs 16 cores; pool cloud has max_cores=12"),
], ids=["no-pools", "queue", "account", "properties", "cores", "memory", "gpus",
        "distinct-nodes", "shared-nodes-by-cores", "shared-nodes-by-memory", "pool-cores"])
def test_a_request_no_pool_can_ever_run_gets_none_and_the_reason(pools, queue, account, req,
                                                                 reason):
    eligible, why = eligible_pools(pools, queue, account, req)

    assert eligible == []
    assert reason in why


def test_a_request_above_the_cluster_core_cap_is_never_eligible():
    eligible, why = eligible_pools((pool(),), "batch", None, request(3, 8), max_cores=16)

    assert (eligible, why) == ([], "needs 24 cores; the cluster has max_cores=16")


def test_limits_are_checked_per_pool_so_a_bigger_pool_still_serves():
    small = pool("small", max_nodes=2, flavors=(SMALL,))
    big = pool("big", max_nodes=20, flavors=(LARGE, GPU))

    eligible, _ = eligible_pools((small, big), "batch", None, request(4, 2, gpus=1))

    assert names(eligible) == ["big"]


def test_requests_at_the_limits_are_eligible():
    pools = (pool(max_nodes=4, max_cores=32),)

    eligible, why = eligible_pools(pools, "batch", None, request(4, 8), max_cores=32)

    assert (names(eligible), why) == (["cloud"], "")


def test_the_planner_says_unservable_for_a_job_above_max_nodes():
    pol = policy(pool(max_nodes=2))
    snap = snapshot(jobs=[job(req=request(3, 1))], with_slots=pol)

    result = plan(snap, pol, snap.jobs[0].created)
    check_plan(snap, pol, result)

    [verdict] = result.verdicts
    assert (verdict.status, verdict.reason) == (
        "unservable", "needs at least 3 nodes; pool cloud has max_nodes=2")
    assert result.of_type(LaunchInstance) == []


def test_a_request_of_several_chunk_kinds_is_judged_whole():
    mixed = Request((Chunk(1, 8, 16000), Chunk(2, 2)))

    eligible, _ = eligible_pools((pool(max_nodes=3),), "batch", None, mixed)
    none, why = eligible_pools((pool(max_nodes=2),), "batch", None, mixed)

    assert names(eligible) == ["cloud"]
    assert (none, why) == ([], "needs at least 3 nodes; pool cloud has max_nodes=2")


def test_the_reason_comes_from_the_pool_that_came_closest_whatever_the_order():
    gpu_queue = pool("gpu", queues={"gpu"})
    small = pool("small", flavors=(SMALL,))

    for pools in ((small, gpu_queue), (gpu_queue, small)):
        eligible, why = eligible_pools(pools, "batch", None, request(1, 4))
        assert eligible == []
        assert why.startswith("a node of 4 cores/0 MiB/0 GPUs is larger than any flavor")
