"""The pure planner, one behaviour per test, no mocks."""
from __future__ import annotations

import pytest

from dtserver.actions import (
    AdoptInstance, ClearNode, CompleteIntent, DeleteInstance, ExpireHint, JoinNode,
    LaunchInstance, MarkEntryReady, OfflineNode, PokeScheduler, RegisterSlot, ReleaseNode,
    SetSleeping, Transition, VerdictStatus)
from dtserver.model import (
    DrainKind, ErrorKind, IntentKind, IntentStatus, JobState, NodeState, PoolHealth, Quota)
from dtserver.planning import SCHEDULER_STALL, SETTLE_POLL, plan
from dtserver.planning.invariants import check_plan
from dtserver.planning.repair import SLOT_NOTE, next_health
from tests.builders import (
    LARGE, SMALL, T0, hint, instance, intent, job, node, policy, pool, record, request,
    seconds, snapshot)


def planned(snap, pol=None, now=T0):
    pol = pol or policy()
    result = plan(snap, pol, now)
    check_plan(snap, pol, result)
    return result


def launched(result) -> list[tuple[str, str]]:
    return [(a.hostname, a.flavor) for a in result.of_type(LaunchInstance)]


def verdict(result, job_id):
    return next(v for v in result.verdicts if v.job_id == job_id)


def transitions(result) -> list[tuple[str, NodeState]]:
    return [(a.record_id, a.state) for a in result.of_type(Transition)]


# --- demand and packing -------------------------------------------------------------------

def test_one_queued_job_launches_the_smallest_flavor_that_fits():
    result = planned(snapshot(jobs=[job()], with_slots=policy()), policy())
    assert launched(result) == [("cloud-001", "m1.small")]
    assert verdict(result, "1.vm").status == "launching"


def test_eight_single_core_jobs_share_one_large_instance():
    jobs = [job(f"{i}.vm") for i in range(8)]
    result = planned(snapshot(jobs=jobs))
    assert launched(result) == [("cloud-001", "m1.large")]


def test_multi_node_job_gets_distinct_nodes():
    result = planned(snapshot(jobs=[job(req=request(2, 4))]))
    assert launched(result) == [("cloud-001", "m1.large"), ("cloud-002", "m1.large")]


def test_procs_request_may_share_one_node():
    result = planned(snapshot(jobs=[job(req=request(8, 1, distinct=False))]))
    assert launched(result) == [("cloud-001", "m1.large")]


def test_least_waste_prefers_small_flavors_when_a_large_one_would_idle():
    result = planned(snapshot(jobs=[job(req=request(6, 1, distinct=False))]))
    assert launched(result) == [("cloud-001", "m1.small"), ("cloud-002", "m1.small"),
                                ("cloud-003", "m1.small")]


def test_multi_node_job_launches_all_its_nodes_or_none():
    # Two slots, one held by a full node: the job's second node finds no slot this pass.
    pol = policy(pool(max_nodes=2))
    snap = snapshot(jobs=[job("2.vm", req=request(2, 1))], with_slots=pol,
                    records=[record(state=NodeState.BUSY)], instances=[instance()],
                    nodes=[node("cloud-001", states=("job-exclusive",), jobs=["1.vm"],
                                used_cores=2)])
    result = planned(snap, pol)
    assert launched(result) == []
    assert verdict(result, "2.vm").status == "waiting-capacity"
    assert "max_nodes=2" in verdict(result, "2.vm").reason


def test_memory_picks_a_larger_flavor():
    result = planned(snapshot(jobs=[job(req=request(1, 1, mem_mb=8000))]))
    assert launched(result) == [("cloud-001", "m1.large")]


def test_capacity_already_booting_is_subtracted():
    booting = record("cloud-001", state=NodeState.BOOTING)
    snap = snapshot(jobs=[job()], records=[booting],
                    instances=[instance(status="BUILD", addresses=())])
    result = planned(snap)
    assert launched(result) == []
    assert verdict(result, "1.vm").status == "waiting-boot"


