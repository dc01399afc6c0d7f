"""Replay a workload on the emulated cluster with the real reconciler, event by event.

The world is bootstrap's fake one (TorqueEmulator and FakeNova on one FakeClock); the
reconciler and planner are the production ones. The clock jumps from event to event and
never ticks: a stop is a job arrival, or a poll tick (every `poll_interval`, on a fixed
grid) at or after a TORQUE event (job end, node report, scheduler cycle while jobs
wait), a Nova event (boot or delete done) or the next time-based step the last plan dated
(Plan.next_due: idle checks, boot, down and launch timeouts, delete retry, pool backoff,
the scheduler-stall poke). A pass runs at a stop only if it could
decide something new: an arrival announced by the submit filter (`hook`), a change in
TORQUE (see _is_news) or Nova since the last pass read them, a timer that fell due, or a
record change of the last pass whose next step no outside change announces. Ticks at
which none of that happened are skipped: the plan is a pure function of what is observed
and the time, so they would change nothing (the tests replay traces both ways).
"""
from __future__ import annotations

import itertools
import logging
import math
import random
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Sequence

from dtserver.actions import (
    ClearNode, DeleteInstance, JoinNode, LaunchInstance, MarkDown, OfflineNode, PokeScheduler,
    RegisterSlot, ReleaseNode, Transition)
from dtserver.batch.torque import TorqueBatch
from dtserver.bootstrap import build_fake_world
from dtserver.clock import FakeClock
from dtserver.cloud import Cloud
from dtserver.cloud.nova import NovaCloud
from dtserver.fakes.incremental_nova import IncrementalNovaCloud
from dtserver.fakes.nova_resources import FakeServer
from dtserver.fakes.torque.batch import EmulatorBatch
from dtserver.fakes.torque.state import EmulatorError
from dtserver.fakes.world import DEMO_IMAGE
from dtserver.model import DtError, Flavor, Job, JobState, Node, NodeState
from dtserver.policy import IdleRelease, Policy, Pool
from dtserver.reconcile.loop import Reconciler, Report
from dtserver.sim.memstore import MemoryStore
from dtserver.sim.progress import SimProgress
from dtserver.sim.workload import QUEUE, SimJob
from dtserver.sim.world import InvariantWatch

log = logging.getLogger(__name__)

CLUSTER = "sim"
DEFAULT_START = datetime(2020, 1, 6, tzinfo=timezone.utc)
# The first pass registers the node slots; qsub refuses `-l nodes=` before they exist.
WARMUP = timedelta(seconds=60)
# How often a replay tells how far it got: cheap beside the passes between.
PROGRESS_STOPS = 500
# every_tick: the first tick strictly after now.
_STRICT = timedelta(milliseconds=1)
_RUNNING = (JobState.RUNNING, JobState.EXITING, JobState.COMPLETED)
_ANNOUNCED = (LaunchInstance, JoinNode, RegisterSlot, ReleaseNode, OfflineNode, ClearNode,
              DeleteInstance, PokeScheduler, MarkDown)
# Transitions that come with an announced action, or whose next step waits on a timer.
# Not IDLE: demand-following idle time weighs each idle node against the newer ones, so
# a node turning idle may change what is due for the others at once.
_NOTED_STATES = frozenset({NodeState.BOOTING, NodeState.REGISTERED, NodeState.BUSY,
                           NodeState.OFFLINE})


class SimulationError(DtError):
    """The simulation cannot be set up as asked."""


@dataclass(frozen=True)
class BootDelay:
    """Seconds from servers.create to a reporting pbs_mom: fixed, or drawn per instance
    from `uniform` (low, high) or `normal` (mean, sd; cut at zero)."""

    kind: str = "fixed"
    a: float = 120.0
    b: float = 0.0

    @classmethod
    def parse(cls, text: str) -> BootDelay:
        """`120`, `uniform:60:180` or `normal:120:30`."""
        kind, *numbers = text.split(":")
        try:
            if not numbers:
                return cls("fixed", _non_negative(float(kind)))
            values = [_non_negative(float(number)) for number in numbers]
        except ValueError as error:
            raise SimulationError(f"bad boot delay {text!r}: {error}") from error
        if kind == "uniform" and len(values) == 2 and values[0] <= values[1]:
            return cls(kind, *values)
        if kind == "normal" and len(values) == 2:
            return cls(kind, *values)
        raise SimulationError(f"bad boot delay {text!r}: use SECONDS, uniform:LOW:HIGH "
                              "or normal:MEAN:SD")

    @property
    def mean(self) -> float:
        return (self.a + self.b) / 2 if self.kind == "uniform" else self.a

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        if self.kind == "uniform":
            return lambda: rng.uniform(self.a, self.b)
        if self.kind == "normal":
            return lambda: max(0.0, rng.gauss(self.a, self.b))
        return lambda: self.a

    def __str__(self) -> str:
        return f"{self.a:g}" if self.kind == "fixed" else f"{self.kind}:{self.a:g}:{self.b:g}"


