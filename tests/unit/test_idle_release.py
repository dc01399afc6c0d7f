"""Demand-following idle time: idle nodes nothing will want soon go before max_idle_time."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from dtserver.actions import OfflineNode
from dtserver.history import DemandHistory
from dtserver.model import JobState, NodeState, RecentDemand
from dtserver.planning import plan
from dtserver.planning.invariants import check_plan
from dtserver.policy import IdleRelease
from tests.builders import (
    LARGE, SMALL, T0, instance, job, node, policy, pool, record, request, seconds, snapshot)

HOUR = timedelta(hours=1)
KEEP = 2 * HOUR
IDLE_SINCE = T0 - seconds(30)


def idle_nodes(count: int, *, since=IDLE_SINCE, flavor=SMALL):
    records = [record(f"cloud-{i:03d}", since=since, instance_id=f"i-{i}", flavor=flavor)
               for i in range(1, count + 1)]
    return dict(records=records,
                instances=[instance(f"i-{i}", name=f"cloud-{i:03d}")
                           for i in range(1, count + 1)],
                nodes=[node(f"cloud-{i:03d}", np=flavor.cores) for i in range(1, count + 1)])


def arrivals(count: int, *, cores: int = 2, properties=(), before=IDLE_SINCE):
    """`count` finished jobs that arrived evenly over the hour before `before`."""
    step = HOUR / count if count else HOUR
    return tuple(job(f"{i}.vm", state=JobState.COMPLETED, created=before - HOUR + step * i,
                     req=request(1, cores, properties=properties)) for i in range(count))


def recent(jobs=(), *, since=T0 - 3 * HOUR, boots=(120.0,)):
    return RecentDemand(since=since, arrivals=tuple(jobs), boot_seconds=tuple(boots))


def drained(snap, pol=None, now=T0 + seconds(31)):
    pol = pol or policy()
    result = plan(snap, pol, now)
    check_plan(snap, pol, result)
    return {action.hostname: action.reason for action in result.of_type(OfflineNode)}


def test_idle_node_nothing_predicts_a_use_for_goes_after_the_short_grace():
    snap = replace(snapshot(**idle_nodes(1)), recent=recent())
    assert drained(snap, now=T0 + seconds(29)) == {}
    reasons = drained(snap)
    assert list(reasons) == ["cloud-001"]
    assert "0.00 node(s)" in reasons["cloud-001"] and "120 s boot" in reasons["cloud-001"]


def test_nodes_the_arrival_rate_wants_within_a_boot_are_kept():
    # 60 two-core jobs an hour on two-core nodes, 120 s boots: two nodes wanted per boot.
    snap = replace(snapshot(**idle_nodes(4)), recent=recent(arrivals(60)))
    assert len(drained(snap)) == 2


def test_the_longest_idle_nodes_go_first():
    layout = idle_nodes(3)
    records = layout["records"]
    layout["records"] = [replace(records[0], state_since=IDLE_SINCE - seconds(20)),
                         records[1], replace(records[2], state_since=IDLE_SINCE + seconds(5))]
    snap = replace(snapshot(**layout), recent=recent(arrivals(30)))   # one node per boot
    assert sorted(drained(snap, now=T0 + seconds(40))) == ["cloud-001", "cloud-002"]


def test_small_jobs_count_as_a_share_of_a_large_node():
    # 60 one-core jobs an hour fill 60/8 of an 8-core node: under one node per two boots.
    layout = idle_nodes(1, flavor=LARGE)
    snap = replace(snapshot(**layout), recent=recent(arrivals(60, cores=1)))
    assert list(drained(snap)) == ["cloud-001"]
    busy_hour = recent(arrivals(240, cores=1))   # a whole node's cores per boot
    assert drained(replace(snap, recent=busy_hour)) == {}


def test_arrivals_another_pool_serves_do_not_keep_a_node():
    pol = policy(pool(), pool("gpu", properties={"GPU"}))
    snap = replace(snapshot(**idle_nodes(1), with_slots=pol),
                   recent=recent(arrivals(120, properties={"GPU"})))
    assert list(drained(snap, pol)) == ["cloud-001"]
    snap = replace(snap, recent=recent(arrivals(120)))
    assert drained(snap, pol) == {}


def test_a_history_shorter_than_its_window_releases_nothing_early():
    snap = replace(snapshot(**idle_nodes(1)), recent=recent(since=IDLE_SINCE - HOUR / 2))
    assert drained(snap) == {}
    assert list(drained(snap, now=IDLE_SINCE + seconds(601))) == ["cloud-001"]


def test_fixed_idle_time_and_no_history_keep_max_idle_time():
    snap = snapshot(**idle_nodes(1))
    assert drained(snap) == {}
    fixed = policy(idle_release=IdleRelease(enabled=False))
    assert drained(replace(snap, recent=recent()), fixed) == {}


def test_a_queued_job_that_fits_keeps_the_node():
    layout = idle_nodes(1)
    snap = replace(snapshot(**layout, jobs=[job("9.vm", created=T0)]), recent=recent())
    assert drained(snap) == {}


def test_the_pool_floor_still_holds():
    snap = replace(snapshot(**idle_nodes(2)), recent=recent())
    assert len(drained(snap, policy(pool(min_nodes=1)))) == 1


def test_without_a_boot_seen_the_estimate_sets_the_horizon():
    # 15 jobs an hour: a quarter node per 60 s boot (release), 1.25 per 300 s (keep).
    snap = replace(snapshot(**idle_nodes(1)), recent=recent(arrivals(15), boots=(60.0,)))
    assert list(drained(snap)) == ["cloud-001"]
    assert drained(replace(snap, recent=recent(arrivals(15), boots=()))) == {}


def test_the_next_pass_comes_when_the_grace_ends():
    snap = replace(snapshot(**idle_nodes(1)), recent=recent())
    assert plan(snap, policy(), T0).revisit_after == seconds(30)


# --- the history the reconciler keeps -----------------------------------------------------

def test_history_keeps_each_arrival_once_by_ctime_and_forgets_old_ones():
    history = DemandHistory(started=T0)
    first = history.observe([job("2.vm", created=T0 + seconds(5)),
                             job("1.vm", created=T0 + seconds(1))], [], T0 + seconds(10), KEEP)
    assert first.since == T0
    assert [arrival.id for arrival in first.arrivals] == ["1.vm", "2.vm"]
    again = history.observe([job("2.vm", created=T0 + seconds(5),
                                 state=JobState.RUNNING)], [], T0 + seconds(20), KEEP)
    assert [arrival.id for arrival in again.arrivals] == ["1.vm", "2.vm"]
    later = history.observe([], [], T0 + 2 * HOUR + seconds(3), KEEP)
    assert [arrival.id for arrival in later.arrivals] == ["2.vm"]


def test_history_measures_boots_it_watched_from_start_to_ready():
    history = DemandHistory(started=T0)
    booting = record(state=NodeState.BOOTING, since=T0, created=T0)
    already_idle = record("cloud-002", since=T0, created=T0 - HOUR, instance_id="i-2")
    history.observe([], [booting, already_idle], T0, KEEP)
    ready = replace(booting, state=NodeState.IDLE, state_since=T0 + seconds(95))
    seen = history.observe([], [ready, already_idle], T0 + seconds(95), KEEP)
    assert seen.boot_seconds == (95.0,)


def test_an_unreadable_torque_restarts_the_history():
    history = DemandHistory(started=T0)
    history.observe([job(created=T0)], [], T0 + seconds(10), KEEP)
    gap = history.observe(None, [], T0 + seconds(20), KEEP)
    assert gap.since == T0 + seconds(20) and gap.arrivals == ()
