"""Look-ahead packing: a queued job waits for a busy node whose jobs end within a boot."""
from __future__ import annotations

from dataclasses import replace

from dtserver.actions import LaunchInstance
from dtserver.model import Chunk, JobState, NodeState, RecentDemand, Request
from dtserver.planning import plan
from dtserver.planning.invariants import check_plan
from tests.builders import (
    SMALL, T0, instance, job, node, policy, record, request, seconds, snapshot)


def running(job_id: str, host: str, *, ends_in: float, cores: int = 2):
    """A job on `host` that started 100 s ago and whose walltime ends `ends_in` from T0."""
    limited = Request((Chunk(1, cores),), walltime_seconds=int(100 + ends_in))
    return replace(job(job_id, state=JobState.RUNNING, req=limited, exec_hosts=[host]),
                   started=T0 - seconds(100))


def busy_cluster(*ends_in: float, queued=(), recent=None):
    hosts = [f"cloud-{i:03d}" for i in range(1, len(ends_in) + 1)]
    jobs = [running(f"r{i}.vm", host, ends_in=end)
            for i, (host, end) in enumerate(zip(hosts, ends_in))]
    snap = snapshot(
        jobs=jobs + list(queued),
        records=[record(host, state=NodeState.BUSY, instance_id=f"i-{i}")
                 for i, host in enumerate(hosts)],
        instances=[instance(f"i-{i}", name=host) for i, host in enumerate(hosts)],
        nodes=[node(host, states=("job-exclusive",), jobs=[f"r{i}.vm"], used_cores=2)
               for i, host in enumerate(hosts)])
    return replace(snap, recent=recent)


def planned(snap, pol=None):
    pol = pol or policy()
    result = plan(snap, pol, T0)
    check_plan(snap, pol, result)
    return result


def test_a_job_waits_for_a_node_whose_jobs_end_within_a_boot():
    result = planned(busy_cluster(60, queued=[job("9.vm", req=request(1, 2))]))
    assert result.of_type(LaunchInstance) == []
    (verdict,) = result.verdicts
    assert (verdict.status, verdict.reason) == (
        "waiting-job-end", "fits on cloud-001 when the jobs there end, within a boot")


def test_a_node_that_frees_later_than_a_boot_does_not_hold_the_job_back():
    later = busy_cluster(3600, queued=[job("9.vm", req=request(1, 2))])
    assert [a.flavor for a in planned(later).of_type(LaunchInstance)] == [SMALL.name]
    unknown = replace(later, jobs=tuple(replace(j, started=None) for j in later.jobs))
    assert planned(unknown).of_type(LaunchInstance)


def test_the_boots_seen_set_the_horizon():
    quick_boots = RecentDemand(since=T0 - seconds(7200), boot_seconds=(30.0, 40.0, 50.0))
    snap = busy_cluster(60, queued=[job("9.vm", req=request(1, 2))], recent=quick_boots)
    assert planned(snap).of_type(LaunchInstance)


def test_without_lookahead_the_job_gets_a_node_launched():
    snap = busy_cluster(60, queued=[job("9.vm", req=request(1, 2))])
    assert planned(snap, policy(lookahead=False)).of_type(LaunchInstance)


def test_a_job_of_distinct_nodes_counts_a_freeing_node_once():
    snap = busy_cluster(60, queued=[job("9.vm", req=request(2, 2))])
    assert len(planned(snap).of_type(LaunchInstance)) == 1


def test_the_plan_is_due_again_when_a_busy_node_comes_within_a_boot():
    # 300 s boots (none seen yet): the node ending in 400 s counts from T0 + 100 s.
    snap = busy_cluster(400, queued=[job("9.vm", req=request(1, 2))])
    assert planned(snap).next_due == T0 + seconds(100)
    assert planned(busy_cluster(400)).next_due is None    # nothing waits
