"""Dismantling a node: one sequence, shared by repair (failed nodes) and scale-down
(drained nodes), only when TORQUE and Nova were read and no job runs there."""
from __future__ import annotations

from dtserver.actions import DeleteInstance, ReleaseNode, Transition
from dtserver.model import DrainKind, IntentKind, NodeState
from dtserver.planning import plan
from dtserver.planning.dismantle import SLOT_NOTE, dismantle, finish_dismantling
from tests.builders import T0, instance, intent, node, policy, record, seconds, snapshot

POLICY = policy()


def test_a_node_is_marked_deleting_then_released_then_its_instance_deleted():
    rec = record(state=NodeState.FAILED)
    snap = snapshot(records=[rec], nodes=[node("cloud-001")], instances=[instance()])

    result = dismantle(snap, POLICY, rec, "boot timeout")

    assert [type(action) for action in result.actions] == [Transition, ReleaseNode,
                                                          DeleteInstance]
    assert result.actions[0].state is NodeState.DELETING
    assert result.claimed == frozenset({"cloud-001"})


def test_a_node_with_a_job_is_only_waited_for():
    rec = record(state=NodeState.FAILED)
    snap = snapshot(records=[rec], nodes=[node("cloud-001", jobs=["7.vm"])],
                    instances=[instance()])

    result = dismantle(snap, POLICY, rec, "down too long")

    assert result.actions == ()
    assert result.notes == ("cloud-001: waiting for 7.vm before delete",)
    assert result.claimed == frozenset()


def test_nothing_is_dismantled_while_nova_is_unread():
    rec = record(state=NodeState.FAILED)
    snap = snapshot(records=[rec], nodes=[node("cloud-001")], instances=None)

    assert dismantle(snap, POLICY, rec, "x").actions == ()


def test_an_entry_already_back_to_a_slot_is_not_released_again():
    rec = record(state=NodeState.FAILED)
    snap = snapshot(records=[rec], nodes=[node("cloud-001", note=SLOT_NOTE)],
                    instances=[instance()])

    assert [type(action) for action in dismantle(snap, POLICY, rec, "x").actions] == [
        Transition, DeleteInstance]


def test_a_deleting_record_ends_once_its_instance_is_gone():
    rec = record(state=NodeState.DELETING)
    snap = snapshot(records=[rec], nodes=[node("cloud-001", note=SLOT_NOTE)], instances=[])

    result = finish_dismantling(snap, POLICY, rec, T0 + seconds(5))

    assert result.actions == (Transition(rec.id, NodeState.DELETED, "instance gone"),)


def test_scale_down_dismantles_a_drained_empty_node_as_repair_would():
    rec = record(state=NodeState.OFFLINE, drain=DrainKind.IDLE, since=T0)
    snap = snapshot(records=[rec], nodes=[node("cloud-001", states=("offline",))],
                    instances=[instance()])

    result = plan(snap, POLICY, T0 + seconds(30))

    assert result.actions == dismantle(snap, POLICY, rec, rec.reason).actions


def test_scale_down_leaves_a_node_an_admin_intent_claimed():
    rec = record(state=NodeState.OFFLINE, drain=DrainKind.IDLE, since=T0)
    snap = snapshot(records=[rec], nodes=[node("cloud-001", states=("offline",))],
                    instances=[instance()],
                    intents=[intent(kind=IntentKind.KILL, target="cloud-001")])

    result = plan(snap, POLICY, T0 + seconds(30))

    assert not result.of_type(ReleaseNode) and not result.of_type(DeleteInstance)
