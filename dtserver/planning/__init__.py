"""The functional core: plan(snapshot, policy, now) -> Plan. No I/O, no clock, no logging."""
from __future__ import annotations

from datetime import datetime, timedelta

from dtserver.actions import (
    ExpireHint, JobVerdict, JoinNode, MarkEntryReady, Plan, RegisterSlot, ReleaseNode)
from dtserver.model import NodeState, Snapshot
from dtserver.planning.demand import plan_demand, plan_floor
from dtserver.planning.intents import plan_intents
from dtserver.planning.limits import Budget
from dtserver.planning.repair import plan_repairs
from dtserver.planning.scale_down import plan_removals, reclaimable
from dtserver.policy import Policy


def plan(snapshot: Snapshot, policy: Policy, now: datetime) -> Plan:
    """Decide; never act. Same inputs, same plan.

    The order is the reconciler's: admin intents, then launches for the static floor and
    demand (instances boot while TORQUE is being worked on, and a pass cut short by new
    demand has launched first), then lifecycle repairs, then scale-down of what no demand
    wants. No launch depends on a repair of the same pass: a record a repair ends still
    holds its slot in the snapshot the launches were planned from."""
    intent_actions, intent_notes, decided = plan_intents(snapshot, policy, now)
    repairs, repair_notes, repaired = plan_repairs(snapshot, policy, now, decided)
    budget = Budget(snapshot, policy)
    floor, floor_notes = plan_floor(snapshot, policy, now, budget)
    drainable = reclaimable(snapshot)
    demand = plan_demand(snapshot, policy, now, budget, drainable)
    removals, removal_notes = plan_removals(snapshot, policy, now, decided | repaired,
                                            demand.used_hostnames)
    hint_actions: list[ExpireHint] = demand.expired_hints
    verdicts: tuple[JobVerdict, ...] = tuple(demand.verdicts)
    actions = tuple(intent_actions + floor + demand.launches + repairs + removals + hint_actions)
    return Plan(
        actions=actions, verdicts=verdicts,
        notes=tuple(intent_notes + repair_notes + floor_notes + removal_notes),
        revisit_after=SETTLE_POLL if _settling(snapshot, actions, now) else None)


# How soon to look again while node entries settle or fresh moms are due to report: the
# next step of a joining or released node waits on that, not on the regular pass interval.
SETTLE_POLL = timedelta(seconds=2)
# A mom is due within seconds of its entry being announced; past this, a node still not
# reporting waits for the regular passes (and its boot timeout).
MOM_REPORT_WINDOW = timedelta(seconds=60)


def _settling(snapshot: Snapshot, actions: tuple, now: datetime) -> bool:
    if any(isinstance(action, (JoinNode, ReleaseNode, RegisterSlot, MarkEntryReady))
           for action in actions):
        return True
    if any(node.is_settling for node in snapshot.nodes or ()):
        return True
    return any(record.state is NodeState.REGISTERED
               and now - record.state_since < MOM_REPORT_WINDOW for record in snapshot.records)
