"""Admin intents (kill, drain-all, reset-pool), recorded by the API, decided here."""
from __future__ import annotations

from datetime import datetime

from dtserver.actions import CompleteIntent, OfflineNode, ResetPool, SetSleeping, Transition
from dtserver.model import (
    DrainKind, Intent, IntentKind, IntentStatus, NodeRecord, NodeState, Snapshot)
from dtserver.planning.step import StepResult
from dtserver.policy import Policy

_GONE = (NodeState.DELETING, NodeState.FAILED, NodeState.DELETED)


def _drain(record: NodeRecord, reason: str) -> list:
    """Admin drain of one node: upcoming nodes are abandoned, others go offline and are
    deleted once empty (scale_down does that)."""
    if record.state in (NodeState.LAUNCHING, NodeState.BOOTING):
        return [Transition(record.id, NodeState.FAILED, reason)]
    if record.state is NodeState.OFFLINE and record.drain is DrainKind.ADMIN:
        return []
    return [OfflineNode(record.id, record.hostname, DrainKind.ADMIN, reason),
            Transition(record.id, NodeState.OFFLINE, reason)]


def plan_intents(snapshot: Snapshot, policy: Policy, now: datetime) -> StepResult:
    """Claims the nodes it drains. An intent that cannot be decided while TORQUE is
    unreadable stays pending."""
    actions: list = []
    notes: list[str] = []
    touched: set[str] = set()
    live = {record.hostname: record for record in snapshot.records
            if record.state is not NodeState.DELETED}
    nodes = snapshot.node_by_name

    def jobs_of(record: NodeRecord) -> tuple[str, ...]:
        node = nodes.get(record.hostname) if nodes is not None else None
        return node.jobs if node is not None else ()

    for intent in snapshot.intents:
        if intent.status is not IntentStatus.PENDING:
            continue
        if intent.kind is IntentKind.RESET_POOL:
            if policy.pool(intent.target or "") is None:
                actions.append(CompleteIntent(intent.id, IntentStatus.REFUSED,
                                              f"no pool named {intent.target}"))
            else:
                actions += [ResetPool(intent.target, "admin reset"),
                            CompleteIntent(intent.id, IntentStatus.DONE,
                                           f"pool {intent.target} resumed")]
            continue
        if nodes is None:
            notes.append(f"intent {intent.id} ({intent.kind}) waits: TORQUE unreadable")
            continue
        if intent.kind is IntentKind.KILL:
            actions += _kill(intent, live.get(intent.target or ""), jobs_of, touched)
        elif intent.kind is IntentKind.DRAIN_ALL:
            count = 0
            for record in live.values():
                if record.state in _GONE or record.hostname in touched:
                    continue
                drain = _drain(record, "drain-all requested by admin")
                if drain:
                    actions += drain
                    touched.add(record.hostname)
                    count += 1
            actions += [SetSleeping(True, "drain-all"),
                        CompleteIntent(intent.id, IntentStatus.DONE,
                                       f"{count} nodes draining; sleep mode on; each node is "
                                       "deleted when its jobs end")]
    return StepResult(actions=tuple(actions), notes=tuple(notes), claimed=frozenset(touched))


def _kill(intent: Intent, record: NodeRecord | None, jobs_of, touched: set[str]) -> list:
    if record is None:
        return [CompleteIntent(intent.id, IntentStatus.REFUSED,
                               f"{intent.target} is not a node dynamictorque owns")]
    jobs = jobs_of(record)
    if jobs:
        return [CompleteIntent(intent.id, IntentStatus.REFUSED,
                               f"{record.hostname} runs job {', '.join(jobs)}; "
                               "use drain-all to wait for it")]
    if record.state in _GONE:
        return [CompleteIntent(intent.id, IntentStatus.DONE,
                               f"{record.hostname} is already being deleted")]
    touched.add(record.hostname)
    return _drain(record, "killed by admin") + [
        CompleteIntent(intent.id, IntentStatus.DONE,
                       f"{record.hostname} offlined; deleted on the next pass")]