def test_a_node_qstat_shows_running_a_job_is_busy_though_pbsnodes_lists_none():
    rec = record(state=NodeState.BUSY, since=T0)
    snap = snapshot(jobs=[job("7.vm", state=JobState.RUNNING, exec_hosts=["cloud-001"])],
                    records=[rec], instances=[instance(entry_announced=True)],
                    nodes=[node("cloud-001")])
    result = planned(snap, now=T0 + seconds(3600))
    assert transitions(result) == [] and not result.of_type(OfflineNode)


def test_job_that_fits_an_idle_node_waits_for_the_scheduler():
    snap = snapshot(jobs=[job()], records=[record()], instances=[instance()],
                    nodes=[node("cloud-001")])
    result = planned(snap)
    assert launched(result) == []
    assert verdict(result, "1.vm").status == "waiting-scheduler"


def test_job_left_queued_on_a_ready_node_is_reported_as_a_scheduler_stall_and_pokes_it():
    snap = snapshot(jobs=[job(created=T0)], records=[record(since=T0)],
                    instances=[instance(entry_announced=True)], nodes=[node("cloud-001")])
    quiet = planned(snap, now=T0 + SCHEDULER_STALL - seconds(1))
    assert not quiet.of_type(PokeScheduler) and not quiet.notes
    stalled = planned(snap, now=T0 + SCHEDULER_STALL)
    assert stalled.of_type(PokeScheduler)
    assert any("1.vm on cloud-001" in note and "is pbs_sched running?" in note
               for note in stalled.notes)


def test_a_node_that_just_turned_ready_is_no_scheduler_stall():
    snap = snapshot(jobs=[job(created=T0)], records=[record(since=T0 + seconds(100))],
                    instances=[instance(entry_announced=True)], nodes=[node("cloud-001")])
    result = planned(snap, now=T0 + seconds(110))
    assert not result.of_type(PokeScheduler) and not result.notes


def test_busy_node_has_no_room_so_a_new_instance_is_launched():
    snap = snapshot(jobs=[job("2.vm")], records=[record(state=NodeState.BUSY)],
                    instances=[instance()],
                    nodes=[node("cloud-001", states=("job-exclusive",), jobs=["1.vm"],
                                used_cores=2)])
    assert launched(planned(snap)) == [("cloud-002", "m1.small")]


def test_job_larger_than_every_flavor_says_so():
    result = planned(snapshot(jobs=[job(req=request(1, 32))]))
    assert launched(result) == []
    assert verdict(result, "1.vm").status == "unservable"
    assert "larger than any flavor" in verdict(result, "1.vm").reason


def test_job_with_a_property_no_pool_has_is_unservable():
    result = planned(snapshot(jobs=[job(req=request(properties={"bigmem"}))]))
    assert "bigmem" in verdict(result, "1.vm").reason


def test_account_pool_serves_its_account_first():
    tenant = pool("chem", accounts={"chemistry"})
    pol = policy(pool(), tenant)
    result = planned(snapshot(jobs=[job(account="chemistry")]), pol)
    assert [a.pool for a in result.of_type(LaunchInstance)] == ["chem"]


def test_held_job_is_not_demand_and_says_why():
    result = planned(snapshot(jobs=[job(state=JobState.HELD)]))
    assert launched(result) == []
    assert verdict(result, "1.vm").status == "not-eligible"


def test_unmonitored_queue_is_not_demand():
    result = planned(snapshot(jobs=[job(queue="other")]), policy(queues=frozenset({"batch"})))
    assert launched(result) == []
    assert "not monitored" in verdict(result, "1.vm").reason


def test_global_core_cap_limits_launches():
    jobs = [job(f"{i}.vm", req=request(1, 8)) for i in range(3)]
    result = planned(snapshot(jobs=jobs), policy(max_cores=16))
    assert len(launched(result)) == 2
    assert "max_cores=16" in verdict(result, "2.vm").reason


