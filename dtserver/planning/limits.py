"""What may still be launched this pass: slots, core caps, launches in flight, quota."""
from __future__ import annotations

from collections import Counter
from datetime import datetime

from dtserver.model import Flavor, NodeState, Snapshot
from dtserver.policy import Policy, Pool


# The share of a pool's capacity (its slots, or the instances the quota still allows, times
# its largest flavor; at most max_cores) that must stay reachable after a launch
# (Budget.keeping_reserve).
SLOT_RESERVE = 0.75


class Budget:
    """Counts every live record (an instance being deleted still exists and still costs),
    then every launch this plan adds, against every configured limit."""

    def __init__(self, snapshot: Snapshot, policy: Policy) -> None:
        self._policy = policy
        self._quotas = snapshot.quotas
        live = [record for record in snapshot.records if record.state is not NodeState.DELETED]
        self.cores_used = sum(record.cores for record in live)
        self.pool_cores: Counter[str] = Counter()
        self.in_flight = sum(1 for record in live if record.state in
                             (NodeState.LAUNCHING, NodeState.BOOTING))
        self._taken: dict[str, set[str]] = {}
        for record in live:
            self.pool_cores[record.pool] += record.cores
            self._taken.setdefault(record.pool, set()).add(record.hostname)
        # Listed on first use: most passes launch nothing and never ask.
        self._free_slots_by_pool: dict[str, list[str]] = {}
        self._new_cores: Counter[str] = Counter()
        self._new_ram: Counter[str] = Counter()
        self._new_count: Counter[str] = Counter()

    def refusal(self, pool: Pool, flavor: Flavor) -> str | None:
        """Why one more `flavor` instance in `pool` would break a limit; None if it fits."""
        if not self._free_slots(pool):
            return f"pool {pool.name} at max_nodes={pool.max_nodes}"
        if pool.max_cores is not None and self.pool_cores[pool.name] + flavor.cores > pool.max_cores:
            return (f"pool {pool.name} at max_cores={pool.max_cores} "
                    f"(using {self.pool_cores[pool.name]})")
        cap = self._policy.max_cores
        if cap is not None and self.cores_used + flavor.cores > cap:
            return f"cluster at max_cores={cap} (using {self.cores_used})"
        cap = self._policy.max_booting
        if cap is not None and self.in_flight >= cap:
            return f"{self.in_flight} launches in flight (max_booting={cap})"
        # Pools of one project share its quota: count this plan's launches per project.
        project = pool.project
        quota = self._quotas.get(project)
        if quota is not None:
            if quota.cores is not None and self._new_cores[project] + flavor.cores > quota.cores:
                return f"project {project} quota: {quota.cores} cores free"
            if quota.instances is not None and self._new_count[project] + 1 > quota.instances:
                return f"project {project} quota: {quota.instances} instances free"
            if quota.ram_mb is not None and self._new_ram[project] + flavor.mem_mb > quota.ram_mb:
                return f"project {project} quota: {quota.ram_mb} MiB RAM free"
        return None

    def keeping_reserve(self, pool: Pool, ranked: list[Flavor], slice_cores: int = 0,
                        cores_behind: int = 0) -> Flavor:
        """The first of `ranked` (all allowed) after which the pool can still reach
        SLOT_RESERVE of its capacity with the slots left, and still hold the
        `cores_behind` queued after this node-slice of `slice_cores`; the largest when
        none can.

        Least waste alone fills a pool's slots with small nodes while demand trickles in,
        and later demand finds no slot although larger flavors would have served it all:
        node slots (and the instance quota) are a resource to spend, not only cores.
        Room on nodes that exist is left out: the demand behind is counted whole, so
        when slots are short the choice leans to the larger flavor."""
        free = len(self._free_slots(pool))
        launchable = free                          # this one included
        quota = self._quotas.get(pool.project)
        if quota is not None and quota.instances is not None:
            launchable = min(free, quota.instances - self._new_count[pool.project])
        capacity = (pool.max_nodes - free + launchable) * pool.slot_np
        if pool.max_cores is not None:
            capacity = min(capacity, pool.max_cores)
        for flavor in ranked:
            rest = (launchable - 1) * pool.slot_np
            reachable = self.pool_cores[pool.name] + flavor.cores + rest
            if (reachable >= SLOT_RESERVE * capacity
                    and flavor.cores - slice_cores + rest >= cores_behind):
                return flavor
        return max(ranked, key=lambda flavor: (flavor.cores, flavor.mem_mb))

    def take(self, pool: Pool, flavor: Flavor) -> str:
        """Reserve a slot and the cores; returns the slot's hostname."""
        hostname = self._free_slots(pool).pop(0)
        self.cores_used += flavor.cores
        self.pool_cores[pool.name] += flavor.cores
        self.in_flight += 1
        self._new_cores[pool.project] += flavor.cores
        self._new_ram[pool.project] += flavor.mem_mb
        self._new_count[pool.project] += 1
        return hostname

    def give_back(self, pool: Pool, flavor: Flavor, hostname: str) -> None:
        """Undo a take() when a multi-node job cannot get all its nodes."""
        free = self._free_slots(pool)
        free.insert(0, hostname)
        free.sort(key=pool.slot_names.index)
        self.cores_used -= flavor.cores
        self.pool_cores[pool.name] -= flavor.cores
        self.in_flight -= 1
        self._new_cores[pool.project] -= flavor.cores
        self._new_ram[pool.project] -= flavor.mem_mb
        self._new_count[pool.project] -= 1

    def _free_slots(self, pool: Pool) -> list[str]:
        free = self._free_slots_by_pool.get(pool.name)
        if free is None:
            taken = self._taken.get(pool.name, set())
            free = [slot for slot in pool.slot_names if slot not in taken]
            self._free_slots_by_pool[pool.name] = free
        return free


def launch_block(pool: Pool, snapshot: Snapshot, now: datetime) -> str | None:
    """A reason why `pool` may not launch at all this pass, or None."""
    if snapshot.sleeping:
        return "sleep mode: no new launches"
    if snapshot.instances is None:
        return "cloud unreadable this pass: no launches"
    health = snapshot.pool_health.get(pool.name)
    if health is None:
        return None
    if health.stopped:
        return (f"pool {pool.name} stopped after {health.consecutive_failures} consecutive "
                f"boot failures; `dtadmin reset-pool {pool.name}` resumes it")
    if health.backoff_until is not None and now < health.backoff_until:
        kind = health.last_error.value if health.last_error else "error"
        return (f"pool {pool.name} backing off until {health.backoff_until:%Y-%m-%dT%H:%M:%SZ} "
                f"after {kind}: {health.last_message}")
    return None