@dataclass(frozen=True)
class SimSettings:
    """One engine configuration to replay a trace against."""

    flavors: tuple[Flavor, ...]
    name: str = "dynamictorque"
    boot_delay: BootDelay = BootDelay()
    max_nodes: int = 0                # node slots; 0: replay() sizes them from the trace
    max_cores: int | None = None
    max_booting: int | None = None
    idle_timeout: float = 600.0
    early_idle_release: bool = True   # demand-following idle time (policy.IdleRelease)
    boot_timeout: float = 1200.0
    down_timeout: float = 480.0
    poll_interval: float = 10.0
    hook: bool = True                 # arrivals wake the reconciler (the submit filter)
    pack_multicore: bool = True
    lookahead: bool = True            # wait for nodes whose jobs end within a boot
    scheduler_iteration: float = 600.0
    check_invariants: bool = False    # docs/design.md's invariants on the world after every pass
    faithful: bool = False            # TorqueBatch (qstat/pbsnodes XML) instead of direct
    every_tick: bool = False          # a pass at every tick: slow; shows skipping is exact
    seed: int = 1
    # Give up when jobs wait and none started or ended for this long.
    stall_limit: float = 7 * 86400.0

    def policy(self) -> Policy:
        pool = Pool("sim", self.flavors, DEMO_IMAGE, max_nodes=self.max_nodes,
                    name_prefix="sim-")
        return Policy(pools=(pool,), max_cores=self.max_cores, max_booting=self.max_booting,
                      idle_timeout=timedelta(seconds=self.idle_timeout),
                      boot_timeout=timedelta(seconds=self.boot_timeout),
                      down_timeout=timedelta(seconds=self.down_timeout),
                      hint_ttl=timedelta(seconds=2 * self.poll_interval),
                      pack_multicore=self.pack_multicore, lookahead=self.lookahead,
                      idle_release=IdleRelease(enabled=self.early_idle_release))


@dataclass(frozen=True)
class JobRun:
    """What happened to one job; times in seconds after the first arrival."""

    job: SimJob
    start: float | None
    end: float | None
    hosts: tuple[str, ...] = ()
    rejected: str | None = None       # qsub refused it


@dataclass(frozen=True)
class InstanceLife:
    hostname: str
    flavor: str
    cores: int
    launched: float
    ready: float | None               # the reconciler saw its mom report
    deleted: float | None             # delete accepted (billing stops)


@dataclass(frozen=True)
class SimResult:
    settings: SimSettings
    jobs: tuple[JobRun, ...]
    instances: tuple[InstanceLife, ...]
    end: float                        # simulated seconds after the first arrival
    finished: bool                    # every job ran and the cluster drained to nothing
    passes: int
    stops: int
    wall_seconds: float
    invariant_checks: int = 0


@dataclass
class _Life:
    hostname: str
    flavor: str
    cores: int
    launched: float
    ready: float | None = None

    def closed(self, deleted: float | None) -> InstanceLife:
        return InstanceLife(self.hostname, self.flavor, self.cores, self.launched,
                            self.ready, deleted)


@dataclass
class _Tracking:
    start: dict[int, float] = field(default_factory=dict)
    end: dict[int, float] = field(default_factory=dict)
    hosts: dict[int, tuple[str, ...]] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)


