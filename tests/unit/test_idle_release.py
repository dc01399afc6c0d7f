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


def arrivals(count: int, *, cores: int = 2, nodes: int = 1, properties=(),
             before=IDLE_SINCE):
    """`count` finished jobs that arrived evenly over the hour before `before`."""
    step = HOUR / count if count else HOUR
    return tuple(job(f"{i}.vm", state=JobState.COMPLETED, created=before - HOUR + step * i,
                     req=request(nodes, cores, properties=properties)) for i in range(count))


def recent(jobs=(), *, since=T0 - 3 * HOUR, boots=(120.0,)):
    return RecentDemand(since=since, arrivals=tuple(jobs), boot_seconds=tuple(boots))


def drained(snap, pol=None, now=T0 + seconds(31)):
    pol = pol or policy()
    result = plan(snap, pol, now)
    check_plan(snap, pol, result)
    return {action.hostname: action.reason for action in result.of_type(OfflineNode)}


def at_age(age: float):
    return IDLE_SINCE + seconds(age)


def test_idle_node_nothing_predicts_a_use_for_goes_at_the_first_check():
    snap = replace(snapshot(**idle_nodes(1)), recent=recent())
    assert drained(snap, now=at_age(59)) == {}
    reasons = drained(snap, now=at_age(60))
    assert list(reasons) == ["cloud-001"]
    assert "0 arrivals" in reasons["cloud-001"] and "waiting longer than 60 s" in \
        reasons["cloud-001"] and "120 s boot" in reasons["cloud-001"]


def test_nodes_beyond_what_the_arrival_rate_wants_go_at_the_first_check():
    # 30 two-node jobs an hour on two-core nodes, 120 s boots: two nodes wanted per boot.
    snap = replace(snapshot(**idle_nodes(4)), recent=recent(arrivals(30, nodes=2)))
    first = drained(snap, now=at_age(61))
    assert len(first) == 2
    assert all("predict 2.00 node(s) within a 120 s boot" in why for why in first.values())


def test_a_wanted_node_waits_out_the_gaps_between_arrivals_then_goes():
    # One job every 200 s: waiting 240 s serves each next one; 60 or 120 s would not.
    snap = replace(snapshot(**idle_nodes(1)), recent=recent(arrivals(18)))
    assert drained(snap, now=at_age(61)) == {}
    assert drained(snap, now=at_age(239)) == {}
    reasons = drained(snap, now=at_age(241))
    assert "waiting longer than 240 s costs more" in reasons["cloud-001"]


def test_the_longest_idle_nodes_go_first():
    layout = idle_nodes(3)
    records = layout["records"]
    layout["records"] = [replace(records[0], state_since=IDLE_SINCE - seconds(20)),
                         records[1], replace(records[2], state_since=IDLE_SINCE + seconds(5))]
    snap = replace(snapshot(**layout), recent=recent(arrivals(18)))   # one node wanted
    assert sorted(drained(snap, now=at_age(70))) == ["cloud-001", "cloud-002"]


def test_small_jobs_count_as_a_share_of_a_large_node():
    # 24 three-node jobs an hour: of one core a node they fill 0.3 of an 8-core node per
    # boot (the second node goes), of eight cores 2.4 nodes (both are wanted).
    layout = idle_nodes(2, flavor=LARGE)
    one_core = replace(snapshot(**layout), recent=recent(arrivals(24, cores=1, nodes=3)))
    assert "predict 0.30 node(s)" in drained(one_core, now=at_age(61))["cloud-002"]
    whole = replace(one_core, recent=recent(arrivals(24, cores=8, nodes=3)))
    assert drained(whole, now=at_age(61)) == {}


def test_arrivals_another_pool_serves_do_not_keep_a_node():
    pol = policy(pool(), pool("gpu", properties={"GPU"}))
    snap = replace(snapshot(**idle_nodes(1), with_slots=pol),
                   recent=recent(arrivals(18, properties={"GPU"})))
    assert list(drained(snap, pol, now=at_age(61))) == ["cloud-001"]
    snap = replace(snap, recent=recent(arrivals(18)))
    assert drained(snap, pol, now=at_age(61)) == {}


def test_a_history_shorter_than_its_window_releases_nothing_early():
    snap = replace(snapshot(**idle_nodes(1)), recent=recent(since=IDLE_SINCE - HOUR / 2))
    assert drained(snap, now=at_age(480)) == {}
    assert list(drained(snap, now=IDLE_SINCE + seconds(601))) == ["cloud-001"]


def test_fixed_idle_time_and_no_history_keep_max_idle_time():
    snap = snapshot(**idle_nodes(1))
    assert drained(snap, now=at_age(480)) == {}
    fixed = policy(idle_release=IdleRelease(enabled=False))
    assert drained(replace(snap, recent=recent()), fixed, now=at_age(480)) == {}
    assert fixed.idle_checks_of(snap.records[0]) == (seconds(600),)


def test_a_queued_job_that_fits_keeps_the_node():
    layout = idle_nodes(1)
    snap = replace(snapshot(**layout, jobs=[job("9.vm", created=T0)]), recent=recent())
    assert drained(snap, now=at_age(480)) == {}


def test_the_pool_floor_still_holds():
    snap = replace(snapshot(**idle_nodes(2)), recent=recent())
    assert len(drained(snap, policy(pool(min_nodes=1)), now=at_age(61))) == 1


def test_without_a_boot_seen_the_estimate_sets_the_horizon():
    # 30 two-node jobs an hour: one node per 60 s boot (one wanted), five per 300 s.
    snap = replace(snapshot(**idle_nodes(3)),
                   recent=recent(arrivals(30, nodes=2), boots=(60.0,)))
    assert len(drained(snap, now=at_age(61))) == 2
    unseen = replace(snap, recent=recent(arrivals(30, nodes=2), boots=()))
    assert drained(unseen, now=at_age(61)) == {}


def test_checks_double_from_min_idle_time_and_the_next_pass_comes_at_one():
    snap = replace(snapshot(**idle_nodes(1)), recent=recent())
    assert policy().idle_checks_of(snap.records[0]) == tuple(
        seconds(check) for check in (60, 120, 240, 480, 600))
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
