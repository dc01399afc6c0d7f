"""Policy: the limits, timers and pools the planner decides with. Built by config."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property

from dtserver.model import Flavor, NodeRecord


@dataclass(frozen=True)
class Pool:
    """A launchable shape: flavors, image, zone, node properties and limits.

    Its TORQUE node slots (`slot_names`) exist before any instance does, because qsub
    refuses a `-l nodes=` request that no existing node entry could satisfy.
    """

    name: str
    flavors: tuple[Flavor, ...]
    image: str
    zone: str | None = None
    properties: frozenset[str] = frozenset({"CLOUD"})
    queues: frozenset[str] = frozenset()      # empty: any monitored queue
    accounts: frozenset[str] = frozenset()    # empty: any account
    min_nodes: int = 0                        # static floor, always on
    max_nodes: int = 10                       # also the number of node slots
    max_cores: int | None = None
    name_prefix: str = ""                     # default: "<pool>-"
    key_name: str | None = None
    security_groups: tuple[str, ...] = ()
    network: str | None = None
    user_data_template: str | None = None
    project: str = "default"                  # the cloud project whose quota it draws on

    @cached_property
    def slot_names(self) -> tuple[str, ...]:
        prefix = self.name_prefix or f"{self.name}-"
        width = max(3, len(str(self.max_nodes)))
        return tuple(f"{prefix}{index:0{width}d}" for index in range(1, self.max_nodes + 1))

    @cached_property
    def slot_np(self) -> int:
        """np of an unused slot: the largest flavor, so qsub accepts any job that fits one."""
        return max(flavor.cores for flavor in self.flavors)

    def flavor(self, name: str) -> Flavor | None:
        return self._flavor_by_name.get(name)

    @cached_property
    def _flavor_by_name(self) -> dict[str, Flavor]:
        return {flavor.name: flavor for flavor in self.flavors}


@dataclass(frozen=True)
class HintTrust:
    """What hints that no queued job has matched may make the planner launch.

    Any user can post a hint and name any user in it, so a hint only pre-warms: its demand
    is bounded per claimed user, per source address and in total, an array counts for a few
    indices at most, a user whose hints keep expiring unmatched loses hint credit for a
    while, and a node launched for hints alone is released soon when no job comes for it.
    Once a job is queued, TORQUE is the truth and none of these bounds apply to it.
    """

    cores_per_user: int | None = None    # None: one node of the largest flavor
    cores_per_source: int | None = None  # None: 2 x per user
    cores_total: int | None = None       # None: 8 x per user
    max_array: int = 4                   # array indices one hint counts for
    strikes: int = 3                     # a user's unmatched expiries within `penalty` ...
    penalty: timedelta = timedelta(hours=1)  # ... that end its hint credit
    idle_timeout: timedelta = timedelta(seconds=60)  # prewarm nodes, instead of max_idle_time

    @property
    def source_strikes(self) -> int:
        """A source serves many users (a login node): it loses credit at 4 x `strikes`."""
        return 4 * self.strikes


@dataclass(frozen=True)
class IdleRelease:
    """Demand-following idle time: max_idle_time is the longest an idle node waits, not the
    rule. After `min_idle` (a job's successor, a user's next submission), an idle node
    that nothing queued or hinted wants is released unless the jobs that arrived in the
    last `window` predict a use for it soon enough to be worth its idle cores
    (planning.reuse)."""

    enabled: bool = True
    min_idle: timedelta = timedelta(seconds=60)
    window: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class Policy:
    pools: tuple[Pool, ...]
    queues: frozenset[str] = frozenset()              # monitored queues; empty: all
    max_cores: int | None = None                      # across all pools
    max_booting: int | None = None                    # launches in flight, all pools
    idle_timeout: timedelta = timedelta(seconds=600)  # max_idle_time
    down_timeout: timedelta = timedelta(seconds=480)  # max_down_time
    boot_timeout: timedelta = timedelta(seconds=1200)  # max_inaccessible_time
    launch_grace: timedelta = timedelta(seconds=120)  # a launching record with no instance
    # A boot, create to ready, before one was seen (RecentDemand.boot_time).
    boot_estimate: timedelta = timedelta(seconds=300)
    hint_ttl: timedelta = timedelta(seconds=20)       # two job polls
    backoff_base: timedelta = timedelta(seconds=30)
    backoff_cap: timedelta = timedelta(seconds=1800)
    max_boot_failures: int = 5                        # consecutive, then the pool stops
    drain_note_prefix: str = "dynamictorque:"
    # False: a job of more than one core is planned onto nodes no other job shares, as
    # Dynamic Torque did (the simulator compares against it).
    pack_multicore: bool = True
    # A queued job waits for a busy node whose jobs all end within one boot instead of
    # launching a node for it (False: launch, for comparison in the simulator).
    lookahead: bool = True
    hints: HintTrust = HintTrust()
    idle_release: IdleRelease = IdleRelease()

    def pool(self, name: str) -> Pool | None:
        return self._pool_by_name.get(name)

    @cached_property
    def _pool_by_name(self) -> dict[str, Pool]:
        return {pool.name: pool for pool in self.pools}

    @cached_property
    def hint_cores(self) -> tuple[int, int, int]:
        """The hint budget in cores: per claimed user, per source address, in total."""
        node = max((flavor.cores for pool in self.pools for flavor in pool.flavors), default=1)
        per_user = self.hints.cores_per_user or node
        return (per_user, self.hints.cores_per_source or 2 * per_user,
                self.hints.cores_total or 8 * per_user)

    def idle_timeout_of(self, record: NodeRecord) -> timedelta:
        """How long `record` may sit idle before it is drained."""
        return self.hints.idle_timeout if record.prewarm else self.idle_timeout

    def idle_checks_of(self, record: NodeRecord) -> tuple[timedelta, ...]:
        """How long after going idle a rule may drain `record`: demand-following idle time
        at min_idle, doubling, then the timeout. Decisions fall due only at these, so the
        simulator can wake at them; the planner waits for one of them."""
        timeout = self.idle_timeout_of(record)
        if not self.idle_release.enabled or record.prewarm:
            return (timeout,)
        checks = []
        check = self.idle_release.min_idle
        while check < timeout:
            checks.append(check)
            check *= 2
        return (*checks, timeout)

    def pool_of_slot(self, hostname: str) -> Pool | None:
        return self._pool_by_slot.get(hostname)

    @cached_property
    def _pool_by_slot(self) -> dict[str, Pool]:
        return {slot: pool for pool in self.pools for slot in pool.slot_names}