class Simulation:
    def __init__(self, jobs: Sequence[SimJob], settings: SimSettings, *,
                 start: datetime = DEFAULT_START,
                 progress: Callable[[SimProgress], None] | None = None) -> None:
        """`progress` hears how far the replay got every PROGRESS_STOPS stops and at
        its end."""
        if settings.poll_interval <= 0:
            raise SimulationError("poll_interval must be positive")
        if settings.max_nodes < 1:
            raise SimulationError("max_nodes must be at least 1 (replay() sizes it from a trace)")
        self.jobs = sorted(jobs, key=lambda job: (job.arrival, job.key))
        self.settings = settings
        self.policy = settings.policy()
        self.clock = FakeClock(start)
        self.origin = start + WARMUP
        self.world = build_fake_world(self.clock, flavors=settings.flavors,
                                      boot_delay=settings.boot_delay.sampler(
                                          random.Random(settings.seed)),
                                      scheduler_iteration=settings.scheduler_iteration)
        self.store = MemoryStore()
        # The observer reads what TORQUE shows; the reconciler uses it too unless faithful.
        self.observer = EmulatorBatch(self.world.emulator, runner=self.world.runner())
        batch = TorqueBatch(self.observer.runner) if settings.faithful else self.observer
        installation = self.store.installation_id()
        cloud: Cloud = (NovaCloud(self.world.nova, cluster_id=CLUSTER,
                                  installation=installation, clock=self.clock)
                        if settings.faithful
                        else IncrementalNovaCloud(self.world.nova, cluster_id=CLUSTER,
                                                  installation=installation))
        ids = itertools.count()
        self.reconciler = Reconciler(batch=batch, cloud=cloud, store=self.store,
                                     clock=self.clock, policy=self.policy, torque_server="vm",
                                     new_id=lambda: f"r{next(ids)}")
        self.world.nova.on_delete.append(self._instance_deleted)
        self.watch = (InvariantWatch(self.world, self.store, self.policy, CLUSTER)
                      if settings.check_invariants else None)
        self.grid = timedelta(seconds=settings.poll_interval)
        self.tracking = _Tracking()
        self.key_of: dict[str, int] = {}
        self.alive: dict[str, _Life] = {}
        self.closed: list[InstanceLife] = []
        self.host_of_record: dict[str, str] = {}
        self.passes = 0
        self.stops = 0
        self._next_job = 0
        self._seen: dict[str, Job] = {}
        self._pass_queued: tuple[Job, ...] = ()
        self._pass_nodes: tuple[Node, ...] = ()
        self._latest: tuple[tuple[Job, ...], tuple[Node, ...]] = ((), ())
        self._latest_jobs: tuple[Job, ...] | None = None
        self._pass_queued_ids: set[str] = set()
        self._nova_due: datetime | None = None
        self._plan_due: datetime | None = None
        self._follow_up: datetime | None = None
        self._wanted: datetime | None = None
        self._progress = start
        self._on_progress = progress or (lambda _: None)

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> SimResult:
        started = time.perf_counter()
        self._pass()
        finished = False
        while True:
            if self._next_job >= len(self.jobs) and self._is_drained():
                finished = True
                break
            stop = self._next_stop()
            arrival = (self._arrival(self.jobs[self._next_job])
                       if self._next_job < len(self.jobs) else None)
            # Jobs that run long are no stall; jobs that wait and never start are.
            waiting = self._next_job - len(self.tracking.start) - len(self.tracking.rejected)
            stalled = stop is not None and stop != arrival and waiting > 0 and \
                (stop - self._progress).total_seconds() > self.settings.stall_limit
            if stop is None or stalled:
                log.warning("simulation stalled at=%s jobs_left=%d", stop,
                            len(self.jobs) - len(self.tracking.end))
                break
            self.clock.advance(stop - self.clock.now())
            self.stops += 1
            if not self.stops % PROGRESS_STOPS:
                self._report_progress()
            arrived = self._submit_arrivals()
            self.world.nova.tick()
            changed = self._observe()
            if self._is_pass_due(arrived, changed):
                self._pass()
            elif changed or arrived:
                # Every arrival reaches a pass: demand-following idle time predicts from them.
                self._wanted = self._tick_at_or_after(self.clock.now())
        self._report_progress()
        end = self._seconds(self.clock.now())
        instances = self.closed + [life.closed(None) for life in self.alive.values()]
        return SimResult(
            settings=self.settings, jobs=tuple(self._runs()),
            instances=tuple(sorted(instances, key=lambda life: (life.launched, life.hostname))),
            end=end, finished=finished, passes=self.passes, stops=self.stops,
            wall_seconds=time.perf_counter() - started,
            invariant_checks=self.watch.checks if self.watch else 0)

    def _report_progress(self) -> None:
        self._on_progress(SimProgress(len(self.tracking.end),
                                      self._seconds(self.clock.now()), self.passes))

    def _next_stop(self) -> datetime | None:
        candidates = [when for when in (self._follow_up, self._wanted) if when is not None]
        if self._next_job < len(self.jobs):
            candidates.append(self._arrival(self.jobs[self._next_job]))
        torque = self.observer.next_news_time(cycles=bool(self._latest[0]))
        for event in (torque, self.world.nova.next_event_at()):
            if event is not None:
                candidates.append(self._tick_at_or_after(event))
        if self._plan_due is not None:
            candidates.append(self._plan_due)
        if self.settings.every_tick:
            candidates.append(self._tick_at_or_after(self.clock.now() + _STRICT))
        return min(candidates, default=None)

    def _is_pass_due(self, arrived: bool, changed: bool) -> bool:
        now = self.clock.now()
        if arrived and self.settings.hook:
            return True
        if now != self._tick_at_or_after(now):
            return False    # between poll ticks: only the submit filter wakes the reconciler
        return (changed or self.settings.every_tick
                or (self._nova_due is not None and self._nova_due <= now)
                or (self._follow_up is not None and self._follow_up <= now)
                or (self._wanted is not None and self._wanted <= now)
                or (self._plan_due is not None and self._plan_due <= now))

    def _pass(self) -> None:
        self._observe()
        seen = self._latest            # what the reconciler is about to read
        report = self.reconciler.run_once()
        self.passes += 1
        now = report.time
        self._read_report(report)
        if self.watch is not None:
            self.watch.check()
        self._pass_queued, self._pass_nodes = seen
        self._pass_queued_ids = {job.id for job in seen[0]}
        # What the pass itself changed in TORQUE (a poke starts jobs, a join re-creates a
        # node) is news for the next tick, as it would be for a polling reconciler.
        news = self._observe()
        self._nova_due = self.world.nova.next_event_at()
        tick = now + self.grid - (now - self.origin) % self.grid
        self._wanted = tick if news else None
        self._follow_up = tick if _needs_follow_up(report.plan.actions) else None
        # The plan dates its own next time-based step; records change only in passes, so
        # the date holds until the next one.
        due = report.plan.next_due
        self._plan_due = self._tick_at_or_after(due) if due is not None else None

    # -- arrivals ----------------------------------------------------------------------------
    def _arrival(self, job: SimJob) -> datetime:
        return self.origin + timedelta(seconds=job.arrival)

    def _submit_arrivals(self) -> bool:
        now = self.clock.now()
        arrived = False
        while self._next_job < len(self.jobs) and self._arrival(self.jobs[self._next_job]) <= now:
            job = self.jobs[self._next_job]
            self._next_job += 1
            arrived = True
            self._progress = now
            try:
                job_id = self.world.emulator.submit(
                    owner=job.owner, queue=QUEUE, resources=job.resources,
                    name=f"j{job.number}", runtime=job.runtime)
            except EmulatorError as error:
                self.tracking.rejected[job.key] = error.stderr.strip() or str(error)
                self.tracking.end[job.key] = self._seconds(now)
                continue
            self.key_of[job_id] = job.key
        return arrived

    # -- what TORQUE shows -------------------------------------------------------------------
    def _observe(self) -> bool:
        """Record job starts and ends; True when TORQUE shows something since the last
        pass that could change a plan (see _is_news)."""
        jobs = self.observer.jobs()
        nodes = self.observer.nodes()
        if jobs is self._latest_jobs and nodes is self._latest[1]:
            return self._is_news(*self._latest)
        self._latest_jobs = jobs
        seen = self._seen
        tracking = self.tracking
        for job in jobs:
            if seen.get(job.id) is job or job.state not in _RUNNING:
                continue
            key = self.key_of.get(job.id)
            if key is None or key in tracking.end:
                continue
            times = self.observer.run_times(job.id)
            if times is None:
                continue
            started, ended, hosts = times
            if key not in tracking.start:
                tracking.start[key] = self._seconds(started)
                tracking.hosts[key] = hosts
                self._progress = self.clock.now()
            if ended is not None:
                tracking.end[key] = self._seconds(ended)
                self._progress = self.clock.now()
        self._seen = {job.id: job for job in jobs}
        queued = tuple(job for job in jobs if job.state is JobState.QUEUED)
        self._latest = (queued, nodes)
        return self._is_news(queued, nodes)

    def _is_news(self, queued: tuple[Job, ...], nodes: tuple[Node, ...]) -> bool:
        """A job queued that the last pass did not see or that left the queue since, or a
        node whose state, readiness, note or emptiness changed (its free cores too while
        jobs wait: the packer counts them). A job that starts or ends beside others while
        nothing waits changes no plan: scale-down and the lifecycle read only whether a
        node is empty. tests/sim (skipping quiet ticks changes nothing) holds this against
        a pass at every tick."""
        if queued is not self._pass_queued:
            # A job queued anew, or one that left the queue: its claim on a node the
            # packer counted (an idle node kept for it) is gone.
            if len(queued) != len(self._pass_queued_ids) or any(
                    job.id not in self._pass_queued_ids for job in queued):
                return True
        before = self._pass_nodes
        if nodes is before:
            return False
        if len(nodes) != len(before):
            return True
        waiting = bool(queued)
        for new, old in zip(nodes, before):
            if new is old:
                continue
            if (new.name != old.name or new.is_down != old.is_down
                    or new.is_offline != old.is_offline or new.is_ready != old.is_ready
                    or new.note != old.note or new.np != old.np
                    or bool(new.jobs) != bool(old.jobs)
                    or (waiting and new.used_cores != old.used_cores)):
                return True
        return False

    # -- what the reconciler did -------------------------------------------------------------
    def _read_report(self, report: Report) -> None:
        now = self._seconds(report.time)
        for action, outcome in zip(report.plan.actions, report.outcomes):
            if not outcome.ok:
                continue
            if isinstance(action, LaunchInstance):
                self.alive[action.hostname] = _Life(action.hostname, action.flavor,
                                                    action.cores, now)
            elif isinstance(action, JoinNode):
                self.host_of_record[action.record_id] = action.hostname
            elif isinstance(action, Transition) and action.state in (NodeState.IDLE,
                                                                     NodeState.BUSY):
                life = self.alive.get(self.host_of_record.get(action.record_id, ""))
                if life is not None and life.ready is None:
                    life.ready = now

    def _instance_deleted(self, server: FakeServer) -> None:
        life = self.alive.pop(server.name, None)
        if life is not None:
            self.closed.append(life.closed(self._seconds(self.clock.now())))

    # -- helpers -----------------------------------------------------------------------------
    def _tick_at_or_after(self, moment: datetime) -> datetime:
        offset = (moment - self.origin) % self.grid
        return moment if not offset else moment + self.grid - offset

    def _seconds(self, moment: datetime) -> float:
        return (moment - self.origin).total_seconds()

    def _is_drained(self) -> bool:
        return len(self.tracking.end) >= len(self.jobs) and not self.store.records() \
            and not self.alive

    def _runs(self) -> list[JobRun]:
        tracking = self.tracking
        return [JobRun(job, tracking.start.get(job.key), tracking.end.get(job.key),
                       tracking.hosts.get(job.key, ()), tracking.rejected.get(job.key))
                for job in self.jobs]


