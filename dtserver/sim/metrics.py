"""What a replay cost and how long jobs waited, against oracles and static clusters.

- Billed core-hours: each instance's cores from its create call to its delete call.
  Used core-hours: each job's cores (as the trace gives them) times its run time.
  Waste = billed - used, split into boot (create until the mom first reports), idle
  (ready, no job on it: waiting for work, the idle timeout, draining) and packing (the
  rest: free cores beside running jobs, and cores a job asked for but the trace says it
  did not use, as nodes=2:ppn=5 for a 9-core job).
- Wait = start - arrival. Against an oracle with instant unlimited capacity every wait is
  added by provisioning; against one that boots a fresh instance for every job, the
  added wait is wait - boot delay (negative when a warm node served the job).
  Bounded slowdown = max(1, (wait + run) / max(run, tau)), tau = 10 s.
- Static clusters: the oracle's cores in use over time (every job starts on arrival);
  one cluster sized to its peak, one to its 95th percentile over time, each billed for
  every core over the span (first arrival to last oracle end). The p95 one makes jobs
  queue: its waits come from a first-come-first-served replay on cores alone.
"""
from __future__ import annotations

import heapq
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from dtserver.sim.runner import InstanceLife, JobRun, SimResult
from dtserver.sim.swf import concurrency_profile
from dtserver.sim.workload import SimJob

TAU = 10.0
HOUR = 3600.0


@dataclass(frozen=True)
class WaitStats:
    mean: float
    p50: float
    p95: float
    max: float
    slowdown: float           # mean bounded slowdown

    @classmethod
    def of(cls, waits: Sequence[float], runtimes: Sequence[float]) -> WaitStats:
        if not waits:
            return cls(0.0, 0.0, 0.0, 0.0, 1.0)
        ordered = sorted(waits)
        slowdowns = [bounded_slowdown(wait, run) for wait, run in zip(waits, runtimes)]
        return cls(mean=sum(waits) / len(waits), p50=percentile(ordered, 0.50),
                   p95=percentile(ordered, 0.95), max=ordered[-1],
                   slowdown=sum(slowdowns) / len(slowdowns))


@dataclass(frozen=True)
class StaticCluster:
    cores: int
    core_hours: float
    wait: WaitStats           # first come, first served on `cores`


@dataclass(frozen=True)
class Metrics:
    name: str
    jobs: int                  # jobs that ran to the end
    rejected: int              # refused by qsub
    unfinished: int            # did not start or end before the simulation stopped
    span_hours: float
    used_core_hours: float
    billed_core_hours: float
    waste_ratio: float
    boot_waste_core_hours: float
    idle_waste_core_hours: float
    packing_waste_core_hours: float
    cost: float                # billed core-hours times each flavor's price
    wait: WaitStats            # = wait added against the instant, unlimited oracle
    wait_vs_boot_oracle: WaitStats   # wait - boot delay, against fresh-instance oracle
    boot_oracle_slowdown: float
    launches: int
    launches_per_1000_jobs: float
    peak_instances: int
    peak_billed_cores: int
    static_peak: StaticCluster
    static_p95: StaticCluster
    saving_vs_static_peak: float   # 1 - billed / static_peak core-hours
    saving_vs_static_p95: float
    passes: int
    wall_seconds: float
    finished: bool

    @property
    def waste_core_hours(self) -> float:
        return self.billed_core_hours - self.used_core_hours


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def bounded_slowdown(wait: float, run: float, tau: float = TAU) -> float:
    return max(1.0, (wait + run) / max(run, tau))


def oracle_profile(jobs: Sequence[SimJob]) -> list[tuple[float, int]]:
    """Cores in use over time when every job starts on arrival."""
    return list(concurrency_profile((job.arrival, job.arrival + job.runtime, job.cores)
                                    for job in jobs))


def time_percentile(profile: Sequence[tuple[float, int]], fraction: float) -> int:
    """The level the profile stays at or below for `fraction` of its span."""
    spans: dict[int, float] = defaultdict(float)
    for (moment, level), (following, _) in zip(profile, profile[1:]):
        spans[level] += following - moment
    total = sum(spans.values())
    if total <= 0:
        return max((level for _, level in profile), default=0)
    covered = 0.0
    for level in sorted(spans):
        covered += spans[level]
        if covered >= fraction * total:
            return level
    return max(spans)


