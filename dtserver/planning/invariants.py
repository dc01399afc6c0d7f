"""The safety invariants of docs/design.md, checked on every plan before anything is applied.

A violation is a bug in the planner: the reconciler refuses the whole plan rather than let
one unsafe action reach TORQUE or the cloud.
"""
from __future__ import annotations

from collections import Counter

from dtserver.actions import (
    ClearNode, DeleteInstance, JoinNode, LaunchInstance, MarkEntryReady, OfflineNode, Plan,
    RegisterSlot, ReleaseNode)
from dtserver.model import DrainKind, DtError, NodeState, Snapshot
from dtserver.policy import Policy


class InvariantViolation(DtError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("plan violates safety invariants: " + "; ".join(problems))


def violations(snapshot: Snapshot, policy: Policy, plan: Plan) -> list[str]:
    problems: list[str] = []
    nodes = snapshot.node_by_name
    records = {record.id: record for record in snapshot.records}
    live = [record for record in snapshot.records if record.state is not NodeState.DELETED]
    owned_instances = snapshot.instance_by_id or {}
    record_instances = {record.instance_id for record in snapshot.records if record.instance_id}
    taken_slots = {record.hostname for record in live}

    def jobs_on(hostname: str) -> tuple[str, ...]:
        node = nodes.get(hostname) if nodes is not None else None
        return node.jobs if node is not None else ()

    unknown = snapshot.nodes is None or snapshot.instances is None
    for action in plan.actions:
        if unknown and (isinstance(action, (ReleaseNode, DeleteInstance)) or (
                isinstance(action, OfflineNode) and action.drain is DrainKind.IDLE)):
            problems.append(f"{type(action).__name__} while TORQUE or Nova is unknown")
        if isinstance(action, OfflineNode) and snapshot.nodes is None:
            problems.append(f"offline of {action.hostname} while TORQUE is unknown")
        if isinstance(action, ReleaseNode) and jobs_on(action.hostname):
            problems.append(f"release of {action.hostname} which runs jobs")
        if isinstance(action, OfflineNode) and action.drain is DrainKind.IDLE \
                and jobs_on(action.hostname):
            problems.append(f"idle offline of {action.hostname} which runs jobs")
        if isinstance(action, DeleteInstance):
            if action.instance_id not in owned_instances and \
                    action.instance_id not in record_instances:
                problems.append(f"delete of instance {action.instance_id} we do not own")
            instance = owned_instances.get(action.instance_id)
            hostname = (records[action.record_id].hostname if action.record_id in records
                        else instance.name if instance else None)
            if hostname and jobs_on(hostname):
                problems.append(f"delete of the instance of {hostname} which runs jobs")
        if isinstance(action, MarkEntryReady) and action.instance_id not in owned_instances:
            problems.append(f"metadata of instance {action.instance_id} we do not own")
        if isinstance(action, (ReleaseNode, OfflineNode, ClearNode, JoinNode, RegisterSlot,
                               LaunchInstance)) and policy.pool_of_slot(action.hostname) is None:
            problems.append(f"{type(action).__name__} on {action.hostname}, not one of our slots")
        if isinstance(action, RegisterSlot) and action.hostname in taken_slots:
            problems.append(f"slot {action.hostname} re-registered while an instance has it")

    launches = plan.of_type(LaunchInstance)
    if launches and snapshot.sleeping:
        problems.append("launch in sleep mode")
    taken = {record.hostname for record in live}
    seen: set[str] = set()
    for launch in launches:
        if launch.hostname in taken or launch.hostname in seen:
            problems.append(f"launch into slot {launch.hostname} which is taken")
        seen.add(launch.hostname)

    pool_cores: Counter[str] = Counter()
    pool_nodes: Counter[str] = Counter()
    for record in live:
        pool_cores[record.pool] += record.cores
        pool_nodes[record.pool] += 1
    for launch in launches:
        pool_cores[launch.pool] += launch.cores
        pool_nodes[launch.pool] += 1
    by_name = {pool.name: pool for pool in policy.pools}
    project_cores: Counter[str] = Counter()
    project_count: Counter[str] = Counter()
    for launch in launches:
        project_cores[by_name[launch.pool].project] += launch.cores
        project_count[by_name[launch.pool].project] += 1
    for project, quota in snapshot.quotas.items():
        if quota.cores is not None and project_cores[project] > quota.cores:
            problems.append(f"project {project}: launches exceed the cores quota")
        if quota.instances is not None and project_count[project] > quota.instances:
            problems.append(f"project {project}: launches exceed the instances quota")
    launching_pools = {launch.pool for launch in launches}
    # Limits bind launches: a cluster already over a lowered limit shrinks by scale-down.
    for pool in policy.pools:
        if pool.name not in launching_pools:
            continue
        if pool_nodes[pool.name] > pool.max_nodes:
            problems.append(f"pool {pool.name}: {pool_nodes[pool.name]} nodes > max_nodes")
        if pool.max_cores is not None and pool_cores[pool.name] > pool.max_cores:
            problems.append(f"pool {pool.name}: {pool_cores[pool.name]} cores > max_cores")
    if policy.max_cores is not None and sum(pool_cores.values()) > policy.max_cores and launches:
        problems.append(f"{sum(pool_cores.values())} cores > max_cores={policy.max_cores}")
    in_flight = sum(1 for record in live
                    if record.state in (NodeState.LAUNCHING, NodeState.BOOTING))
    if policy.max_booting is not None and launches and \
            in_flight + len(launches) > policy.max_booting:
        problems.append(f"{in_flight + len(launches)} launches in flight > max_booting")
    return problems


def check_plan(snapshot: Snapshot, policy: Policy, plan: Plan) -> None:
    problems = violations(snapshot, policy, plan)
    if problems:
        raise InvariantViolation(problems)
