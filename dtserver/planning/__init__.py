"""The functional core: plan(snapshot, policy, now) -> Plan. No I/O, no clock, no logging."""
from __future__ import annotations

from datetime import datetime, timedelta

from dtserver.actions import (
    JobVerdict, JoinNode, MarkEntryReady, OfflineNode, Plan, PokeScheduler, RegisterSlot,
    ReleaseNode, VerdictStatus)
from dtserver.model import NodeState, Snapshot
from dtserver.planning.demand import match_hints, plan_demand, plan_floor
from dtserver.planning.intents import plan_intents
from dtserver.planning.limits import Budget
from dtserver.planning.repair import plan_repairs, record_timers
from dtserver.planning.scale_down import plan_removals, reclaimable
from dtserver.planning.step import StepResult
from dtserver.policy import Policy


def plan(snapshot: Snapshot, policy: Policy, now: datetime) -> Plan:
    """Decide; never act. Same inputs, same plan.

    Repairs leave alone the nodes admin intents claimed, and scale-down those intents and
    repairs claimed; it keeps the nodes demand claimed. Launches are planned from the
    snapshot alone: a record a repair ends still holds its slot there."""
    intents = plan_intents(snapshot, policy, now)
    repairs = plan_repairs(snapshot, policy, now, skip=intents.claimed)
    budget = Budget(snapshot, policy)
    floor = plan_floor(snapshot, policy, now, budget)
    live_hints, expired_hints = match_hints(snapshot.jobs or (), snapshot.hints, policy, now)
    demand = plan_demand(snapshot, policy, now, budget, live_hints, reclaimable(snapshot))
    removals = plan_removals(snapshot, policy, now, skip=intents.claimed | repairs.claimed,
                             wanted_hostnames=demand.claimed)
    stall = plan_stall(snapshot, demand.verdicts, now,
                       poked=any(isinstance(action, PokeScheduler) for action in repairs.actions))
    # The reconciler applies in this order: admin intents, then launches for the static
    # floor and demand (instances boot while TORQUE is being worked on, and a pass cut short
    # by new demand has launched first), then lifecycle repairs, then scale-down of what no
    # demand wants.
    steps = (intents, floor, demand, repairs, stall, removals,
             StepResult(actions=tuple(expired_hints)))
    actions = tuple(action for step in steps for action in step.actions)
    next_due = _next_due(snapshot, policy, now, [step.next_due for step in steps])
    return Plan(
        actions=actions,
        verdicts=tuple(verdict for step in steps for verdict in step.verdicts),
        notes=tuple(note for step in (intents, repairs, floor, demand, removals, stall)
                    for note in step.notes),
        revisit_after=(SETTLE_POLL if _settling(snapshot, actions, now)
                       else next_due - now if next_due is not None else None),
        next_due=next_due)


# How soon to look again while node entries settle or fresh moms are due to report: the
# next step of a joining or released node waits on that, not on the regular pass interval.
SETTLE_POLL = timedelta(seconds=2)
# A mom is due within seconds of its entry being announced; past this, a node still not
# reporting waits for the regular passes (and its boot timeout).
MOM_REPORT_WINDOW = timedelta(seconds=60)


# pbs_sched starts a job that fits free cores within a second of a cycle, and we start a
# cycle whenever a node turns ready; a job still waiting this long for nodes that sat ready
# the whole time means pbs_sched is not placing jobs (dead, hung, or misconfigured).
SCHEDULER_STALL = timedelta(seconds=30)


def plan_stall(snapshot: Snapshot, verdicts: tuple[JobVerdict, ...], now: datetime, *,
               poked: bool) -> StepResult:
    """A poke (unless an earlier step `poked` already) and a note when queued jobs fit ready
    nodes but pbs_sched leaves them queued; else due when the first job that waits for
    pbs_sched would count as stalled."""
    jobs = {job.id: job for job in snapshot.jobs or ()}
    settled_since = {record.hostname: record.state_since for record in snapshot.records
                     if record.state in (NodeState.IDLE, NodeState.BUSY)}
    stalled = []
    due: list[datetime] = []
    for verdict in verdicts:
        job = jobs.get(verdict.job_id)
        if verdict.status is not VerdictStatus.WAITING_SCHEDULER or job is None:
            continue
        since = max([job.created, *(settled_since.get(host, job.created)
                                    for host in verdict.hosts)])
        if now - since >= SCHEDULER_STALL:
            stalled.append((now - since, verdict))
        else:
            due.append(since + SCHEDULER_STALL)
    if not stalled:
        return StepResult(next_due=min(due, default=None))
    waited, verdict = max(stalled, key=lambda item: item[0])
    note = (f"pbs_sched has started none of {len(stalled)} queued jobs that fit ready nodes "
            f"(longest: {verdict.job_id} on {', '.join(verdict.hosts)} for "
            f"{int(waited.total_seconds())} s): is pbs_sched running?")
    return StepResult(actions=() if poked else (PokeScheduler("queued jobs fit ready nodes"),),
                      notes=(note,))


def _next_due(snapshot: Snapshot, policy: Policy, now: datetime,
              others: list[datetime | None]) -> datetime | None:
    """The first time-based rule still ahead: a lifecycle timer, an idle check of an idle
    node, or one of `others` (the scheduler-stall poke, a busy node coming within a boot of
    freeing)."""
    due = record_timers(snapshot, policy)
    due += [record.state_since + check
            for record in snapshot.records if record.state is NodeState.IDLE
            for check in policy.idle_checks_of(record)]
    due += [moment for moment in others if moment is not None]
    return min((moment for moment in due if moment > now), default=None)


def _settling(snapshot: Snapshot, actions: tuple, now: datetime) -> bool:
    if any(isinstance(action, (JoinNode, ReleaseNode, RegisterSlot, MarkEntryReady,
                               OfflineNode)) for action in actions):
        return True
    if any(node.is_settling for node in snapshot.nodes or ()):
        return True
    return any(record.state is NodeState.REGISTERED
               and now - record.state_since < MOM_REPORT_WINDOW for record in snapshot.records)