def test_launches_in_flight_count_against_max_booting():
    booting = [record(f"cloud-00{i}", state=NodeState.BOOTING, instance_id=f"i-{i}")
               for i in (1, 2)]
    instances = [instance(f"i-{i}", name=f"cloud-00{i}", status="BUILD", addresses=())
                 for i in (1, 2)]
    jobs = [job(f"{i}.vm", req=request(1, 8)) for i in range(3)]
    result = planned(snapshot(jobs=jobs, records=booting, instances=instances),
                     policy(max_booting=3))
    assert len(launched(result)) == 1


def test_quota_limits_launches():
    jobs = [job(f"{i}.vm", req=request(1, 2)) for i in range(3)]
    result = planned(snapshot(jobs=jobs, quotas={"default": Quota(cores=4)}))
    assert len(launched(result)) == 2
    assert "quota" in verdict(result, "2.vm").reason


def test_pools_of_one_project_share_its_quota():
    gpu = pool("gpu", properties={"CLOUD", "gpu"})
    jobs = [job("1.vm", req=request(1, 2)), job("2.vm", req=request(1, 2, properties={"gpu"}))]
    result = planned(snapshot(jobs=jobs, quotas={"default": Quota(cores=2)},
                              with_slots=policy(pool(), gpu)), policy(pool(), gpu))
    assert len(launched(result)) == 1


def test_sleep_mode_launches_nothing_but_still_deletes():
    idle = record(since=T0 - seconds(700))
    snap = snapshot(jobs=[job()], records=[idle], instances=[instance()],
                    nodes=[node("cloud-001", jobs=["9.vm"], states=("job-exclusive",),
                                used_cores=2)], sleeping=True)
    result = planned(snap)
    assert launched(result) == []
    assert "sleep mode" in verdict(result, "1.vm").reason
    offline = record(state=NodeState.OFFLINE, since=T0 - seconds(30), drain=DrainKind.IDLE)
    snap = snapshot(records=[offline], instances=[instance()],
                    nodes=[node("cloud-001", states=("offline",))], sleeping=True)
    assert isinstance(planned(snap).actions[0], Transition)
    assert planned(snap).of_type(DeleteInstance)


def test_pool_in_backoff_does_not_launch_and_says_until_when():
    health = PoolHealth("cloud", consecutive_failures=1, backoff_until=T0 + seconds(60),
                        last_error=ErrorKind.CAPACITY, last_message="Quota exceeded")
    result = planned(snapshot(jobs=[job()], pool_health={"cloud": health}))
    assert launched(result) == []
    assert "backing off until" in verdict(result, "1.vm").reason
    assert "capacity" in verdict(result, "1.vm").reason


def test_stopped_pool_needs_an_admin():
    health = PoolHealth("cloud", consecutive_failures=5, stopped=True)
    result = planned(snapshot(jobs=[job()], pool_health={"cloud": health}))
    assert launched(result) == []
    assert "reset-pool" in verdict(result, "1.vm").reason


def test_unreadable_cloud_launches_nothing():
    result = planned(snapshot(jobs=[job()], instances=None))
    assert launched(result) == []


def test_min_nodes_are_launched_without_demand():
    result = planned(snapshot(), policy(pool(min_nodes=2)))
    assert launched(result) == [("cloud-001", "m1.small"), ("cloud-002", "m1.small")]


def test_a_job_qstat_could_not_read_gets_a_verdict_and_no_node():
    result = planned(snapshot(jobs=[job(state=JobState.UNKNOWN)]))
    assert launched(result) == []
    assert verdict(result, "1.vm").status == "not-eligible"
    assert "could not be read" in verdict(result, "1.vm").reason


# --- hints --------------------------------------------------------------------------------

def test_a_live_hint_launches_before_the_job_is_seen():
    result = planned(snapshot(hints=[hint()]), now=T0 + seconds(1))
    assert launched(result) == [("cloud-001", "m1.small")]


