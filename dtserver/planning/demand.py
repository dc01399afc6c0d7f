"""Queued jobs and live hints -> node-slices -> packed onto capacity, new instances last.

First-fit-decreasing: demands sorted by their largest slice; each slice goes to the first
bin (existing capacity first, then instances planned this pass) with room; a new bin takes
the flavor that wastes least on the slices waiting behind it. A multi-node job gets all its
slices placed or none (its partial placement is rolled back).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from dtserver.actions import ExpireHint, JobVerdict, LaunchInstance, VerdictStatus
from dtserver.model import (
    DemandHint, DrainKind, Flavor, Job, JobState, NodeRecord, NodeState, Snapshot)
from dtserver.planning.eligibility import Eligibility, Shape, fits_flavor
from dtserver.planning.limits import Budget, launch_block
from dtserver.planning.step import StepResult
from dtserver.policy import Policy, Pool

# A job's ctime has whole seconds and the submit host's clock may lag ours.
HINT_MATCH_SKEW = timedelta(seconds=5)
LOOKAHEAD_SLICES = 32
HINT_KEY = "hint:"
# A busy node whose jobs all end within one boot: demand waits for it (Policy.lookahead).
FREES_SOON = "frees-soon"

@dataclass
class Demand:
    key: str                       # job id, or HINT_KEY + "<id>#<n>"
    created: datetime
    pools: list[Pool]
    slices: tuple[Shape, ...]      # sorted largest first
    distinct: bool
    cores: int
    job_id: str | None = None

    @property
    def size(self) -> Shape:
        return self.slices[0]


@dataclass
class Bin:
    hostname: str
    pool: Pool
    cores: int
    mem_mb: int
    gpus: int
    label: str                     # "idle", "booting", "new", ...
    flavor: Flavor | None = None   # set for bins planned this pass
    members: set[str] = field(default_factory=set)
    busy: bool = False             # TORQUE already runs jobs on it
    sealed: bool = False           # holds a job that shares its node with none

    def put(self, shape: Shape, demand: Demand) -> None:
        self.cores -= shape.cores
        self.mem_mb -= shape.mem_mb
        self.gpus -= shape.gpus
        self.members.add(demand.key)

    def take_out(self, shape: Shape, demand: Demand) -> None:
        self.cores += shape.cores
        self.mem_mb += shape.mem_mb
        self.gpus += shape.gpus
        self.members.discard(demand.key)
        self.sealed = self.sealed and bool(self.members)


def match_hints(jobs: Iterable[Job], hints: Iterable[DemandHint], policy: Policy,
                now: datetime) -> tuple[list[tuple[DemandHint, int]], list[ExpireHint]]:
    """Pair hints with the jobs they announced; return the unmatched rest with its count."""
    by_owner: dict[str, list[Job]] = {}
    for job in jobs:
        by_owner.setdefault(job.owner, []).append(job)
    consumed: set[str] = set()
    live: list[tuple[DemandHint, int]] = []
    expired: list[ExpireHint] = []
    for hint in sorted(hints, key=lambda h: h.received):
        remaining = hint.count
        matched: list[str] = []
        for job in by_owner.get(hint.user, ()):
            if remaining == 0:
                break
            if (job.id not in consumed and job.request is not None
                    and (hint.queue is None or hint.queue == job.queue)
                    and job.created >= hint.received - HINT_MATCH_SKEW
                    and job.request.chunks == hint.request.chunks):
                consumed.add(job.id)
                matched.append(job.id)
                remaining -= 1
        if remaining == 0:
            expired.append(ExpireHint(hint.id, f"matched job {', '.join(matched)}"))
        elif now - hint.received > policy.hint_ttl:
            expired.append(ExpireHint(hint.id, "expired before its job was seen",
                                      strike_user=hint.user, strike_source=hint.source))
        else:
            live.append((hint, remaining))
    return live, expired


def _job_demand(job: Job, policy: Policy, eligibility: Eligibility
                ) -> tuple[Demand | None, JobVerdict | None]:
    if policy.queues and job.queue not in policy.queues:
        return None, JobVerdict(job.id, VerdictStatus.NOT_ELIGIBLE,
                                f"queue {job.queue} is not monitored")
    if job.state is JobState.HELD:
        return None, JobVerdict(job.id, VerdictStatus.NOT_ELIGIBLE,
                                f"held (Hold_Types={job.hold_types})")
    if job.state is JobState.WAITING:
        return None, JobVerdict(job.id, VerdictStatus.NOT_ELIGIBLE, "waiting for its start time")
    if job.state is JobState.UNKNOWN:
        return None, JobVerdict(job.id, VerdictStatus.NOT_ELIGIBLE,
                                "its qstat -x entry could not be read "
                                "(the reconciler log names the field)")
    if job.state is not JobState.QUEUED:
        return None, None
    if job.request is None:
        return None, JobVerdict(job.id, VerdictStatus.NOT_ELIGIBLE,
                                f"request not understood: {job.request_error}")
    pinned = [chunk.hostname for chunk in job.request.chunks if chunk.hostname]
    if pinned:
        return None, JobVerdict(job.id, VerdictStatus.NOT_ELIGIBLE,
                                f"pinned to host {pinned[0]}: no new node can serve it")
    pools, why = eligibility.pools_for(job.queue, job.account, job.request)
    if not pools:
        return None, JobVerdict(job.id, VerdictStatus.UNSERVABLE, why)
    slices, distinct, cores = eligibility.slices(job.request)
    return Demand(job.id, job.created, pools, slices, distinct, cores, job_id=job.id), None


def _hint_demands(hint: DemandHint, count: int, policy: Policy,
                  eligibility: Eligibility) -> list[Demand]:
    pools, _ = eligibility.pools_for(hint.queue, hint.account, hint.request)
    if not pools or any(chunk.hostname for chunk in hint.request.chunks):
        return []
    count = min(count, policy.hints.max_array)
    if hint.request.array and hint.request.array.slot_limit is not None:
        count = min(count, hint.request.array.slot_limit)
    slices, distinct, cores = eligibility.slices(hint.request)
    return [Demand(f"{HINT_KEY}{hint.id}#{index}", hint.received, pools, slices, distinct, cores)
            for index in range(count)]


def _trusted_hint_demands(live_hints: Sequence[tuple[DemandHint, int]], snapshot: Snapshot,
                          policy: Policy, eligibility: Eligibility
                          ) -> tuple[list[Demand], list[str]]:
    """The demand of unmatched hints that their budget allows, oldest hint first.

    A hint is a claim anyone on the cluster can make, so it may pre-warm at most
    Policy.hint_cores per claimed user, per source address and in total, and nothing for a
    user with `hints.strikes` unmatched expiries in the penalty window, or a source with
    `hints.source_strikes` (one sender may claim many users). Work stays in proportion to
    the budget, not to what was posted."""
    per_user, per_source, total = policy.hint_cores
    user_cores: dict[str, int] = {}
    source_cores: dict[str, int] = {}
    all_cores = 0
    demands: list[Demand] = []
    no_credit: set[str] = set()
    over_budget: set[str] = set()
    for hint, count in sorted(live_hints, key=lambda pair: pair[0].received):
        source = hint.source or ""
        strikes = snapshot.hint_strikes
        if (strikes.by_user.get(hint.user, 0) >= policy.hints.strikes
                or strikes.by_source.get(source, 0) >= policy.hints.source_strikes):
            no_credit.add(hint.user)
            continue
        if all_cores >= total:
            over_budget.add(hint.user)
            break
        if user_cores.get(hint.user, 0) >= per_user or source_cores.get(source, 0) >= per_source:
            over_budget.add(hint.user)
            continue
        for demand in _hint_demands(hint, count, policy, eligibility):
            user_used = user_cores.get(hint.user, 0) + demand.cores
            source_used = source_cores.get(source, 0) + demand.cores
            if (user_used > per_user or source_used > per_source
                    or all_cores + demand.cores > total):
                over_budget.add(hint.user)
                break
            user_cores[hint.user], source_cores[source] = user_used, source_used
            all_cores += demand.cores
            demands.append(demand)
    notes = []
    if over_budget:
        notes.append(f"hints beyond their budget ({per_user} cores a user, {per_source} a "
                     f"source, {total} in all) wait for their jobs: {_users(over_budget)}")
    if no_credit:
        notes.append(f"no hint credit ({policy.hints.strikes} hints of the user, or "
                     f"{policy.hints.source_strikes} from its address, expired unmatched "
                     f"within {int(policy.hints.penalty.total_seconds())} s): "
                     f"{_users(no_credit)}")
    return demands, notes


def _users(users: set[str]) -> str:
    shown = sorted(users)
    return ", ".join(shown[:5]) + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")


def existing_bins(snapshot: Snapshot, policy: Policy, now: datetime,
                  reclaimable: dict[str, NodeRecord]) -> tuple[list[Bin], datetime | None]:
    """Free capacity on nodes we own that are up or coming, plus idle-drained nodes that
    could be cleared instead of launching anew; then, with Policy.lookahead, whole busy
    nodes whose jobs all end within one boot (by their start time and walltime): a job
    that waits for one of those starts no later than on a node launched for it now.
    Also when the next busy node comes within that boot: the packing may change then."""
    nodes = snapshot.node_by_name or {}
    bins: list[Bin] = []
    freeing: list[Bin] = []
    coming: list[datetime] = []
    ends, horizon = _job_ends(snapshot, policy, now) if policy.lookahead else ({}, now)
    for record in snapshot.records:
        pool = policy.pool(record.pool)
        flavor = pool.flavor(record.flavor) if pool else None
        if pool is None or flavor is None:
            continue
        node = nodes.get(record.hostname)
        if record.state in (NodeState.LAUNCHING, NodeState.BOOTING, NodeState.REGISTERED):
            # The scheduler may already have put jobs on a node that just reported.
            used = node.used_cores if node is not None and node.has_reported else 0
            label = record.state.value
        elif record.state in (NodeState.IDLE, NodeState.BUSY) or record.hostname in reclaimable:
            if node is None:
                continue   # unknown usage: never count it as free
            used = node.used_cores
            label = "draining" if record.hostname in reclaimable else record.state.value
        else:
            continue
        share = max(flavor.cores - used, 0)
        bins.append(Bin(record.hostname, pool, share, flavor.mem_mb * share // flavor.cores,
                        flavor.gpus if used == 0 else 0, label, busy=used > 0))
        if not (used and record.state is NodeState.BUSY and node is not None and node.jobs
                and all(job in ends for job in node.jobs)):
            continue
        last_end = max(ends[job] for job in node.jobs)
        if last_end > horizon:
            coming.append(now + (last_end - horizon))
            continue
        # One members set for both bins of the node: a job that needs distinct nodes never
        # counts it twice.
        freeing.append(Bin(record.hostname, pool, flavor.cores, flavor.mem_mb, flavor.gpus,
                           FREES_SOON, members=bins[-1].members, busy=True))
    return bins + freeing, min(coming, default=None)


def _job_ends(snapshot: Snapshot, policy: Policy, now: datetime
              ) -> tuple[dict[str, datetime], datetime]:
    """When each running job ends at the latest, by id, and the end of one boot from now."""
    recent = snapshot.recent
    horizon = now + (recent.boot_time(policy.boot_estimate) if recent is not None
                     else policy.boot_estimate)
    ends = {}
    for job in snapshot.jobs or ():
        if job.state is JobState.RUNNING:
            end = job.expected_end
            if end is not None:
                ends[job.id] = end
    return ends, horizon


class _Packer:
    def __init__(self, snapshot: Snapshot, policy: Policy, now: datetime, budget: Budget,
                 bins: list[Bin], pending: dict[str, list[Demand]]) -> None:
        self.snapshot = snapshot
        self.now = now
        self.budget = budget
        self.bins_by_pool: dict[str, list[Bin]] = {pool.name: [] for pool in policy.pools}
        for bin_ in bins:
            self.bins_by_pool[bin_.pool.name].append(bin_)
        self.pending = pending
        self.blocked = {pool.name: launch_block(pool, snapshot, now) for pool in policy.pools}
        # Set when not even the smallest flavor may be launched: no bin will open this pass.
        self.exhausted: dict[str, str] = {}
        # Bins only lose room (until a rollback), so a shape that found no room in
        # bins[:n] never will: first-fit for that shape starts at n.
        self.scan_from: dict[str, dict[Shape, int]] = {pool.name: {} for pool in policy.pools}
        self.smallest = {pool.name: min(pool.flavors, key=lambda f: (f.cores, f.mem_mb, f.gpus))
                         for pool in policy.pools}
        self.pack_multicore = policy.pack_multicore
        # Cores queued for each pool after each position of its pending list.
        self.cores_after: dict[str, list[int]] = {}
        for name, queued in pending.items():
            after = [0] * (len(queued) + 1)
            for index in range(len(queued) - 1, -1, -1):
                after[index] = after[index + 1] + queued[index].cores
            self.cores_after[name] = after[1:]

    def place(self, demand: Demand, pool: Pool, position: int
              ) -> tuple[list[Bin] | None, str]:
        bins = self.bins_by_pool[pool.name]
        length_before = len(bins)
        placed: list[tuple[Bin, int, Shape]] = []
        refusal = ""
        exclusive = not self.pack_multicore and demand.cores > 1
        for index, shape in enumerate(demand.slices):
            found = (self._first_empty(bins, shape) if exclusive
                     else self._first_fit(bins, shape, demand, pool.name))
            if found is None:
                refusal = self._open_bin(pool, demand, index, position)
                if refusal:
                    break
                found = len(bins) - 1
            bins[found].put(shape, demand)
            bins[found].sealed = exclusive
            placed.append((bins[found], found, shape))
        else:
            return [bin_ for bin_, _, _ in placed], ""
        if placed or len(bins) > length_before:
            self._roll_back(pool, bins, placed, length_before, demand)
        return None, refusal

    def _open_bin(self, pool: Pool, demand: Demand, index: int, position: int) -> str:
        """Append a new bin for demand.slices[index]; a refusal reason when none may open.
        The least-waste flavor first; a smaller one when a limit refuses it, a larger one
        when the pool's slots run short (Budget.keeping_reserve)."""
        refusal = self.blocked[pool.name] or self.exhausted.get(pool.name)
        if refusal:
            return refusal
        ranked = self._rank_flavors(pool, demand, index, position)
        if not ranked:
            return "no flavor fits"
        refusals = [self.budget.refusal(pool, flavor) for flavor in ranked]
        allowed = [flavor for flavor, no in zip(ranked, refusals) if not no]
        if not allowed:
            if self.budget.refusal(pool, self.smallest[pool.name]):
                self.exhausted[pool.name] = refusals[0]
            return refusals[0]
        behind = sum(shape.cores for shape in demand.slices[index + 1:])
        if position >= 0:
            behind += self.cores_after[pool.name][position]
        flavor = self.budget.keeping_reserve(pool, allowed, demand.slices[index][0], behind)
        self.bins_by_pool[pool.name].append(
            Bin(self.budget.take(pool, flavor), pool, flavor.cores, flavor.mem_mb,
                flavor.gpus, "new", flavor=flavor))
        return ""

    def _roll_back(self, pool: Pool, bins: list[Bin], placed: list[tuple[Bin, int, Shape]],
                   length_before: int, demand: Demand) -> None:
        """A demand that cannot get all its slices gets none of them."""
        for bin_, _, shape in placed:
            bin_.take_out(shape, demand)
        for bin_ in bins[length_before:]:
            self.budget.give_back(pool, bin_.flavor, bin_.hostname)
        if len(bins) > length_before:
            del bins[length_before:]
            self.exhausted.pop(pool.name, None)
        lowest = min((found for _, found, _ in placed), default=length_before)
        scans = self.scan_from[pool.name]
        for shape, start in scans.items():
            scans[shape] = min(start, lowest, len(bins))

    def _first_fit(self, bins: list[Bin], shape: Shape, demand: Demand,
                   pool_name: str) -> int | None:
        scans = self.scan_from[pool_name]
        start = scans.get(shape, 0)
        cores, mem_mb, gpus = shape
        roomless_prefix = True
        for index in range(start, len(bins)):
            bin_ = bins[index]
            if cores <= bin_.cores and mem_mb <= bin_.mem_mb and gpus <= bin_.gpus \
                    and not bin_.sealed:
                if not (demand.distinct and demand.key in bin_.members):
                    scans[shape] = start
                    return index
                roomless_prefix = False   # room, but taken by this demand's own slice
            elif roomless_prefix:
                start = index + 1
        scans[shape] = start
        return None

    @staticmethod
    def _first_empty(bins: list[Bin], shape: Shape) -> int | None:
        """A bin nothing runs on or is planned onto (Policy.pack_multicore off)."""
        cores, mem_mb, gpus = shape
        return next((index for index, bin_ in enumerate(bins)
                     if not bin_.members and not bin_.busy and cores <= bin_.cores
                     and mem_mb <= bin_.mem_mb and gpus <= bin_.gpus), None)

    def _rank_flavors(self, pool: Pool, demand: Demand, index: int,
                      position: int) -> list[Flavor]:
        """Flavors that fit, least waste first over the slices queued behind this one
        (cluster-autoscaler's least-waste expander, on cores then memory)."""
        upcoming: list[tuple[Shape, Demand]] = [(shape, demand)
                                                for shape in demand.slices[index:]]
        for later in itertools.islice(self.pending[pool.name], position + 1, None):
            if len(upcoming) >= LOOKAHEAD_SLICES:
                break
            upcoming.extend((shape, later) for shape in later.slices)
        scored: list[tuple[tuple[float, float, int, int], Flavor]] = []
        for flavor in pool.flavors:
            if not fits_flavor(upcoming[0][0], flavor):
                continue
            cores, mem_mb, gpus = flavor.cores, flavor.mem_mb, flavor.gpus
            seen: set[str] = set()
            absorbed = 0
            for (c, m, g), owner in upcoming[:LOOKAHEAD_SLICES]:
                if c <= cores and m <= mem_mb and g <= gpus and not (
                        owner.distinct and owner.key in seen):
                    cores, mem_mb, gpus = cores - c, mem_mb - m, gpus - g
                    seen.add(owner.key)
                    absorbed += 1
            # Least idle cores, then memory; among equals the one serving more slices (fewer
            # boots), then the smaller flavor.
            score = (cores / flavor.cores, mem_mb / max(flavor.mem_mb, 1), -absorbed,
                     flavor.cores)
            scored.append((score, flavor))
        scored.sort(key=lambda pair: pair[0])
        return [flavor for _, flavor in scored]


