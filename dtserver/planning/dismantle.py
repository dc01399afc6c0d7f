"""Taking a node apart: the deleting state first (written before the calls it describes),
then the node entry back to an empty slot, then the instance deleted. Repair dismantles
failed nodes and finishes what a crash interrupted; scale-down dismantles drained ones."""
from __future__ import annotations

from datetime import datetime, timedelta

from dtserver.actions import DeleteInstance, ReleaseNode, Transition
from dtserver.model import Instance, Node, NodeRecord, NodeState, Snapshot
from dtserver.planning.step import StepResult
from dtserver.policy import Policy

SLOT_NOTE = "dynamictorque: slot, no instance"
# Re-send a delete this long after the last one; Nova deletes are asynchronous.
DELETE_RETRY = timedelta(seconds=60)


def slot_restored(node: Node | None) -> bool:
    """The entry is an empty slot again: a release re-creates it with the slot note, which
    shows at once, even while the new entry settles."""
    return node is not None and node.note == SLOT_NOTE


def instance_of(snapshot: Snapshot, record: NodeRecord) -> Instance | None:
    """The record's instance, by the id it saved or else by the record id the instance
    carries (a crash can come between servers.create and saving the id)."""
    instances = snapshot.instance_by_id
    if record.instance_id and instances is not None:
        found = instances.get(record.instance_id)
        if found is not None:
            return found
    return snapshot.instance_by_record.get(record.id)


def dismantle(snapshot: Snapshot, policy: Policy, record: NodeRecord,
              reason: str) -> StepResult:
    """The whole sequence, or only a note when it is not known to be safe: TORQUE or Nova
    unread, or jobs on the node."""
    nodes = snapshot.node_by_name
    if nodes is None or snapshot.instances is None:
        return StepResult(notes=(f"{record.hostname}: not deleted, TORQUE or Nova unreadable",))
    node = nodes.get(record.hostname)
    if node is not None and node.jobs:
        return StepResult(notes=(f"{record.hostname}: waiting for {', '.join(node.jobs)} "
                                 "before delete",))
    steps: list = [Transition(record.id, NodeState.DELETING, reason)]
    pool = policy.pool(record.pool)
    if pool is not None and node is not None and not slot_restored(node):
        steps.append(ReleaseNode(record.id, record.hostname, pool.slot_np,
                                 pool.properties, reason))
    instance = instance_of(snapshot, record)
    if instance is not None:
        steps.append(DeleteInstance(record.id, instance.id, reason))
    return StepResult(actions=tuple(steps), claimed=frozenset({record.hostname}))


def finish_dismantling(snapshot: Snapshot, policy: Policy, record: NodeRecord,
                       now: datetime) -> StepResult:
    """The later steps of a record in the deleting state: resume a release a crash cut
    off, retry the delete while Nova still lists the instance, end the record when it
    is gone."""
    nodes = snapshot.node_by_name
    if snapshot.instances is None or nodes is None:
        return StepResult()
    instance = instance_of(snapshot, record)
    node = nodes.get(record.hostname)
    pool = policy.pool(record.pool)
    steps: list = []
    if node is not None and node.jobs:
        return StepResult(notes=(f"{record.hostname}: deletion held, TORQUE lists "
                                 f"{', '.join(node.jobs)} on it",))
    if not slot_restored(node) and pool is not None:
        # The pass that began the deletion stopped before the release (a crash): the
        # entry still names the instance, or is gone. Release it, then delete.
        steps.append(ReleaseNode(record.id, record.hostname, pool.slot_np,
                                 pool.properties, "release resumed"))
        if instance is not None:
            steps.append(DeleteInstance(record.id, instance.id, "delete resumed"))
    elif instance is None:
        steps.append(Transition(record.id, NodeState.DELETED, "instance gone"))
    elif now - record.state_since > DELETE_RETRY:
        steps.append(DeleteInstance(record.id, instance.id, "delete retried"))
    return StepResult(actions=tuple(steps),
                      claimed=frozenset({record.hostname}) if steps else frozenset())
