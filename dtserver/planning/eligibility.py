"""Which pools could ever run a request, and why none can: the rules the planner packs by
and the API's hint verdicts answer by (dtserver/api/hints.py). Pure; no packing here."""
from __future__ import annotations

from typing import NamedTuple, Protocol, Sequence, TypeVar

from dtserver.model import Flavor, Request
from dtserver.policy import Policy, Pool


class Shape(NamedTuple):
    """What one node-slice of a request needs of a single node."""

    cores: int
    mem_mb: int
    gpus: int


class Slices(NamedTuple):
    """A request cut into node-slices."""

    shapes: tuple[Shape, ...]      # largest first
    distinct: bool                 # no two slices may share a node
    cores: int                     # summed over all slices


def slices_of(request: Request) -> Slices:
    shapes = sorted((Shape(chunk.cores, chunk.mem_mb, chunk.gpus)
                     for chunk in request.chunks for _ in range(chunk.count)), reverse=True)
    distinct = len(shapes) > 1 and any(chunk.distinct for chunk in request.chunks)
    return Slices(tuple(shapes), distinct, sum(shape.cores for shape in shapes))


def fits_flavor(shape: Shape, flavor: Flavor) -> bool:
    return (shape.cores <= flavor.cores and shape.mem_mb <= flavor.mem_mb
            and shape.gpus <= flavor.gpus)


class PoolShape(Protocol):
    """What eligibility reads of a pool: a Policy's Pool, or the pool catalogue the
    reconciler publishes for the API (dtserver.store.CataloguePool)."""

    @property
    def name(self) -> str: ...

    @property
    def flavors(self) -> tuple[Flavor, ...]: ...

    @property
    def properties(self) -> frozenset[str]: ...

    @property
    def queues(self) -> frozenset[str]: ...

    @property
    def accounts(self) -> frozenset[str]: ...

    @property
    def max_nodes(self) -> int: ...

    @property
    def max_cores(self) -> int | None: ...


_P = TypeVar("_P", bound=PoolShape)


def _fewest_nodes(slices: Slices, pool: PoolShape) -> int:
    """A lower bound on the nodes `slices` take in `pool`: one each when they must not
    share, else what their summed cores, memory and GPUs fill of the largest flavor."""
    if slices.distinct:
        return len(slices.shapes)
    needed = (sum(shape.cores for shape in slices.shapes),
              sum(shape.mem_mb for shape in slices.shapes),
              sum(shape.gpus for shape in slices.shapes))
    largest = (max(flavor.cores for flavor in pool.flavors),
               max(flavor.mem_mb for flavor in pool.flavors),
               max(flavor.gpus for flavor in pool.flavors))
    fewest = 1
    for need, most in zip(needed, largest):
        if need and most:
            fewest = max(fewest, -(-need // most))
    return fewest


class _Refusal(NamedTuple):
    rank: int          # how close the pool came: the higher, the later the rule that refused
    reason: str


def _refusal(pool: PoolShape, queue: str | None, account: str | None, request: Request,
             slices: Slices) -> _Refusal | None:
    """Why `pool` can never run `request`; None if it can."""
    if pool.queues and queue not in pool.queues:
        return _Refusal(0, f"no pool serves queue {queue}")
    if pool.accounts and account not in pool.accounts:
        return _Refusal(1, f"no pool serves account {account}" if account is not None
                        else "no pool serves jobs without an account (qsub -A)")
    missing = frozenset().union(*(chunk.properties for chunk in request.chunks)) - pool.properties
    if missing:
        return _Refusal(2, f"no pool has node properties {', '.join(sorted(missing))}")
    too_big = [chunk for chunk in request.chunks
               if not any(fits_flavor(Shape(chunk.cores, chunk.mem_mb, chunk.gpus), flavor)
                          for flavor in pool.flavors)]
    if too_big:
        chunk = too_big[0]
        largest = max(pool.flavors, key=lambda f: (f.cores, f.mem_mb))
        return _Refusal(3, f"a node of {chunk.cores} cores/{chunk.mem_mb} MiB/{chunk.gpus} "
                           f"GPUs is larger than any flavor (largest {largest.name}: "
                           f"{largest.cores} cores/{largest.mem_mb} MiB/{largest.gpus} GPUs)")
    nodes = _fewest_nodes(slices, pool)
    if nodes > pool.max_nodes:
        return _Refusal(4, f"needs at least {nodes} nodes; pool {pool.name} has "
                           f"max_nodes={pool.max_nodes}")
    if pool.max_cores is not None and slices.cores > pool.max_cores:
        return _Refusal(5, f"needs {slices.cores} cores; pool {pool.name} has "
                           f"max_cores={pool.max_cores}")
    return None


def eligible_pools(pools: Sequence[_P], queue: str | None, account: str | None,
                   request: Request, max_cores: int | None = None) -> tuple[list[_P], str]:
    """The pools that could ever run `request`, those reserved to a queue or an account
    first, and ""; or none and why (said by the pool that came closest). A pool is out
    when it serves another queue or account, lacks a node property, has no flavor as large
    as one node-slice, or when the request needs more nodes than its max_nodes or more
    cores than its max_cores; all are out for more cores than `max_cores` (the cluster's).
    Limits are checked as bounds, so "none" means never, not "not now".
    """
    specific: list[_P] = []
    general: list[_P] = []
    closest = _Refusal(-1, "no pool configured")
    slices = slices_of(request)
    for pool in pools:
        refusal = _refusal(pool, queue, account, request, slices)
        if refusal is None:
            (specific if pool.queues or pool.accounts else general).append(pool)
        elif refusal.rank > closest.rank:
            closest = refusal
    eligible = specific + general
    if not eligible:
        return [], closest.reason
    if max_cores is not None and slices.cores > max_cores:
        return [], f"needs {slices.cores} cores; the cluster has max_cores={max_cores}"
    return eligible, ""


class Eligibility:
    """eligible_pools and slices_of over a policy, remembered for one pass: alike jobs
    come by the thousand and share one Request object."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        # Keyed by id(): the parser hands alike specs the same Request object, and every
        # request outlives this pass (the snapshot holds it), so ids are not reused.
        self._known: dict[tuple, tuple[list[Pool], str]] = {}
        self._slices: dict[int, Slices] = {}

    def pools_for(self, queue: str | None, account: str | None,
                  request: Request) -> tuple[list[Pool], str]:
        key = (queue, account, id(request))
        if key not in self._known:
            self._known[key] = eligible_pools(self.policy.pools, queue, account, request,
                                              self.policy.max_cores)
        return self._known[key]

    def slices(self, request: Request) -> Slices:
        if id(request) not in self._slices:
            self._slices[id(request)] = slices_of(request)
        return self._slices[id(request)]