def test_a_hint_matched_by_its_job_expires_and_does_not_count_twice():
    snap = snapshot(jobs=[job(created=T0 + seconds(1))], hints=[hint()])
    result = planned(snap, now=T0 + seconds(2))
    assert result.of_type(ExpireHint)[0].reason.startswith("matched job 1.vm")
    assert launched(result) == [("cloud-001", "m1.small")]


def test_a_hint_expires_after_its_ttl():
    result = planned(snapshot(hints=[hint()]), now=T0 + seconds(25))
    assert [a.hint_id for a in result.of_type(ExpireHint)] == [1]
    assert launched(result) == []


def test_an_array_hint_counts_up_to_its_slot_limit():
    from dtserver.model import ArraySpec, Request
    req = request(1, 2)
    arr = Request(req.chunks, array=ArraySpec(10, slot_limit=3))
    result = planned(snapshot(hints=[hint(req=arr, count=10)]), now=T0 + seconds(1))
    assert len(launched(result)) == 3


# --- lifecycle ------------------------------------------------------------------------------

def test_launching_record_found_in_nova_is_adopted():
    rec = record(state=NodeState.LAUNCHING, instance_id=None)
    result = planned(snapshot(records=[rec], instances=[instance(status="BUILD")]))
    assert result.of_type(AdoptInstance) == [AdoptInstance(rec.id, "i-1")]


def test_launching_record_never_seen_in_nova_is_dropped_after_grace():
    rec = record(state=NodeState.LAUNCHING, instance_id=None, since=T0)
    assert transitions(planned(snapshot(records=[rec]), now=T0 + seconds(60))) == []
    result = planned(snapshot(records=[rec]), now=T0 + seconds(200))
    assert transitions(result) == [(rec.id, NodeState.DELETED)]


def test_active_instance_joins_torque():
    rec = record(state=NodeState.BOOTING)
    result = planned(snapshot(records=[rec], instances=[instance()]))
    join = result.of_type(JoinNode)[0]
    assert (join.hostname, join.address, join.np) == ("cloud-001", "169.254.80.100", 2)


def test_boot_timeout_fails_the_node():
    rec = record(state=NodeState.BOOTING, since=T0)
    result = planned(snapshot(records=[rec], instances=[instance(status="BUILD", addresses=())]),
                     now=T0 + seconds(1300))
    fail = result.of_type(Transition)[0]
    assert (fail.state, fail.failure) == (NodeState.FAILED, ErrorKind.BOOT)


def test_no_valid_host_error_is_a_capacity_failure():
    rec = record(state=NodeState.BOOTING)
    result = planned(snapshot(records=[rec], instances=[
        instance(status="ERROR", fault="No valid host was found. ")]))
    assert result.of_type(Transition)[0].failure is ErrorKind.CAPACITY


def test_registered_node_whose_mom_reported_becomes_idle_and_pokes_the_scheduler():
    rec = record(state=NodeState.REGISTERED)
    result = planned(snapshot(records=[rec], instances=[instance()], nodes=[node("cloud-001")]))
    assert transitions(result) == [(rec.id, NodeState.IDLE)]
    assert result.of_type(PokeScheduler)


def test_registered_node_not_yet_reported_waits_once_its_entry_is_announced():
    rec = record(state=NodeState.REGISTERED)
    snap = snapshot(records=[rec], instances=[instance(entry_announced=True)],
                    nodes=[node("cloud-001", states=("down",), reported=False)])
    result = planned(snap)
    assert result.actions == ()
    assert result.revisit_after == SETTLE_POLL     # its mom is due to report any second


def test_settled_entry_is_announced_to_the_instance_so_its_mom_starts():
    rec = record(state=NodeState.REGISTERED)
    snap = snapshot(records=[rec], instances=[instance()],
                    nodes=[node("cloud-001", states=("down",), reported=False)])
    assert planned(snap).actions == (MarkEntryReady(rec.id, "i-1", "cloud-001"),)


