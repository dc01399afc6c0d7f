"""One trace replayed under several engine settings, measured the same way."""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from dtserver.model import Flavor
from dtserver.sim.metrics import Metrics, measure
from dtserver.sim.progress import ProgressBar
from dtserver.sim.runner import SimResult, SimSettings, simulate
from dtserver.sim.swf import SwfJob, SwfTrace, concurrency_profile
from dtserver.sim.workload import SimJob, TooBig, map_jobs

# Slots per pool: room for the oracle's peak on the largest flavor, twice over, since
# smaller flavors, nodes booting and nodes draining all take slots too.
SLOT_HEADROOM = 2.0
MIN_SLOTS = 8


@dataclass(frozen=True)
class Run:
    settings: SimSettings
    result: SimResult
    metrics: Metrics


@dataclass(frozen=True)
class Replay:
    trace: SwfTrace
    jobs: tuple[SimJob, ...]
    too_big: tuple[TooBig, ...]
    runs: tuple[Run, ...]


def oracle_peak_cores(jobs: Sequence[SwfJob]) -> int:
    """Cores in use at the busiest moment if every job started on arrival."""
    profile = concurrency_profile((job.submit, job.submit + job.runtime, job.cores)
                                  for job in jobs)
    return max((level for _, level in profile), default=0)


def default_max_nodes(jobs: Sequence[SwfJob], flavors: Sequence[Flavor]) -> int:
    largest = max(flavor.cores for flavor in flavors)
    return max(MIN_SLOTS, math.ceil(SLOT_HEADROOM * oracle_peak_cores(jobs) / largest))


def replay(trace: SwfTrace, configurations: Sequence[SimSettings], *,
           prices: Mapping[str, float] | None = None, shape: str = "native",
           progress: bool = False) -> Replay:
    """Every configuration replays the same jobs: those that fit each one's pool. A
    configuration whose max_nodes is 0 gets the trace-sized default. `progress`: a bar
    per replay on stderr when it is a terminal."""
    if not configurations:
        raise ValueError("replay needs at least one configuration")
    sized = [replace(settings, max_nodes=settings.max_nodes
                     or default_max_nodes(trace.jobs, settings.flavors))
             for settings in configurations]
    mapped = [map_jobs(trace.jobs, settings.flavors, max_nodes=settings.max_nodes,
                       max_cores=settings.max_cores, shape=shape,
                       node_cores=trace.cores_per_node) for settings in sized]
    too_big: dict[int, TooBig] = {}
    for _, refused in mapped:
        for job in refused:
            too_big.setdefault(job.line, job)
    runs = []
    for settings, (jobs, _) in zip(sized, mapped):
        runnable = [job for job in jobs if job.line not in too_big]
        with ProgressBar(settings.name, len(runnable)) if progress else nullcontext() as bar:
            result = simulate(runnable, settings, progress=bar)
        runs.append(Run(settings, result, measure(result, prices=prices)))
    common = tuple(job for job in mapped[0][0] if job.line not in too_big)
    return Replay(trace, common, tuple(sorted(too_big.values(), key=lambda job: job.line)),
                  tuple(runs))
