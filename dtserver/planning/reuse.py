"""Demand-following idle time (policy.IdleRelease): which idle nodes to release before
max_idle_time because recent arrivals predict no use for them soon enough to pay."""
from __future__ import annotations

import bisect
import itertools
from datetime import datetime, timedelta
from typing import Sequence

from dtserver.model import Job, NodeRecord, Snapshot
from dtserver.planning.eligibility import Eligibility
from dtserver.policy import Policy, Pool

# A node beyond the first is wanted while the expected demand covers this much of it.
KEEP_SHARE = 0.5
# What a released node that is wanted again costs, in boots of idle node time: billed
# while it boots, and the wait of the job it would have served at once, which users feel
# more than idle cores. 2 halved hpc2n's idle waste but added 17 s of mean wait; 5 adds
# 11 s (bench/bench_traces.py).
BOOT_PENALTY = 5
# Fewer arrivals than this in the window say nothing about the gaps between them.
MIN_ARRIVALS = 3


def early_releases(snapshot: Snapshot, policy: Policy, now: datetime,
                   idle: Sequence[NodeRecord]) -> dict[str, str]:
    """Record id -> why, for the nodes of `idle` (empty, ready, wanted by nothing queued or
    hinted) to release now although their idle timeout has not ended.

    Per pool and node size, newest idle first, a node is *wanted* when it is the first, or
    while the node-shares that the jobs of the last `window` predict within one boot
    exceed the wanted nodes before it by KEEP_SHARE. A node not wanted goes at its first
    idle check. A wanted node waits for the next job like a ski renter: the idle time it
    waits is the check (Policy.idle_checks_of) that costs least over the gaps between
    the arrivals it could have served in the window before it went idle: a gap shorter
    than the wait costs the gap, a longer one the wait and BOOT_PENALTY boots.

    Every input but `now` is fixed while the node sits idle and nothing arrives, so a
    decision falls due only at an idle check: the simulator's skip-ahead stays exact.
    """
    rules = policy.idle_release
    recent = snapshot.recent
    if not rules.enabled or recent is None:
        return {}
    candidates = {record.id for record in idle
                  if not record.prewarm and now - record.state_since >= rules.min_idle
                  and record.state_since - rules.window >= recent.since}
    if not candidates:
        return {}
    boot = recent.boot_time(policy.boot_estimate)
    rates = _ArrivalRates(recent.arrivals, policy)
    decided: dict[str, str] = {}
    groups = itertools.groupby(sorted(idle, key=lambda record: (record.pool, record.cores)),
                               key=lambda record: (record.pool, record.cores))
    for (pool_name, cores), members in groups:
        pool = policy.pool(pool_name)
        if pool is None:
            continue
        wanted = 0
        for record in sorted(members, key=lambda record: record.state_since, reverse=True):
            start = record.state_since - rules.window
            shares, count = rates.since(pool, cores, start)
            expected = shares * (boot / rules.window)
            is_wanted = wanted == 0 or expected >= wanted + KEEP_SHARE
            wanted += is_wanted
            if record.id not in candidates:
                continue
            idle_for = now - record.state_since
            if is_wanted:
                gaps = rates.gaps(pool, cores, start, record.state_since)
                wait = _cheapest_wait(gaps, policy.idle_checks_of(record), BOOT_PENALTY * boot)
                if idle_for < wait:
                    continue
                why = (f": waiting longer than {int(wait.total_seconds())} s costs more than "
                       f"the {boot.total_seconds():.0f} s boot it may save")
            else:
                why = (f" predict {expected:.2f} node(s) within a {boot.total_seconds():.0f} s "
                       f"boot, {wanted} wanted")
            decided[record.id] = (f"idle for {int(idle_for.total_seconds())} s; {count} "
                                  f"arrivals for {cores}-core nodes since {start:%H:%M:%S}"
                                  + why)
    return decided


def _cheapest_wait(gaps: Sequence[timedelta], checks: Sequence[timedelta],
                   penalty: timedelta) -> timedelta:
    """The idle check to wait for that costs least over `gaps` (sorted); the first when
    too few gaps are known."""
    if len(gaps) < MIN_ARRIVALS - 1:
        return checks[0]
    best, best_cost = checks[0], None
    for wait in checks:
        served = bisect.bisect_right(gaps, wait)
        cost = sum(gaps[:served], timedelta(0)) + (len(gaps) - served) * (wait + penalty)
        if best_cost is None or cost < best_cost:
            best, best_cost = wait, cost
    return best


class _ArrivalRates:
    """Node-shares of the arrivals each pool could have served, summed from a start time:
    a job counts for every pool that could run it (an over-estimate keeps nodes), each
    node-slice for its part of a node of the given size, at most one node."""

    def __init__(self, arrivals: Sequence[Job], policy: Policy) -> None:
        self._arrivals = arrivals
        self._policy = policy
        self._sums: dict[tuple[str, int], tuple[list[datetime], list[float]]] = {}
        self._eligibility = Eligibility(policy)   # the packer's cache of eligible pools

    def since(self, pool: Pool, cores: int, start: datetime) -> tuple[float, int]:
        times, totals = self._sums.get((pool.name, cores)) or self._add(pool, cores)
        first = bisect.bisect_left(times, start)
        return totals[-1] - totals[first], len(times) - first

    def gaps(self, pool: Pool, cores: int, start: datetime, end: datetime
             ) -> list[timedelta]:
        """The gaps between the arrivals in [start, end], shortest first."""
        times, _ = self._sums.get((pool.name, cores)) or self._add(pool, cores)
        inside = times[bisect.bisect_left(times, start):bisect.bisect_right(times, end)]
        return sorted(later - earlier for earlier, later in zip(inside, inside[1:]))

    def _add(self, pool: Pool, cores: int) -> tuple[list[datetime], list[float]]:
        times: list[datetime] = []
        totals = [0.0]
        for job in self._arrivals:
            if self._eligible(job, pool):
                times.append(job.created)
                totals.append(totals[-1] + sum(
                    chunk.count * min(1.0, max(chunk.cores, 1) / cores)
                    for chunk in job.request.chunks))
        self._sums[pool.name, cores] = times, totals
        return times, totals

    def _eligible(self, job: Job, pool: Pool) -> bool:
        policy = self._policy
        if job.request is None or (policy.queues and job.queue not in policy.queues):
            return False
        pools, _ = self._eligibility.pools_for(job.queue, job.account, job.request)
        return any(eligible is pool for eligible in pools)