def test_settling_entry_is_neither_announced_nor_changed_and_is_looked_at_again_soon():
    rec = record(state=NodeState.REGISTERED)
    settling = node("cloud-001", states=("down", "offline", "MOM-list-not-sent"),
                    reported=False)
    result = planned(snapshot(records=[rec], instances=[instance()], nodes=[settling]),
                     now=T0 + seconds(120))
    assert result.actions == ()
    assert result.revisit_after == SETTLE_POLL


def test_quiet_cluster_waits_for_the_regular_pass():
    rec = record(state=NodeState.BUSY)
    result = planned(snapshot(records=[rec], instances=[instance(entry_announced=True)],
                              nodes=[node("cloud-001", jobs=["3.vm"])]), now=T0 + seconds(10))
    assert (result.actions, result.revisit_after) == ((), None)


def test_the_next_pass_comes_when_the_first_idle_timer_ends_and_the_drain_right_after():
    rec = record(state=NodeState.IDLE, since=T0)
    snap = snapshot(records=[rec], instances=[instance(entry_announced=True)],
                    nodes=[node("cloud-001")])
    assert planned(snap, now=T0 + seconds(590)).revisit_after == seconds(10)
    offlined = planned(snap, now=T0 + seconds(600))
    assert offlined.of_type(OfflineNode) and offlined.revisit_after == SETTLE_POLL


@pytest.mark.parametrize("states,note", [
    (("offline",), None),                                     # node_status restored offline
    (("offline",), "dynamictorque: slot, no instance"),       # and node_note the slot note
    (("free",), "dynamictorque: slot, no instance"),          # the note alone
    (("offline",), "someone's maintenance note"),             # offline without our drain
])
def test_owned_node_offline_or_noted_without_our_drain_is_cleared(states, note):
    rec = record(state=NodeState.IDLE)
    result = planned(snapshot(records=[rec], instances=[instance(entry_announced=True)],
                              nodes=[node("cloud-001", states=states, note=note)]),
                     now=T0 + seconds(10))
    assert result.of_type(ClearNode) == [ClearNode(rec.id, "cloud-001", result.of_type(
        ClearNode)[0].reason)]
    assert not result.of_type(OfflineNode)


def test_owned_node_with_a_note_of_someone_else_is_left_alone():
    rec = record(state=NodeState.BUSY)
    result = planned(snapshot(records=[rec], instances=[instance(entry_announced=True)],
                              nodes=[node("cloud-001", jobs=["5.vm"], note="check fan")]))
    assert result.of_type(ClearNode) == []


def test_drained_node_is_not_cleared():
    rec = record(state=NodeState.OFFLINE, drain=DrainKind.ADMIN)
    result = planned(snapshot(records=[rec], instances=[instance(entry_announced=True)],
                              nodes=[node("cloud-001", states=("offline",), jobs=["5.vm"],
                                          note="dynamictorque: draining: killed")]))
    assert result.of_type(ClearNode) == []


def test_drain_recorded_but_transition_lost_is_resumed():
    rec = record(state=NodeState.IDLE, drain=DrainKind.IDLE)
    result = planned(snapshot(records=[rec], instances=[instance(entry_announced=True)],
                              nodes=[node("cloud-001", states=("offline",),
                                          note="dynamictorque: draining: idle")]))
    assert transitions(result) == [(rec.id, NodeState.OFFLINE)]
    assert result.of_type(ClearNode) == []


def test_failed_node_is_released_and_deleted_with_the_record_written_first():
    rec = record(state=NodeState.FAILED)
    result = planned(snapshot(records=[rec], instances=[instance()],
                              nodes=[node("cloud-001", states=("down",))]))
    kinds = [type(a) for a in result.actions]
    assert kinds == [Transition, ReleaseNode, DeleteInstance]
    assert result.actions[0].state is NodeState.DELETING


