"""The functional core: plan(snapshot, policy, now) -> Plan. No I/O, no clock, no logging."""
from __future__ import annotations

from datetime import datetime

from dtserver.actions import ExpireHint, JobVerdict, Plan
from dtserver.model import Snapshot
from dtserver.planning.demand import plan_demand, plan_floor
from dtserver.planning.intents import plan_intents
from dtserver.planning.limits import Budget
from dtserver.planning.repair import plan_repairs
from dtserver.planning.scale_down import plan_removals, reclaimable
from dtserver.policy import Policy


def plan(snapshot: Snapshot, policy: Policy, now: datetime) -> Plan:
    """Decide; never act. Same inputs, same plan.

    Order matters to the reconciler: admin intents, then lifecycle repairs, then launches
    for demand and the static floor, then scale-down of what no demand wants."""
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
    return Plan(
        actions=tuple(intent_actions + repairs + floor + demand.launches + removals
                      + hint_actions),
        verdicts=verdicts,
        notes=tuple(intent_notes + repair_notes + floor_notes + removal_notes))