def plan_demand(snapshot: Snapshot, policy: Policy, now: datetime, budget: Budget,
                live_hints: Sequence[tuple[DemandHint, int]],
                reclaimable: dict[str, NodeRecord]) -> StepResult:
    """Launches for queued jobs and `live_hints` (match_hints), a verdict for every queued
    job; claims the nodes demand was packed onto, new and existing (drained ones among them
    are cleared rather than deleted). Due again when a busy node comes within a boot of
    freeing."""
    eligibility = Eligibility(policy)
    jobs = snapshot.jobs or ()
    verdicts: list[JobVerdict] = []
    demands: list[Demand] = []
    for job in jobs:
        demand, verdict = _job_demand(job, policy, eligibility)
        if demand is not None:
            demands.append(demand)
        if verdict is not None:
            verdicts.append(verdict)
    hint_demands, notes = _trusted_hint_demands(live_hints, snapshot, policy, eligibility)
    demands.extend(hint_demands)
    demands.sort(key=lambda d: (-d.size.cores, -d.size.mem_mb, -len(d.slices), d.created))

    pending: dict[str, list[Demand]] = {pool.name: [] for pool in policy.pools}
    for demand in demands:
        pending[demand.pools[0].name].append(demand)
    position = {demand.key: index for pool_demands in pending.values()
                for index, demand in enumerate(pool_demands)}

    bins, next_due = existing_bins(snapshot, policy, now, reclaimable) if demands \
        else ([], None)
    packer = _Packer(snapshot, policy, now, budget, bins, pending)
    launches: dict[str, LaunchInstance] = {}
    bin_jobs: dict[str, list[str]] = {}
    used: set[str] = set()
    # Bins only lose room and the budget only shrinks, so a demand shape that found no
    # place stays placeless for the rest of the pass: 100k alike jobs cost one try each.
    placeless: dict[tuple, str] = {}
    for demand in demands:
        signature = (id(demand.pools), demand.slices, demand.distinct)
        if signature in placeless:
            if demand.job_id is not None:
                verdicts.append(JobVerdict(demand.job_id, VerdictStatus.WAITING_CAPACITY,
                                           placeless[signature], demand.pools[0].name,
                                           demand.cores))
            continue
        refusals: list[str] = []
        for pool in demand.pools:
            bins, refusal = packer.place(demand, pool, position[demand.key]
                                         if pool is demand.pools[0] else -1)
            if bins is None:
                refusals.append(refusal)
                continue
            for bin_ in bins:
                bin_jobs.setdefault(bin_.hostname, []).append(demand.key)
                if bin_.flavor is None:
                    used.add(bin_.hostname)
            if demand.job_id is not None:
                verdicts.append(_placed_verdict(demand, bins, pool))
            break
        else:
            placeless[signature] = "; ".join(dict.fromkeys(refusals))
            if demand.job_id is not None:
                verdicts.append(JobVerdict(demand.job_id, VerdictStatus.WAITING_CAPACITY,
                                           placeless[signature], demand.pools[0].name,
                                           demand.cores))
    for pool_bins in packer.bins_by_pool.values():
        for bin_ in pool_bins:
            if bin_.flavor is None:
                continue
            served = bin_jobs.get(bin_.hostname, [])
            shown = ", ".join(served[:5]) + (f" and {len(served) - 5} more" if len(served) > 5 else "")
            launches[bin_.hostname] = LaunchInstance(
                hostname=bin_.hostname, pool=bin_.pool.name, flavor=bin_.flavor.name,
                cores=bin_.flavor.cores, reason=f"demand: {shown}",
                prewarm=all(key.startswith(HINT_KEY) for key in served))
    return StepResult(actions=tuple(launches.values()), notes=tuple(notes),
                      claimed=frozenset(used.union(launches)), next_due=next_due,
                      verdicts=tuple(verdicts))