def test_deletion_cut_short_before_the_release_is_resumed_at_once():
    rec = record(state=NodeState.DELETING)
    just_joined = node("cloud-001", states=("down", "offline", "MOM-list-not-sent"),
                       reported=False)
    for entry in ([node("cloud-001", states=("offline",), note="dynamictorque: draining")],
                  [just_joined], []):
        result = planned(snapshot(records=[rec], instances=[instance()], nodes=entry,
                                  with_slots=None), now=T0 + seconds(5))
        assert [type(a) for a in result.actions
                if getattr(a, "record_id", None) == rec.id] == [ReleaseNode, DeleteInstance]
        # The record still holds the slot: no second registration of a missing entry.
        assert "cloud-001" not in {a.hostname for a in result.of_type(RegisterSlot)}


def test_released_slot_of_a_deleting_record_waits_for_nova():
    rec = record(state=NodeState.DELETING)
    slot = node("cloud-001", states=("down", "offline"), np=8, reported=False, note=SLOT_NOTE)
    result = planned(snapshot(records=[rec], instances=[instance()], nodes=[slot]),
                     now=T0 + seconds(5))
    assert result.actions == ()


def test_deleting_record_is_closed_once_nova_forgot_the_instance():
    rec = record(state=NodeState.DELETING)
    assert transitions(planned(snapshot(records=[rec]))) == [(rec.id, NodeState.DELETED)]


def test_node_down_too_long_fails_but_one_with_a_job_is_kept():
    rec = record(state=NodeState.IDLE, down_since=T0)
    down = node("cloud-001", states=("down",))
    result = planned(snapshot(records=[rec], instances=[instance()], nodes=[down]),
                     now=T0 + seconds(500))
    assert transitions(result) == [(rec.id, NodeState.FAILED)]
    busy = node("cloud-001", states=("down",), jobs=["3.vm"])
    result = planned(snapshot(records=[rec], instances=[instance()], nodes=[busy]),
                     now=T0 + seconds(500))
    assert transitions(result) == []


def test_orphan_instance_is_deleted_but_not_while_its_node_runs_a_job():
    orphan = instance("i-9", name="cloud-009", record_id="r-gone")
    result = planned(snapshot(instances=[orphan], nodes=[]))
    assert result.of_type(DeleteInstance) == [DeleteInstance(None, "i-9", result.of_type(
        DeleteInstance)[0].reason)]
    busy = node("cloud-009", jobs=["4.vm"])
    assert planned(snapshot(instances=[orphan], nodes=[busy])).of_type(DeleteInstance) == []


def test_missing_slots_are_registered():
    result = planned(snapshot(nodes=[], with_slots=None), policy(pool(max_nodes=2)))
    assert [(a.hostname, a.np) for a in result.of_type(RegisterSlot)] == [
        ("cloud-001", 8), ("cloud-002", 8)]


@pytest.mark.parametrize("slot,problem", [
    (node("cloud-001", states=("down",), np=8, reported=False, note=SLOT_NOTE),
     "slot lost its offline flag"),
    (node("cloud-001", states=("down", "offline"), np=8, reported=False), "slot note missing"),
    (node("cloud-001", states=("down", "offline"), np=2, reported=False, note=SLOT_NOTE),
     "slot np 2, not 8"),
])
def test_slot_that_is_not_an_empty_offline_slot_is_registered_again(slot, problem):
    pol = policy(pool(max_nodes=1))
    result = planned(snapshot(nodes=[slot], with_slots=None), pol)
    assert result.of_type(RegisterSlot) == [RegisterSlot("cloud-001", "cloud", 8,
                                                         frozenset({"CLOUD"}), problem)]


def test_settling_slot_is_left_until_the_server_accepts_changes():
    settling = node("cloud-001", states=("down", "offline", "MOM-list-not-sent"), np=8,
                    reported=False, note=SLOT_NOTE)
    result = planned(snapshot(nodes=[settling], with_slots=None), policy(pool(max_nodes=1)))
    assert result.of_type(RegisterSlot) == []
    assert result.revisit_after == SETTLE_POLL


