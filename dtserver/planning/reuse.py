"""Demand-following idle time (policy.IdleRelease): which idle nodes to release before
max_idle_time because recent arrivals predict no use for them within one boot."""
from __future__ import annotations

import bisect
import itertools
import statistics
from datetime import datetime, timedelta
from typing import Sequence

from dtserver.model import Job, NodeRecord, RecentDemand, Snapshot
from dtserver.planning.demand import eligible_pools
from dtserver.policy import Policy, Pool

# A node is kept while the expected demand covers at least this much of it.
KEEP_SHARE = 0.5


def early_releases(snapshot: Snapshot, policy: Policy, now: datetime,
                   idle: Sequence[NodeRecord]) -> dict[str, str]:
    """Record id -> why, for the nodes of `idle` (empty, ready, wanted by nothing queued or
    hinted) to release now although their idle timeout has not ended.

    Per pool and node size, newest idle first: a node is kept while the node-shares that
    the jobs of the last `window` predict within one boot exceed the nodes kept so far by
    KEEP_SHARE. The window of a node ends at now and starts `window` before it went idle,
    so the prediction only grows until the node goes: no decision flips on a quiet pass.
    """
    rules = policy.idle_release
    recent = snapshot.recent
    if not rules.enabled or recent is None:
        return {}
    candidates = [record for record in idle
                  if not record.prewarm and now - record.state_since >= rules.min_idle
                  and record.state_since - rules.window >= recent.since]
    if not candidates:
        return {}
    boot = _boot_time(recent, rules.boot_estimate)
    per_window = boot / rules.window
    rates = _ArrivalRates(recent.arrivals, policy)
    decided: dict[str, str] = {}
    groups = itertools.groupby(sorted(idle, key=lambda record: (record.pool, record.cores)),
                               key=lambda record: (record.pool, record.cores))
    for (pool_name, cores), members in groups:
        pool = policy.pool(pool_name)
        if pool is None:
            continue
        kept = 0
        for record in sorted(members, key=lambda record: record.state_since, reverse=True):
            start = record.state_since - rules.window
            shares, count = rates.since(pool, cores, start)
            expected = shares * per_window
            if record not in candidates or expected >= kept + KEEP_SHARE:
                kept += 1
                continue
            decided[record.id] = (
                f"idle for {int((now - record.state_since).total_seconds())} s; "
                f"{expected:.2f} node(s) of {cores} cores expected within a "
                f"{boot.total_seconds():.0f} s boot from {count} arrivals since "
                f"{start:%H:%M:%S}, {kept} kept")
    return decided


def _boot_time(recent: RecentDemand, estimate: timedelta) -> timedelta:
    if not recent.boot_seconds:
        return estimate
    return timedelta(seconds=statistics.median(recent.boot_seconds))


class _ArrivalRates:
    """Node-shares of the arrivals each pool could have served, summed from a start time:
    a job counts for every pool that could run it (an over-estimate keeps nodes), each
    node-slice for its part of a node of the given size, at most one node."""

    def __init__(self, arrivals: Sequence[Job], policy: Policy) -> None:
        self._arrivals = arrivals
        self._policy = policy
        self._sums: dict[tuple[str, int], tuple[list[datetime], list[float]]] = {}
        self._pools: dict[tuple, frozenset[str]] = {}

    def since(self, pool: Pool, cores: int, start: datetime) -> tuple[float, int]:
        times, totals = self._sums.get((pool.name, cores)) or self._add(pool, cores)
        first = bisect.bisect_left(times, start)
        return totals[-1] - totals[first], len(times) - first

    def _add(self, pool: Pool, cores: int) -> tuple[list[datetime], list[float]]:
        times: list[datetime] = []
        totals = [0.0]
        for job in self._arrivals:
            if pool.name in self._eligible(job):
                times.append(job.created)
                totals.append(totals[-1] + sum(
                    chunk.count * min(1.0, max(chunk.cores, 1) / cores)
                    for chunk in job.request.chunks))
        self._sums[pool.name, cores] = times, totals
        return times, totals

    def _eligible(self, job: Job) -> frozenset[str]:
        policy = self._policy
        if job.request is None or (policy.queues and job.queue not in policy.queues):
            return frozenset()
        key = (job.queue, job.account, id(job.request))
        if key not in self._pools:
            pools, _ = eligible_pools(policy.pools, job.queue, job.account, job.request,
                                      policy.max_cores)
            self._pools[key] = frozenset(pool.name for pool in pools)
        return self._pools[key]
