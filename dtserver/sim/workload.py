"""Trace jobs -> TORQUE submissions for one pool of flavors.

The default shape, "native", asks as the traced machine ran the job: one that fitted a
node of that machine (its header's MaxProcs / MaxNodes cores) may have shared memory and
stays on one node; one that did not spanned nodes there, so it is message-passing and asks
as "split" does. Without those header fields it is "fill".

In the other shapes, a job of `c` cores that fits the largest flavor (L cores) asks for one
node (`nodes=1:ppn=c`). A larger one asks, by `shape`:
- "even": as few nodes as L allows, the cores spread evenly (`nodes=n:ppn=ceil(c/n)`,
  n = ceil(c/L)); it over-asks by less than n cores, and each node-slice may fit a
  flavor badly (36 cores on 16-core flavors: 3 x 12);
- "fill": whole largest nodes and one node for the rest (`nodes=2:ppn=16+1:ppn=4`);
- "split": any job, whatever its size, as nodes of exactly the flavors' sizes, largest
  first (9 cores on 1/2/4/8/16: `nodes=1:ppn=8+1:ppn=1`; what is left below the smallest
  flavor gets one node): no core of a node idles beside it, but it spans nodes, which
  only a message-passing job can. With one flavor it is "fill".
The walltime is the user's request, raised to the run time where the log shows the job
outlived it (the emulator would otherwise kill it, which the original machine did not).
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
    key: int                  # position in the trace's replayable jobs
    number: int               # the trace's job number
    line: int
    arrival: float            # seconds after the first arrival
    runtime: float
    cores: int                # what the job used (the trace's processors)
    parts: tuple[tuple[int, int], ...]    # (nodes, ppn) for each `+` part
    walltime: int
    owner: str

    @property
    def requested_cores(self) -> int:
        return sum(nodes * ppn for nodes, ppn in self.parts)

    @property
    def node_count(self) -> int:
        return sum(nodes for nodes, _ in self.parts)

    @property
    def resources(self) -> dict[str, str]:
        spec = "+".join(f"{nodes}:ppn={ppn}" for nodes, ppn in self.parts)
        return {"nodes": spec, "walltime": _hms(self.walltime)}


@dataclass(frozen=True)
class TooBig:
    number: int
    line: int
    cores: int
    reason: str


SHAPES = ("native", "fill", "even", "split")


def node_parts(cores: int, largest: int, shape: str = "native", sizes: Sequence[int] = (),
               node_cores: int | None = None) -> tuple[tuple[int, int], ...]:
    """(nodes, ppn) parts for a job of `cores` on flavors of at most `largest` cores
    (`sizes`: the flavors' core counts, for "split"; `node_cores`: cores per node of the
    traced machine, for "native")."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, not {shape!r}")
    if shape == "native":
        spanned_nodes = node_cores is not None and cores > node_cores
        shape = "split" if spanned_nodes else "fill"
    if shape == "split":
        parts: list[tuple[int, int]] = []
        rest = cores
        for size in sorted(set(sizes) or {largest}, reverse=True):
            count, rest = divmod(rest, size)
            if count:
                parts.append((count, size))
        # Less than the smallest flavor is left: one node for it.
        return tuple(parts) + (((1, rest),) if rest else ())
    if shape == "fill" and cores > largest:
        whole, rest = divmod(cores, largest)
        return ((whole, largest),) + (((1, rest),) if rest else ())
    nodes = max(1, math.ceil(cores / largest))
    return ((nodes, math.ceil(cores / nodes)),)


def pool_capacity(flavors: Sequence[Flavor], max_nodes: int,
                  max_cores: int | None) -> tuple[int, int]:
    """(nodes, cores) the pool can ever hold at once."""
    cores = max_nodes * max(flavor.cores for flavor in flavors)
    return max_nodes, cores if max_cores is None else min(cores, max_cores)


def map_jobs(jobs: Iterable[SwfJob], flavors: Sequence[Flavor], *, max_nodes: int,
             max_cores: int | None = None, shape: str = "native",
             node_cores: int | None = None) -> tuple[list[SimJob], list[TooBig]]:
    """Submissions for the jobs that fit; the ones the pool can never run, skipped with
    the reason (capping them would replay a different job). `node_cores`: cores per node
    of the traced machine (SwfTrace.cores_per_node), for the "native" shape."""
    largest = max(flavor.cores for flavor in flavors)
    sizes = [flavor.cores for flavor in flavors]
    node_cap, core_cap = pool_capacity(flavors, max_nodes, max_cores)
    mapped: list[SimJob] = []
    too_big: list[TooBig] = []
    origin: float | None = None
    for position, job in enumerate(jobs):
        if origin is None:
            origin = job.submit    # arrivals count from the first job, run or not
        parts = node_parts(job.cores, largest, shape, sizes, node_cores)
        nodes = sum(count for count, _ in parts)
        asked = sum(count * ppn for count, ppn in parts)
        if nodes > node_cap or asked > core_cap:
            too_big.append(TooBig(job.number, job.line, job.cores,
                                  f"needs {nodes} nodes and {asked} cores; the pool holds at "
                                  f"most {node_cap} nodes and {core_cap} cores"))
            continue
        walltime = math.ceil(max(job.requested_time or 0.0, job.runtime))
        mapped.append(SimJob(key=position, number=job.number, line=job.line,
                             arrival=job.submit - origin, runtime=job.runtime, cores=job.cores,
                             parts=parts, walltime=walltime,
                             owner=f"u{job.user}" if job.user >= 0 else "user"))
    return mapped, too_big


def _hms(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
