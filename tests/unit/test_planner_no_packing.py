"""Policy.pack_multicore=False: a job of more than one core gets nodes no other job shares
(Dynamic Torque's behaviour, replayed by the simulator for comparison)."""
from __future__ import annotations

from dtserver.actions import LaunchInstance
from dtserver.model import NodeState
from dtserver.planning import plan
from dtserver.planning.invariants import check_plan
from tests.builders import LARGE, T0, job, node, policy, pool, record, request, snapshot

ONE_FLAVOR = policy(pool(flavors=(LARGE,)))
NO_PACKING = policy(pool(flavors=(LARGE,)), pack_multicore=False)


def launched(snap, pol) -> list[str]:
    result = plan(snap, pol, T0)
    check_plan(snap, pol, result)
    return [action.flavor for action in result.of_type(LaunchInstance)]


def test_multi_core_jobs_share_an_instance_by_default():
    jobs = [job(f"{n}.vm", req=request(cores=2)) for n in range(3)]
    assert launched(snapshot(jobs=jobs, with_slots=ONE_FLAVOR), ONE_FLAVOR) == ["m1.large"]


def test_without_packing_each_multi_core_job_gets_its_own_instance():
    jobs = [job(f"{n}.vm", req=request(cores=2)) for n in range(3)]
    assert launched(snapshot(jobs=jobs, with_slots=NO_PACKING), NO_PACKING) == ["m1.large"] * 3


def test_without_packing_serial_jobs_still_share():
    jobs = [job(f"{n}.vm") for n in range(8)]
    assert launched(snapshot(jobs=jobs, with_slots=NO_PACKING), NO_PACKING) == ["m1.large"]


def test_without_packing_a_multi_core_job_does_not_use_a_busy_node():
    busy = record("cloud-001", state=NodeState.BUSY, flavor=LARGE)
    nodes = [node("cloud-001", np=8, jobs=("9.vm",), used_cores=1)]
    jobs = [job("1.vm", req=request(cores=2))]
    snap = snapshot(jobs=jobs, nodes=nodes, records=[busy], with_slots=NO_PACKING)
    assert launched(snap, NO_PACKING) == ["m1.large"]
    assert launched(snapshot(jobs=jobs, nodes=nodes, records=[busy], with_slots=ONE_FLAVOR),
                    ONE_FLAVOR) == []


def test_without_packing_a_multi_core_job_takes_an_empty_idle_node():
    idle = record("cloud-001", state=NodeState.IDLE, flavor=LARGE)
    nodes = [node("cloud-001", np=8)]
    jobs = [job("1.vm", req=request(cores=4))]
    snap = snapshot(jobs=jobs, nodes=nodes, records=[idle], with_slots=NO_PACKING)
    assert launched(snap, NO_PACKING) == []