def fcfs_waits(jobs: Sequence[SimJob], cores: int) -> list[float]:
    """Waits on a static cluster of `cores`, first come first served (no backfill):
    a job starts once every earlier job has started and enough cores are free."""
    running: list[tuple[float, int]] = []      # (end, cores)
    free = cores
    previous_start = 0.0
    waits = []
    for job in sorted(jobs, key=lambda item: (item.arrival, item.key)):
        need = min(job.cores, cores)
        moment = max(job.arrival, previous_start)
        while running and (free < need or running[0][0] <= moment):
            end, released = heapq.heappop(running)
            free += released
            moment = max(moment, end)
        waits.append(moment - job.arrival)
        free -= need
        heapq.heappush(running, (moment + job.runtime, need))
        previous_start = moment
    return waits


def static_cluster(jobs: Sequence[SimJob], cores: int, span: float) -> StaticCluster:
    waits = fcfs_waits(jobs, cores)
    return StaticCluster(cores, cores * span / HOUR,
                         WaitStats.of(waits, [job.runtime for job in jobs]))


def measure(result: SimResult, *, prices: Mapping[str, float] | None = None) -> Metrics:
    settings = result.settings
    ran = [run for run in result.jobs if run.start is not None and run.end is not None
           and run.rejected is None]
    rejected = sum(1 for run in result.jobs if run.rejected is not None)
    unfinished = len(result.jobs) - len(ran) - rejected
    all_jobs = [run.job for run in result.jobs if run.rejected is None]
    end = result.end
    used = sum(run.job.cores * (run.end - run.start) for run in ran)
    lives = list(result.instances)
    billed = sum(life.cores * ((life.deleted if life.deleted is not None else end)
                               - life.launched) for life in lives)
    boot, idle = _boot_and_idle(lives, ran, end)
    price = prices or {}
    cost = sum(life.cores * ((life.deleted if life.deleted is not None else end)
                             - life.launched) / HOUR * price.get(life.flavor, 1.0)
               for life in lives)
    waits = [run.start - run.job.arrival for run in ran]
    runtimes = [run.job.runtime for run in ran]
    boot_delay = settings.boot_delay.mean
    profile = oracle_profile(all_jobs)
    first = min((job.arrival for job in all_jobs), default=0.0)
    last = max((job.arrival + job.runtime for job in all_jobs), default=0.0)
    span = max(last - first, 0.0)
    peak = max((level for _, level in profile), default=0)
    p95 = time_percentile(profile, 0.95)
    static_peak = static_cluster(all_jobs, peak, span)
    static_p95 = static_cluster(all_jobs, p95, span)
    billed_hours = billed / HOUR
    return Metrics(
        name=settings.name, jobs=len(ran), rejected=rejected, unfinished=unfinished,
        span_hours=span / HOUR, used_core_hours=used / HOUR, billed_core_hours=billed_hours,
        waste_ratio=(billed - used) / billed if billed > 0 else 0.0,
        boot_waste_core_hours=boot / HOUR, idle_waste_core_hours=idle / HOUR,
        packing_waste_core_hours=(billed - used - boot - idle) / HOUR,
        cost=cost, wait=WaitStats.of(waits, runtimes),
        wait_vs_boot_oracle=WaitStats.of([wait - boot_delay for wait in waits], runtimes),
        boot_oracle_slowdown=(sum(bounded_slowdown(boot_delay, run) for run in runtimes)
                              / len(runtimes) if runtimes else 1.0),
        launches=len(lives),
        launches_per_1000_jobs=1000 * len(lives) / len(ran) if ran else 0.0,
        peak_instances=_peak(((life.launched, life.deleted if life.deleted is not None
                               else end, 1) for life in lives)),
        peak_billed_cores=_peak(((life.launched, life.deleted if life.deleted is not None
                                  else end, life.cores) for life in lives)),
        static_peak=static_peak, static_p95=static_p95,
        saving_vs_static_peak=1 - billed_hours / static_peak.core_hours
        if static_peak.core_hours else 0.0,
        saving_vs_static_p95=1 - billed_hours / static_p95.core_hours
        if static_p95.core_hours else 0.0,
        passes=result.passes, wall_seconds=result.wall_seconds, finished=result.finished)


