"""Hints only pre-warm: what a hint no queued job has matched may make the planner launch."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from dtserver.actions import ExpireHint, LaunchInstance, OfflineNode
from dtserver.model import ArraySpec, HintStrikes, NodeState, Request
from dtserver.planning import plan
from dtserver.planning.invariants import check_plan
from dtserver.policy import HintTrust
from tests.builders import (
    LARGE, SMALL, T0, hint, instance, job, node, policy, pool, record, request, seconds, snapshot)

SOON = T0 + seconds(1)


def planned(snap, pol=None, now=SOON):
    pol = pol or policy()
    result = plan(snap, pol, now)
    check_plan(snap, pol, result)
    return result


def launched_cores(result) -> int:
    return sum(action.cores for action in result.of_type(LaunchInstance))


def array_request(size: int, cores: int = 8, slot_limit: int | None = None) -> Request:
    return Request(request(1, cores).chunks, array=ArraySpec(size, slot_limit=slot_limit))


def test_one_array_hint_with_no_job_buys_one_node_not_the_pool():
    # The attack of the review: 100,000 indices, nodes=1:ppn=8, no job ever submitted.
    flood = hint(user="root", req=array_request(100_000), count=100_000)
    result = planned(snapshot(hints=[flood]))
    assert launched_cores(result) == LARGE.cores          # one node of the largest flavor
    assert len(result.of_type(LaunchInstance)) == 1


def test_an_array_hint_counts_for_a_few_indices_at_most():
    pol = policy(hints=HintTrust(cores_per_user=64, max_array=3))
    result = planned(snapshot(hints=[hint(req=array_request(1000, cores=2), count=1000)]), pol)
    assert launched_cores(result) == 3 * 2


def test_the_budget_is_per_claimed_user():
    hints = [hint(index, user=f"user{index}", req=request(1, 8), source=f"192.0.2.{index}")
             for index in range(1, 4)]
    result = planned(snapshot(hints=hints))
    assert launched_cores(result) == 3 * 8
    more = hints + [hint(9, user="user1", req=request(1, 8), source="192.0.2.1")]
    assert launched_cores(planned(snapshot(hints=more))) == 3 * 8


def test_one_source_claiming_many_users_is_bounded_by_the_source_budget():
    hints = [hint(index, user=f"user{index}", req=request(1, 8)) for index in range(1, 20)]
    result = planned(snapshot(hints=hints))
    assert launched_cores(result) == 2 * 8                 # 2 x one node, one source
    assert any("beyond their budget" in note for note in result.notes)


def test_the_total_budget_bounds_many_sources():
    hints = [hint(index, user=f"user{index}", req=request(1, 8), source=f"192.0.2.{index}")
             for index in range(1, 40)]
    pol = policy(pool(max_nodes=100))
    assert launched_cores(planned(snapshot(hints=hints, with_slots=pol), pol)) == 8 * 8


def test_a_user_whose_hints_keep_expiring_unmatched_has_no_hint_credit():
    snap = snapshot(hints=[hint(user="mallory")], hint_strikes=HintStrikes({"mallory": 3}))
    result = planned(snap)
    assert result.of_type(LaunchInstance) == []
    assert any("no hint credit" in note and "mallory" in note for note in result.notes)
    honest = snapshot(hints=[hint(user="alice")], hint_strikes=HintStrikes({"alice": 2}))
    assert launched_cores(planned(honest)) == SMALL.cores


def test_an_unmatched_expiry_is_a_strike_and_a_matched_hint_is_not():
    expired = planned(snapshot(hints=[hint(user="mallory")]), now=T0 + seconds(25))
    assert expired.of_type(ExpireHint) == [ExpireHint(
        1, "expired before its job was seen", strike_user="mallory", strike_source="192.0.2.10")]
    matched = planned(snapshot(jobs=[job(created=SOON)], hints=[hint()]),
                      now=T0 + seconds(2))
    assert [action.strike_user for action in matched.of_type(ExpireHint)] == [None]


def test_a_queued_job_is_never_bounded_by_the_hint_budget():
    jobs = [job(f"{index}.vm", owner="mallory", req=request(1, 8)) for index in range(6)]
    snap = snapshot(jobs=jobs, hint_strikes=HintStrikes({"mallory": 99},
                                                                  {"192.0.2.10": 99}))
    assert launched_cores(planned(snap)) == 6 * 8


def test_a_launch_for_hints_alone_is_a_prewarm_and_one_for_a_job_is_not():
    [prewarm] = planned(snapshot(hints=[hint()])).of_type(LaunchInstance)
    assert prewarm.prewarm
    [ordinary] = planned(snapshot(jobs=[job()])).of_type(LaunchInstance)
    assert not ordinary.prewarm


def test_a_prewarm_node_that_ran_no_job_is_drained_after_the_short_idle_time():
    pol = policy(hints=HintTrust(idle_timeout=timedelta(seconds=60)))
    prewarm = replace(record("cloud-001", state=NodeState.IDLE, since=T0), prewarm=True)
    ordinary = record("cloud-002", state=NodeState.IDLE, since=T0, instance_id="i-2")
    snap = snapshot(records=[prewarm, ordinary],
                    instances=[instance(), instance("i-2", name="cloud-002")],
                    nodes=[node("cloud-001"), node("cloud-002")])
    result = planned(snap, pol, now=T0 + seconds(61))
    assert [action.hostname for action in result.of_type(OfflineNode)] == ["cloud-001"]
    waiting = planned(snap, pol, now=T0 + seconds(30))
    assert waiting.of_type(OfflineNode) == []
    assert waiting.revisit_after == timedelta(seconds=30)   # the prewarm timer, not 570 s



def test_a_source_whose_hints_keep_expiring_unmatched_has_no_hint_credit():
    # One sender claiming a new user for every hint never collects three strikes a user.
    strikes = HintStrikes({f"user{index}": 1 for index in range(12)}, {"192.0.2.10": 12})
    snap = snapshot(hints=[hint(user="user99")], hint_strikes=strikes)
    assert planned(snap).of_type(LaunchInstance) == []
    elsewhere = snapshot(hints=[hint(user="user99", source="192.0.2.11")], hint_strikes=strikes)
    assert launched_cores(planned(elsewhere)) == SMALL.cores