def simulate(jobs: Sequence[SimJob], settings: SimSettings, *,
             start: datetime = DEFAULT_START,
             progress: Callable[[SimProgress], None] | None = None) -> SimResult:
    return Simulation(jobs, settings, start=start, progress=progress).run()


def dynamic_torque_settings(settings: SimSettings, *, flavor: Flavor | None = None
                            ) -> SimSettings:
    """The old Dynamic Torque as settings of the same engine: polling every 10 s with no
    submit filter, one flavor (the largest unless given), at most 5 instances booting,
    600 s idle timeout for every node, multi-core jobs on nodes of their own, and no
    waiting for nodes about to free."""
    chosen = flavor or max(settings.flavors, key=lambda item: item.cores)
    return replace(settings, name="old-dynamic-torque", flavors=(chosen,), poll_interval=10.0,
                   hook=False, max_booting=5, idle_timeout=600.0, early_idle_release=False,
                   pack_multicore=False, lookahead=False)


def _needs_follow_up(actions: Sequence[object]) -> bool:
    """Whether the next tick must bring a pass although nothing may change outside: after
    actions whose effect shows in TORQUE or Nova (or arms a timer), the change itself
    brings it; after a bare record change (failed, deleting, deleted, unknown) or an
    intent, hint or flag, only the next tick does."""
    return any(not isinstance(action, _ANNOUNCED)
               and not (isinstance(action, Transition) and action.state in _NOTED_STATES)
               for action in actions)


def _non_negative(value: float) -> float:
    if value < 0 or math.isnan(value) or math.isinf(value):
        raise ValueError(f"{value} is not a non-negative number")
    return value