def _placed_verdict(demand: Demand, bins: list[Bin], pool: Pool) -> JobVerdict:
    hosts = ", ".join(dict.fromkeys(bin_.hostname for bin_ in bins))
    labels = {bin_.label for bin_ in bins}
    if "new" in labels:
        return JobVerdict(demand.key, VerdictStatus.LAUNCHING, f"launching {hosts}", pool.name,
                          demand.cores)
    if labels & {"launching", "booting", "registered"}:
        return JobVerdict(demand.key, VerdictStatus.WAITING_BOOT,
                          f"waiting for {hosts} to join",
                          pool.name, demand.cores)
    if FREES_SOON in labels:
        return JobVerdict(demand.key, VerdictStatus.WAITING_JOB_END,
                          f"fits on {hosts} when the jobs there end, within a boot",
                          pool.name, demand.cores)
    return JobVerdict(demand.key, VerdictStatus.WAITING_SCHEDULER,
                      f"fits on {hosts}; waiting for the scheduler", pool.name, demand.cores,
                      tuple(dict.fromkeys(bin_.hostname for bin_ in bins)))


def plan_floor(snapshot: Snapshot, policy: Policy, now: datetime, budget: Budget) -> StepResult:
    """Launch up to each pool's min_nodes (static, always-on nodes); claims them."""
    launches: list[LaunchInstance] = []
    notes: list[str] = []
    for pool in policy.pools:
        have = sum(1 for record in snapshot.records if record.pool == pool.name
                   and record.state not in (NodeState.DELETED, NodeState.DELETING,
                                            NodeState.FAILED)
                   and record.drain is not DrainKind.ADMIN)
        if have >= pool.min_nodes:
            continue
        block = launch_block(pool, snapshot, now)
        flavor = min(pool.flavors, key=lambda f: (f.cores, f.mem_mb))
        for _ in range(pool.min_nodes - have):
            refusal = block or budget.refusal(pool, flavor)
            if refusal:
                notes.append(f"pool {pool.name} below min_nodes={pool.min_nodes}: {refusal}")
                break
            hostname = budget.take(pool, flavor)
            launches.append(LaunchInstance(hostname, pool.name, flavor.name, flavor.cores,
                                           f"min_nodes={pool.min_nodes}"))
    return StepResult(actions=tuple(launches), notes=tuple(notes),
                      claimed=frozenset(launch.hostname for launch in launches))