def test_launches_come_before_the_repairs_of_the_same_pass():
    failed = record("cloud-002", state=NodeState.FAILED, instance_id="i-2")
    snap = snapshot(jobs=[job()], records=[failed],
                    instances=[instance("i-2", name="cloud-002")],
                    nodes=[node("cloud-002", states=("down",))])
    kinds = [type(action) for action in planned(snap).actions]
    assert kinds.index(LaunchInstance) < kinds.index(ReleaseNode)


# --- scale-down ------------------------------------------------------------------------------

def test_idle_node_is_offlined_after_idle_timeout():
    rec = record(since=T0)
    snap = snapshot(records=[rec], instances=[instance()], nodes=[node("cloud-001")])
    assert planned(snap, now=T0 + seconds(599)).of_type(OfflineNode) == []
    result = planned(snap, now=T0 + seconds(601))
    assert [(a.hostname, a.drain) for a in result.of_type(OfflineNode)] == [
        ("cloud-001", DrainKind.IDLE)]


def test_idle_node_above_the_floor_only_is_offlined():
    recs = [record("cloud-001", since=T0), record("cloud-002", since=T0, instance_id="i-2")]
    snap = snapshot(records=recs, instances=[instance(), instance("i-2", name="cloud-002")],
                    nodes=[node("cloud-001"), node("cloud-002")])
    result = planned(snap, policy(pool(min_nodes=1)), now=T0 + seconds(700))
    assert len(result.of_type(OfflineNode)) == 1


def test_offline_empty_node_is_deleted_on_a_later_pass():
    rec = record(state=NodeState.OFFLINE, since=T0, drain=DrainKind.IDLE)
    snap = snapshot(records=[rec], instances=[instance()],
                    nodes=[node("cloud-001", states=("offline",))])
    assert planned(snap, now=T0).of_type(DeleteInstance) == []
    result = planned(snap, now=T0 + seconds(10))
    assert [type(a) for a in result.actions] == [Transition, ReleaseNode, DeleteInstance]


def test_job_that_slipped_onto_an_idle_draining_node_clears_it():
    rec = record(state=NodeState.OFFLINE, since=T0, drain=DrainKind.IDLE)
    snap = snapshot(records=[rec], instances=[instance()],
                    nodes=[node("cloud-001", states=("offline",), jobs=["5.vm"])])
    result = planned(snap, now=T0 + seconds(10))
    assert result.of_type(ClearNode) and transitions(result) == [(rec.id, NodeState.BUSY)]


def test_admin_drained_node_with_a_job_waits_for_it():
    rec = record(state=NodeState.OFFLINE, since=T0, drain=DrainKind.ADMIN)
    snap = snapshot(records=[rec], instances=[instance()],
                    nodes=[node("cloud-001", states=("offline",), jobs=["5.vm"])])
    result = planned(snap, now=T0 + seconds(10))
    assert result.actions == ()
    assert any("waiting for 5.vm" in note for note in result.notes)


def test_new_demand_reclaims_a_draining_node_instead_of_launching():
    rec = record(state=NodeState.OFFLINE, since=T0, drain=DrainKind.IDLE)
    snap = snapshot(jobs=[job()], records=[rec], instances=[instance()],
                    nodes=[node("cloud-001", states=("offline",))])
    result = planned(snap, now=T0 + seconds(10))
    assert launched(result) == []
    assert result.of_type(ClearNode) and result.of_type(DeleteInstance) == []


def test_unknown_torque_state_deletes_and_offlines_nothing():
    recs = [record("cloud-001", since=T0 - seconds(3600)),
            record("cloud-002", state=NodeState.OFFLINE, drain=DrainKind.IDLE,
                   instance_id="i-2", since=T0 - seconds(3600)),
            record("cloud-003", state=NodeState.FAILED, instance_id="i-3")]
    insts = [instance(), instance("i-2", name="cloud-002"), instance("i-3", name="cloud-003"),
             instance("i-9", name="cloud-009", record_id="r-orphan")]
    result = planned(snapshot(records=recs, instances=insts, nodes=None, jobs=None))
    destructive = (OfflineNode, ReleaseNode, DeleteInstance)
    assert [a for a in result.actions if isinstance(a, destructive)] == []


