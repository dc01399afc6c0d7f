"""Flavor choice counts node slots: least waste while slots are plenty, larger flavors before
the pool's slots (or its instance quota) run out under a trickle of small jobs."""
from __future__ import annotations

from dtserver.actions import LaunchInstance
from dtserver.model import Flavor, JobState, NodeState, Quota
from dtserver.planning import plan
from dtserver.planning.invariants import check_plan
from tests.builders import T0, instance, job, node, policy, pool, record, seconds, snapshot

FLAVORS = tuple(Flavor(f"c{cores}", cores, 2048 * cores) for cores in (1, 2, 4, 8, 16))
ONE_CORE = FLAVORS[0]


def grid_policy(**options):
    return policy(pool(flavors=FLAVORS, max_nodes=10, **options))


def planned(snap, pol):
    result = plan(snap, pol, T0 + seconds(1))
    check_plan(snap, pol, result)
    return result


def launched(result) -> list[int]:
    return [action.cores for action in result.of_type(LaunchInstance)]


def full_small_nodes(count: int):
    """`count` 1-core nodes, each running one job."""
    names = [f"cloud-{index:03d}" for index in range(1, count + 1)]
    records = [record(name, state=NodeState.BUSY, flavor=ONE_CORE, instance_id=f"i-{name}")
               for name in names]
    instances = [instance(f"i-{name}", name=name) for name in names]
    nodes = [node(name, np=1, jobs=[f"{index}.vm"]) for index, name in enumerate(names, 100)]
    running = [job(f"{index}.vm", state=JobState.RUNNING, exec_hosts=[name])
               for index, name in enumerate(names, 100)]
    return records, instances, nodes, running


def test_with_slots_to_spare_a_small_job_gets_the_least_waste_flavor():
    pol = grid_policy()
    assert launched(planned(snapshot(jobs=[job()], with_slots=pol), pol)) == [1]


def test_once_small_nodes_hold_half_the_slots_the_next_launch_is_the_largest_flavor():
    pol = grid_policy()
    records, instances, nodes, running = full_small_nodes(5)
    snap = snapshot(jobs=running + [job("1.vm")], records=records, instances=instances,
                    nodes=nodes, with_slots=pol)
    # 3/4 of 160 cores must stay reachable: 1-core leaves 5 + 1 + 4 x 16 = 70; none reaches
    # 120, so the largest, which keeps the most (85).
    assert launched(planned(snap, pol)) == [16]


def test_a_deep_queue_of_serial_jobs_fills_ten_slots_with_the_largest_flavor():
    pol = grid_policy()
    jobs = [job(f"{index}.vm") for index in range(500)]
    assert launched(planned(snapshot(jobs=jobs, with_slots=pol), pol)) == [16] * 10


def test_the_instance_quota_is_a_slot_limit_too():
    pol = grid_policy()
    # Four instances left in the project (64 cores): a 1-core node keeps 1 + 3 x 16 = 49 of
    # them reachable, enough; with one instance left, it must be the largest.
    snap = snapshot(jobs=[job()], quotas={"default": Quota(instances=4)}, with_slots=pol)
    assert launched(planned(snap, pol)) == [1]
    records, instances, nodes, running = full_small_nodes(1)
    snap = snapshot(jobs=running + [job()], records=records, instances=instances,
                    nodes=nodes, quotas={"default": Quota(instances=1)}, with_slots=pol)
    assert launched(planned(snap, pol)) == [16]


def test_a_core_cap_below_the_slots_capacity_lowers_the_reserve():
    pol = grid_policy(max_cores=20)
    records, instances, nodes, running = full_small_nodes(5)
    snap = snapshot(jobs=running + [job("1.vm")], records=records, instances=instances,
                    nodes=nodes, with_slots=pol)
    # Capacity 20 cores: 5 + 1 + 4 x 16 reaches 3/4 of it anyway, so least waste stands.
    assert launched(planned(snap, pol)) == [1]
