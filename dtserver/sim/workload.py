"""Trace jobs -> TORQUE submissions for one pool of flavors.

A job of `c` cores that fits the largest flavor asks for one node (`nodes=1:ppn=c`);
a larger one asks for as few nodes as the largest flavor allows, with the cores spread
evenly (`nodes=n:ppn=ceil(c/n)`), so it over-asks by less than `n` cores. The walltime is
the user's request, raised to the run time where the log shows the job outlived it (the
emulator would otherwise kill it, which the original machine did not).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from dtserver.model import Flavor
from dtserver.sim.swf import SwfJob

QUEUE = "batch"


@dataclass(frozen=True)
class SimJob:
    key: int                  # position in the replay, stable across runs
    number: int               # the trace's job number
    line: int
    arrival: float            # seconds after the first arrival
    runtime: float
    cores: int                # what the job used (the trace's processors)
    nodes: int
    ppn: int
    walltime: int
    owner: str

    @property
    def requested_cores(self) -> int:
        return self.nodes * self.ppn

    @property
    def resources(self) -> dict[str, str]:
        return {"nodes": f"{self.nodes}:ppn={self.ppn}", "walltime": _hms(self.walltime)}


@dataclass(frozen=True)
class TooBig:
    number: int
    line: int
    cores: int
    reason: str


def node_shape(cores: int, largest: int) -> tuple[int, int]:
    """(nodes, ppn) for a job of `cores` on flavors of at most `largest` cores."""
    nodes = max(1, math.ceil(cores / largest))
    return nodes, math.ceil(cores / nodes)


def pool_capacity(flavors: Sequence[Flavor], max_nodes: int,
                  max_cores: int | None) -> tuple[int, int]:
    """(nodes, cores) the pool can ever hold at once."""
    cores = max_nodes * max(flavor.cores for flavor in flavors)
    return max_nodes, cores if max_cores is None else min(cores, max_cores)


def map_jobs(jobs: Iterable[SwfJob], flavors: Sequence[Flavor], *, max_nodes: int,
             max_cores: int | None = None) -> tuple[list[SimJob], list[TooBig]]:
    """Submissions for the jobs that fit; the ones the pool can never run, skipped with
    the reason (capping them would replay a different job)."""
    largest = max(flavor.cores for flavor in flavors)
    node_cap, core_cap = pool_capacity(flavors, max_nodes, max_cores)
    mapped: list[SimJob] = []
    too_big: list[TooBig] = []
    origin: float | None = None
    for job in jobs:
        nodes, ppn = node_shape(job.cores, largest)
        if nodes > node_cap or nodes * ppn > core_cap:
            too_big.append(TooBig(job.number, job.line, job.cores,
                                  f"needs {nodes} nodes of {ppn} cores; the pool holds at most "
                                  f"{node_cap} nodes and {core_cap} cores"))
            continue
        if origin is None:
            origin = job.submit
        walltime = math.ceil(max(job.requested_time or 0.0, job.runtime))
        mapped.append(SimJob(key=len(mapped), number=job.number, line=job.line,
                             arrival=job.submit - origin, runtime=job.runtime, cores=job.cores,
                             nodes=nodes, ppn=ppn, walltime=walltime,
                             owner=f"u{job.user}" if job.user >= 0 else "user"))
    return mapped, too_big


def _hms(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