def test_unknown_cloud_state_deletes_nothing():
    rec = record(state=NodeState.FAILED)
    result = planned(snapshot(records=[rec], instances=None,
                              nodes=[node("cloud-001", states=("down",))]))
    assert result.of_type(DeleteInstance) == [] and result.of_type(ReleaseNode) == []


# --- admin intents -------------------------------------------------------------------------

def test_kill_of_a_busy_node_is_refused_naming_the_job():
    snap = snapshot(records=[record(state=NodeState.BUSY)], instances=[instance()],
                    nodes=[node("cloud-001", jobs=["7.vm"])],
                    intents=[intent(target="cloud-001")])
    done = planned(snap).of_type(CompleteIntent)[0]
    assert done.status is IntentStatus.REFUSED and "7.vm" in done.message


def test_kill_of_an_idle_node_offlines_it_for_deletion():
    snap = snapshot(records=[record(since=T0)], instances=[instance()],
                    nodes=[node("cloud-001")], intents=[intent(target="cloud-001")])
    result = planned(snap)
    assert [(a.hostname, a.drain) for a in result.of_type(OfflineNode)] == [
        ("cloud-001", DrainKind.ADMIN)]
    assert result.of_type(CompleteIntent)[0].status is IntentStatus.DONE


def test_kill_of_an_unknown_node_is_refused():
    snap = snapshot(nodes=[], intents=[intent(target="nosuch")])
    assert planned(snap).of_type(CompleteIntent)[0].status is IntentStatus.REFUSED


def test_drain_all_offlines_every_node_and_sleeps():
    recs = [record("cloud-001", state=NodeState.BUSY), record("cloud-002", instance_id="i-2")]
    snap = snapshot(records=recs, instances=[instance(), instance("i-2", name="cloud-002")],
                    nodes=[node("cloud-001", jobs=["1.vm"]), node("cloud-002")],
                    intents=[intent(kind=IntentKind.DRAIN_ALL)])
    result = planned(snap)
    assert sorted(a.hostname for a in result.of_type(OfflineNode)) == ["cloud-001", "cloud-002"]
    assert result.of_type(SetSleeping)


# --- backoff -------------------------------------------------------------------------------

def test_backoff_doubles_up_to_the_cap_and_stops_after_repeated_boot_failures():
    pol = policy()
    health = None
    delays = []
    for _ in range(7):
        health = next_health(health, "cloud", ErrorKind.BOOT, "boot timeout", T0, pol)
        delays.append((health.backoff_until - T0).total_seconds())
    assert delays[:4] == [30, 60, 120, 240]
    assert max(delays) <= pol.backoff_cap.total_seconds()
    assert health.stopped


def test_capacity_errors_back_off_but_never_stop_the_pool():
    health = None
    for _ in range(10):
        health = next_health(health, "cloud", ErrorKind.CAPACITY, "quota", T0, policy())
    assert not health.stopped


def test_slots_of_large_pools_get_wider_numbers():
    assert pool(max_nodes=1200).slot_names[-1] == "cloud-1200"
    assert LARGE.cores == 8 and SMALL.cores == 2


def test_verdict_statuses_are_the_documented_strings():
    # docs/api.md (GET /v1/jobs/ID/why) lists them; JSON carries the plain value.
    assert [status.value for status in VerdictStatus] == [
        "launching", "waiting-boot", "waiting-scheduler", "waiting-job-end",
        "waiting-capacity", "unservable", "not-eligible"]
    result = planned(snapshot(jobs=[job()], with_slots=policy()), policy())
    assert verdict(result, "1.vm").status is VerdictStatus.LAUNCHING