def busy_intervals(lives: Sequence[InstanceLife], runs: Iterable[JobRun],
                   end: float) -> dict[int, list[tuple[float, float]]]:
    """For each instance (by position in `lives`), the merged intervals it ran jobs."""
    by_host: dict[str, list[int]] = defaultdict(list)
    for index, life in enumerate(lives):
        by_host[life.hostname].append(index)
    spans: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for run in runs:
        if run.start is None:
            continue
        stop = run.end if run.end is not None else end
        for host in run.hosts:
            for index in by_host.get(host, ()):
                life = lives[index]
                gone = life.deleted if life.deleted is not None else end
                if life.launched <= run.start < gone:
                    spans[index].append((run.start, min(stop, gone)))
                    break
    return {index: _merge(intervals) for index, intervals in spans.items()}


def _boot_and_idle(lives: Sequence[InstanceLife], runs: Sequence[JobRun],
                   end: float) -> tuple[float, float]:
    busy = busy_intervals(lives, runs, end)
    boot = idle = 0.0
    for index, life in enumerate(lives):
        gone = life.deleted if life.deleted is not None else end
        ready = life.ready if life.ready is not None else gone
        # A job may start before the reconciler notices the mom: count from the job.
        first_job = busy[index][0][0] if index in busy else gone
        up = min(ready, first_job, gone)
        boot += life.cores * (up - life.launched)
        occupied = sum(stop - start for start, stop in busy.get(index, ()))
        idle += life.cores * max(gone - up - occupied, 0.0)
    return boot, idle


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, stop in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def _peak(intervals: Iterable[tuple[float, float, int]]) -> int:
    return max((level for _, level in concurrency_profile(intervals)), default=0)


@dataclass(frozen=True)
class Timeline:
    """The replay over time, sampled at `hours` (after the first arrival)."""

    hours: tuple[float, ...]
    queued_cores: tuple[int, ...]
    running_cores: tuple[int, ...]
    billed_cores: tuple[int, ...]
    booting: tuple[int, ...]          # instances created, mom not reported yet
    idle: tuple[int, ...]             # instances up with no job (incl. draining)
    busy: tuple[int, ...]             # instances running at least one job


def timeline(result: SimResult, points: int = 1000) -> Timeline:
    """Step functions of the replay, read at `points` evenly spaced moments."""
    end = result.end
    changes: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for run in result.jobs:
        if run.rejected is not None:
            continue
        cores = run.job.cores
        changes["queued"].append((run.job.arrival, cores))
        if run.start is not None:
            changes["queued"].append((run.start, -cores))
            changes["running"].append((run.start, cores))
            if run.end is not None:
                changes["running"].append((run.end, -cores))
    lives = list(result.instances)
    busy = busy_intervals(lives, result.jobs, end)
    for index, life in enumerate(lives):
        gone = life.deleted if life.deleted is not None else end
        ready = life.ready if life.ready is not None else gone
        up = min(ready, busy[index][0][0] if index in busy else gone, gone)
        changes["billed"] += [(life.launched, life.cores), (gone, -life.cores)]
        changes["booting"] += [(life.launched, 1), (up, -1)]
        changes["up"] += [(up, 1), (gone, -1)]
        for start, stop in busy.get(index, ()):
            changes["busy"] += [(start, 1), (stop, -1)]
    start = min((time for series in changes.values() for time, _ in series), default=0.0)
    step = (end - start) / max(points - 1, 1)
    moments = [start + step * index for index in range(points)]
    sampled = {name: _sample(series, moments) for name, series in changes.items()}
    zeros = [0] * points
    busy_counts = sampled.get("busy", zeros)
    return Timeline(
        hours=tuple(moment / HOUR for moment in moments),
        queued_cores=tuple(sampled.get("queued", zeros)),
        running_cores=tuple(sampled.get("running", zeros)),
        billed_cores=tuple(sampled.get("billed", zeros)),
        booting=tuple(sampled.get("booting", zeros)),
        idle=tuple(up - taken for up, taken in zip(sampled.get("up", zeros), busy_counts)),
        busy=tuple(busy_counts))


def _sample(changes: list[tuple[float, int]], moments: Sequence[float]) -> list[int]:
    """The running sum of `changes` just after each moment (changes at a moment count)."""
    ordered = sorted(changes)
    values = []
    level = 0
    position = 0
    for moment in moments:
        while position < len(ordered) and ordered[position][0] <= moment:
            level += ordered[position][1]
            position += 1
        values.append(level)
    return values
