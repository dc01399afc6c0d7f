"""Two-phase scale-down: idle past the timeout -> offline with a note; still empty on a
later pass -> release the node entry and delete the instance; a job arrived -> clear."""
from __future__ import annotations

from datetime import datetime

from dtserver.actions import ClearNode, OfflineNode, Transition
from dtserver.model import DrainKind, Node, NodeRecord, NodeState, Snapshot
from dtserver.planning.dismantle import dismantle
from dtserver.planning.reuse import early_releases
from dtserver.planning.step import StepResult
from dtserver.policy import Policy


def reclaimable(snapshot: Snapshot) -> dict[str, NodeRecord]:
    """Nodes drained for idleness and still empty: new demand may clear them instead of
    launching an instance."""
    nodes = snapshot.node_by_name or {}
    return {record.hostname: record for record in snapshot.records
            if record.state is NodeState.OFFLINE and record.drain is DrainKind.IDLE
            and record.hostname in nodes and not nodes[record.hostname].jobs
            and nodes[record.hostname].is_ready}


def _unwanted(node: Node | None, record: NodeRecord, wanted_hostnames: frozenset[str]) -> bool:
    """An idle node that could be drained: ready and empty, and no demand packed onto it."""
    return (node is not None and node.is_ready and not node.is_offline and not node.jobs
            and record.hostname not in wanted_hostnames)


def plan_removals(snapshot: Snapshot, policy: Policy, now: datetime, skip: frozenset[str],
                  wanted_hostnames: frozenset[str]) -> StepResult:
    """Drain, clear and dismantle; leaves the nodes in `skip` alone (claimed by an earlier
    step) and keeps the nodes demand was packed onto (`wanted_hostnames`)."""
    if snapshot.nodes is None or snapshot.instances is None:
        return StepResult(
            notes=("TORQUE or Nova unreadable: no node is offlined or deleted this pass",))
    nodes = snapshot.node_by_name or {}
    actions: list = []
    notes: list[str] = []
    active: dict[str, int] = {}
    for record in snapshot.records:
        if record.state in (NodeState.REGISTERED, NodeState.IDLE, NodeState.BUSY,
                            NodeState.LAUNCHING, NodeState.BOOTING):
            active[record.pool] = active.get(record.pool, 0) + 1

    idle = sorted((record for record in snapshot.records
                   if record.state is NodeState.IDLE and record.hostname not in skip
                   and _unwanted(nodes.get(record.hostname), record, wanted_hostnames)),
                  key=lambda record: record.state_since)
    early = early_releases(snapshot, policy, now, idle)
    for record in idle:
        pool = policy.pool(record.pool)
        if (record.id not in early
                and now - record.state_since < policy.idle_timeout_of(record)):
            continue
        floor = pool.min_nodes if pool is not None else 0
        if active.get(record.pool, 0) <= floor:
            continue
        active[record.pool] -= 1
        reason = early.get(record.id) \
            or f"idle for {int((now - record.state_since).total_seconds())} s"
        actions += [OfflineNode(record.id, record.hostname, DrainKind.IDLE, reason),
                    Transition(record.id, NodeState.OFFLINE, reason)]

    for record in snapshot.records:
        if record.state is not NodeState.OFFLINE or record.hostname in skip:
            continue
        node = nodes.get(record.hostname)
        if node is None:
            continue   # unknown: the lifecycle repairs a missing entry first
        if node.jobs:
            if record.drain is DrainKind.IDLE:
                actions += [ClearNode(record.id, record.hostname, "job arrived while draining"),
                            Transition(record.id, NodeState.BUSY, "job arrived while draining")]
            else:
                notes.append(f"{record.hostname}: draining, waiting for "
                                       f"{', '.join(node.jobs)}")
        elif record.hostname in wanted_hostnames and record.drain is DrainKind.IDLE:
            actions += [ClearNode(record.id, record.hostname, "queued demand fits"),
                        Transition(record.id, NodeState.IDLE, "queued demand fits")]
        elif not node.is_offline:
            actions.append(OfflineNode(record.id, record.hostname,
                                       record.drain or DrainKind.IDLE, "offline did not stick"))
        elif record.state_since < now:
            dismantled = dismantle(snapshot, policy, record, record.reason)
            actions += dismantled.actions
            notes += dismantled.notes
    return StepResult(actions=tuple(actions), notes=tuple(notes),
                      claimed=frozenset(_hostnames(snapshot, actions)))


def _hostnames(snapshot: Snapshot, actions: list) -> set[str]:
    by_id = {record.id: record.hostname for record in snapshot.records}
    return {by_id[action.record_id] for action in actions}
