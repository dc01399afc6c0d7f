"""The reconciler's loop: observe -> plan -> check -> apply -> record, one pass at a time.

Every external call is preceded by the record that describes it, so a crash at any point
leaves enough in the store (and in Nova's metadata) for the next pass to finish or undo the
step. Observing only reads; what a pass changes it changes after planning, in apply, or
in the one clean-up step of run_once (hints that do not parse). Only one process may run
this loop on a cluster (dtserver/reconcile/lock.py).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Callable, Iterable, Sequence, assert_never

from dtserver import planning
from dtserver.actions import (
    Action, AdoptInstance, ClearNode, CompleteIntent, DeleteInstance, ExpireHint, JoinNode,
    LaunchInstance, MarkDown, MarkEntryReady, OfflineNode, Plan, PokeScheduler, RegisterSlot,
    ReleaseNode, ResetPool, SetSleeping, Transition)
from dtserver.batch import Batch, BatchError, BatchUnavailable
from dtserver.clock import Clock
from dtserver.cloud import Cloud, CloudError
from dtserver.history import DemandHistory
from dtserver.model import (
    DrainKind, DtError, ErrorKind, Instance, InstanceSpec, Job, JobState, Node, NodeEvent,
    NodeRecord, NodeState, PoolHealth, Quota, Snapshot)
from dtserver.planning.invariants import check_plan
from dtserver.planning.repair import SLOT_NOTE, next_health
from dtserver.policy import Policy
from dtserver.reconcile.catalogue import pool_catalogue
from dtserver.reconcile.cloud_view import CloudView, LockedCloud
from dtserver.reconcile.hints import HintReader
from dtserver.reconcile.userdata import render_user_data
from dtserver.redact import printable
from dtserver.store import KEEP, EventKind, Keep, PassReport, Store
from dtserver.wakeup import Wakeup

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    action: str
    ok: bool
    message: str = ""
    deferred: bool = False     # not tried: left for the next pass, which plans it again


@dataclass(frozen=True)
class Report:
    time: datetime
    plan: Plan
    outcomes: tuple[Outcome, ...]


# pbs_server sleeps 2 s in every `qmgr delete node` (effective_node_delete), so joining or
# releasing a node takes that long. With background workers these steps, and the steps of
# the same node after them in the plan, run off the pass: launches for new demand never wait
# behind them, and several nodes join at once.
SLOW_STEPS = (JoinNode, ReleaseNode)
# The steps that call TORQUE. Once one finds it unavailable, the others of that pass are
# deferred: each would wait out its own command timeout (20 steps, 30 s: 10 minutes).
TORQUE_STEPS = (RegisterSlot, JoinNode, OfflineNode, ClearNode, ReleaseNode, PokeScheduler)
DEFERRED_TORQUE = "deferred: TORQUE unavailable"
# After these, the process state cannot be trusted: the loop ends and the service exits
# non-zero, so systemd restarts it (Restart=on-failure).
FATAL_ERRORS = (MemoryError, SystemError)
_PASS_ERROR_CHARS = 500                     # of a failed pass's error, kept for /status


class Reconciler:
    def __init__(self, *, batch: Batch, cloud: Cloud, store: Store, clock: Clock,
                 policy: Policy, torque_server: str = "localhost",
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
                 on_event: Callable[[NodeEvent], None] = lambda event: None,
                 background_workers: int = 0) -> None:
        """`background_workers` > 0 runs SLOW_STEPS off the pass (the service does); 0 keeps
        every step inside run_once (tests, the simulator)."""
        self.batch = batch
        self.cloud: Cloud = LockedCloud(cloud) if background_workers else cloud
        self.store = store
        self.clock = clock
        self.policy = policy
        self.torque_server = torque_server
        self.new_id = new_id
        self.on_event = on_event   # operator event commands; must not block
        self._published_policy: Policy | None = None
        self._workers = (ThreadPoolExecutor(background_workers, thread_name_prefix="steps")
                         if background_workers else None)
        self._in_flight: set[str] = set()          # record ids with background steps running
        self._in_flight_lock = threading.Lock()
        self.on_background_done: Callable[[], None] = lambda: None
        self._pass_errors = 0                      # passes that raised, since start
        self._cloud_view: CloudView | None = None
        self._hints = HintReader(store)
        self._history = DemandHistory(clock.now())
        self._recorded_plan: Plan | None = None

    # -- observe -------------------------------------------------------------------------
    def observe(self, *, cloud_view_age: float = 0.0) -> Snapshot:
        """One read of TORQUE, Nova and the store. What cannot be read is None (unknown).
        The cloud is read again unless the last read (with our creates since) is younger
        than `cloud_view_age` seconds. Writes nothing: what a pass changes, it changes after observing
        (run_once), so the snapshot is one consistent read."""
        jobs: tuple[Job, ...] | None
        nodes: tuple[Node, ...] | None
        instances: tuple[Instance, ...] | None
        quotas: dict[str, Quota] = {}
        # The slow read (the cloud) first, the hints last: a hint that arrives while this
        # pass observes is planned by it rather than by the next one.
        view = self._cloud_view
        if view is None or time.monotonic() - view.read_at >= cloud_view_age:
            self._cloud_view = view = None
            try:
                instances = self.cloud.owned_instances()
                read_at = time.monotonic()
                view = self._cloud_view = CloudView(instances, self.cloud.quota(), read_at)
            except CloudError as error:
                log.warning("cloud unreadable kind=%s error=%s", error.kind, error)
        if view is not None:
            instances = view.instances
            # One cloud connection, one project: every pool draws on the same quota.
            quotas = {pool.project: view.quota for pool in self.policy.pools}
        else:
            instances = None
        try:
            nodes = self.batch.nodes()
            jobs = tuple(self.batch.jobs())
        except BatchUnavailable as error:
            log.warning("torque unreadable error=%s", error)
            jobs, nodes = None, None
        records = self.store.records()
        now = self.clock.now()
        rules = self.policy.idle_release
        recent = self._history.observe(jobs, records, now,
                                       keep=rules.window + self.policy.idle_timeout)
        return Snapshot(jobs=jobs, nodes=nodes, instances=instances,
                        records=records, hints=self._hints.read(), recent=recent,
                        intents=self.store.intents(pending_only=True),
                        pool_health=self.store.pool_health(), quotas=quotas,
                        sleeping=self.store.is_sleeping(),
                        hint_strikes=self.store.hint_strikes(now - self.policy.hints.penalty))

    # -- one pass ------------------------------------------------------------------------
    def run_once(self, *, dry_run: bool = False,
                 interrupted: Callable[[], bool] | None = None,
                 cloud_view_age: float = 0.0) -> Report:
        """One pass. `interrupted` is asked between the nodes' steps once the launches are
        out: when new demand is waiting, the rest of the plan is left for the next pass,
        which plans it again (every step is derived from what it observes).
        `cloud_view_age`: see observe()."""
        started = time.monotonic()
        now = self.clock.now()
        self.publish_catalogue(now)
        snapshot = self.observe(cloud_view_age=cloud_view_age)
        # A hint that does not parse is in no snapshot, so no plan would ever expire it.
        self._hints.delete_rejected()
        proposed = planning.plan(snapshot, self.policy, now)
        check_plan(snapshot, self.policy, proposed)   # a planner bug must not reach the cloud
        self._record_plan(now, proposed)
        if dry_run:
            return Report(now, proposed, ())
        outcomes = tuple(self._apply_all(proposed.actions, now, interrupted))
        failed = [outcome for outcome in outcomes if not outcome.ok and not outcome.deferred]
        self.store.save_pass(PassReport(
            time=now, duration_seconds=time.monotonic() - started,
            ok=snapshot.nodes is not None and snapshot.instances is not None,
            summary={"actions": len(outcomes), "failed": len(failed),
                     "deferred": sum(1 for outcome in outcomes if outcome.deferred),
                     "pass_errors": self._pass_errors,
                     "torque": snapshot.nodes is not None,
                     "cloud": snapshot.instances is not None,
                     "queued": sum(1 for job in snapshot.jobs or ()
                                   if job.state is JobState.QUEUED)}))
        return Report(now, proposed, outcomes)

    def _record_plan(self, now: datetime, proposed: Plan) -> None:
        """Write the plan for the API, or only its time when what it shows is unchanged:
        a deep queue's plan is megabytes of verdicts that a quiet pass repeats."""
        last = self._recorded_plan
        if last is not None and (last.actions, last.verdicts, last.notes) == (
                proposed.actions, proposed.verdicts, proposed.notes):
            self.store.touch_plan(now)
            return
        self.store.save_plan(now, proposed)
        self._recorded_plan = proposed

    def publish_catalogue(self, now: datetime) -> None:
        """Write the pool catalogue at the first pass and whenever the policy is replaced;
        a failed write is retried at the next pass."""
        if self.policy is self._published_policy:
            return
        catalogue = pool_catalogue(self.policy)
        self.store.save_pool_catalogue(now, catalogue)
        self._published_policy = self.policy
        log.info("pool catalogue published pools=%s queues=%s",
                 ",".join(pool.name for pool in catalogue.pools),
                 ",".join(sorted(catalogue.queues)) or "all")

    def _apply_all(self, actions: Sequence[Action], now: datetime,
                   interrupted: Callable[[], bool] | None = None) -> Iterable[Outcome]:
        """Apply in order; a failed step of a record skips that record's later steps. Never
        stops inside one record's steps, nor among the launches. With background workers, a
        slow step and the later steps of its record go to a worker; a record whose steps are
        still in flight from an earlier pass is left alone. Once a step finds TORQUE
        unavailable, here or in a worker, the pass's other TORQUE steps and the later steps
        of their records are deferred; cloud and store steps still run."""
        broken: set[str] = set()
        deferred: set[str] = set()
        handed_off: set[str] = set()
        torque_down = threading.Event()       # shared with this pass's background steps
        previous: str | None = None
        for index, action in enumerate(actions):
            record_id = getattr(action, "record_id", None)
            name = type(action).__name__
            if (interrupted is not None and not isinstance(action, LaunchInstance)
                    and (record_id is None or record_id != previous) and interrupted()):
                log.info("pass cut short: woken; %d actions left for the next pass",
                         len(actions) - index)
                for rest in actions[index:]:
                    yield Outcome(type(rest).__name__, True, "deferred: woken by news",
                                  deferred=True)
                return
            previous = record_id
            if record_id is not None and record_id in handed_off:
                yield Outcome(name, True, "in the background")
                continue
            if record_id is not None and self._is_in_flight(record_id):
                yield Outcome(name, True, "skipped: this node's earlier steps are in flight")
                continue
            if record_id is not None and record_id in broken:
                yield Outcome(name, False, "skipped: an earlier step for this node failed")
                continue
            if record_id is not None and record_id in deferred:
                yield Outcome(name, False, DEFERRED_TORQUE, deferred=True)
                continue
            if self._workers is not None and record_id is not None \
                    and isinstance(action, SLOW_STEPS) and not torque_down.is_set():
                steps = [step for step in actions[index:]
                         if getattr(step, "record_id", None) == record_id]
                with self._in_flight_lock:
                    self._in_flight.add(record_id)
                handed_off.add(record_id)
                self._workers.submit(self._apply_in_background, record_id, steps, now,
                                     torque_down)
                yield Outcome(name, True, "in the background")
                continue
            outcome = self._apply_one(action, now, torque_down)
            if record_id is not None and outcome.deferred:
                deferred.add(record_id)
            elif record_id is not None and not outcome.ok:
                broken.add(record_id)
            yield outcome

    def _apply_one(self, action: Action, now: datetime,
                   torque_down: threading.Event | None = None) -> Outcome:
        """One step. With `torque_down` (the pass's flag), a TORQUE step is deferred once
        the flag is set, and a step that finds TORQUE unavailable sets it."""
        name = type(action).__name__
        if torque_down is not None and torque_down.is_set() \
                and isinstance(action, TORQUE_STEPS):
            return Outcome(name, False, DEFERRED_TORQUE, deferred=True)
        try:
            message = self.apply(action, now)
        except (BatchError, CloudError) as error:
            if torque_down is not None and isinstance(error, BatchUnavailable):
                torque_down.set()
                log.warning("torque unavailable: its other steps wait for the next pass")
            log.warning("action failed action=%s error=%s", action, error)
            self.store.add_event(
                now, EventKind.FAILURE, f"{name}: {error}",
                hostname=getattr(action, "hostname", None),
                pool=getattr(action, "pool", None),
                error_kind=error.kind if isinstance(error, CloudError) else ErrorKind.OTHER)
            return Outcome(name, False, str(error))
        return Outcome(name, True, message)

    def _apply_in_background(self, record_id: str, steps: list[Action], now: datetime,
                             torque_down: threading.Event | None = None) -> None:
        try:
            for step in steps:
                if not self._apply_one(step, now, torque_down).ok:
                    break
        except Exception:                     # noqa: BLE001 - a worker must not die silently
            log.exception("background steps failed record=%s", record_id)
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(record_id)
            self.on_background_done()

    def _is_in_flight(self, record_id: str) -> bool:
        with self._in_flight_lock:
            return record_id in self._in_flight

    def wait_for_background(self) -> None:
        """Let the steps in flight finish (they are bounded by the command timeouts)."""
        if self._workers is not None:
            self._workers.shutdown(wait=True)

    # -- apply one action ----------------------------------------------------------------
    def apply(self, action: Action, now: datetime) -> str:
        match action:
            case RegisterSlot():
                self.batch.register_slot(action.hostname, action.np, action.properties,
                                         SLOT_NOTE)
                return f"slot {action.hostname} registered"
            case LaunchInstance():
                return self._launch(action, now)
            case AdoptInstance():
                self.store.update_record(action.record_id, instance_id=action.instance_id,
                                         state=NodeState.BOOTING, state_since=now,
                                         reason=action.reason)
                return "adopted"
            case JoinNode():
                record = self.store.record(action.record_id)
                if record.state is NodeState.BOOTING:
                    self._notify("post_vm_provision", record, address=action.address)
                self.batch.join_node(action.hostname, action.address, action.np,
                                     action.properties)
                record = self._set_state(action.record_id, NodeState.REGISTERED,
                                         action.reason, now, address=action.address)
                self._event(now, EventKind.JOIN, f"{action.hostname} joined at {action.address}",
                            action.record_id)
                self._notify("post_add_node", record)
                return "joined"
            case MarkEntryReady():
                self.cloud.mark_entry_ready(action.instance_id)
                self._event(now, EventKind.ENTRY, f"{action.hostname}: node entry ready, the "
                                                  "instance may start pbs_mom", action.record_id)
                return "instance told"
            case PokeScheduler():
                self.batch.poke_scheduler()
                return "scheduler poked"
            case Transition():
                return self._transition(action, now)
            case MarkDown():
                self.store.update_record(action.record_id, down_since=action.since)
                return "down timer " + ("started" if action.since else "stopped")
            case OfflineNode():
                self.store.update_record(action.record_id, drain=action.drain)
                self.batch.offline_node(action.hostname,
                                        f"{self.policy.drain_note_prefix} draining: "
                                        f"{action.reason}")
                self._event(now, EventKind.DRAIN, f"{action.hostname} offline: {action.reason}",
                            action.record_id)
                return "offline"
            case ClearNode():
                self.batch.clear_node(action.hostname)
                self.store.update_record(action.record_id, drain=None)
                self._event(now, EventKind.CLEAR, f"{action.hostname} back online: {action.reason}",
                            action.record_id)
                return "cleared"
            case ReleaseNode():
                self.batch.release_node(action.hostname, action.np, action.properties,
                                        SLOT_NOTE)
                self._notify("post_remove_node", self.store.record(action.record_id),
                             reason=action.reason)
                return "released"
            case DeleteInstance():
                self.cloud.delete_instance(action.instance_id)
                if action.record_id is not None:
                    self.store.update_record(action.record_id, state_since=now)
                self.store.add_event(now, EventKind.DELETE,
                                     f"instance {action.instance_id} deleted: {action.reason}")
                return "delete sent"
            case ExpireHint():
                self.store.delete_hints([action.hint_id])
                if action.strike_user is not None:
                    self.store.add_hint_strike(action.strike_user, action.strike_source, now,
                                               forget_before=now - self.policy.hints.penalty)
                return action.reason
            case CompleteIntent():
                self.store.complete_intent(action.intent_id, action.status, action.message, now)
                self.store.add_event(now, EventKind.INTENT, f"intent {action.intent_id} "
                                     f"{action.status.value}: {action.message}")
                return action.message
            case SetSleeping():
                self.store.set_sleeping(action.sleeping, now)
                return "sleeping" if action.sleeping else "awake"
            case ResetPool():
                self.store.save_pool_health(PoolHealth(action.pool))
                return f"pool {action.pool} reset"
        assert_never(action)

    def _launch(self, action: LaunchInstance, now: datetime) -> str:
        pool = self.policy.pool(action.pool)
        record = NodeRecord(id=self.new_id(), hostname=action.hostname, pool=action.pool,
                            flavor=action.flavor, cores=action.cores,
                            state=NodeState.LAUNCHING, created=now, state_since=now,
                            reason=action.reason, prewarm=action.prewarm)
        self.store.insert_record(record)   # before the call: a crash is found by record id
        spec = InstanceSpec(name=action.hostname, pool=action.pool, record_id=record.id,
                            flavor=action.flavor, image=pool.image, zone=pool.zone,
                            key_name=pool.key_name, security_groups=pool.security_groups,
                            network=pool.network,
                            user_data=render_user_data(pool, action.hostname,
                                                       self.torque_server))
        try:
            instance = self.cloud.create_instance(spec)
        except CloudError as error:
            if error.kind is not ErrorKind.TRANSIENT:
                # Refused outright: nothing exists to find later.
                self.store.update_record(record.id, state=NodeState.DELETED, state_since=now,
                                         reason=f"create refused: {error}")
            self._pool_failed(action.pool, error.kind, str(error), now)
            if error.kind is ErrorKind.CAPACITY:
                self._notify("capacity_error", record, reason=str(error))
            raise
        if self._cloud_view is not None:
            flavor = next((item for item in pool.flavors if item.name == action.flavor), None)
            self._cloud_view = self._cloud_view.with_created(instance, flavor)
        self.store.update_record(record.id, instance_id=instance.id, state=NodeState.BOOTING,
                                 state_since=now)
        self._event(now, EventKind.LAUNCH, f"{action.hostname} launching ({action.flavor}): "
                                           f"{action.reason}", record.id, pool=action.pool)
        return f"instance {instance.id}"

    def _transition(self, action: Transition, now: datetime) -> str:
        before = self.store.record(action.record_id)
        settled = action.state in (NodeState.IDLE, NodeState.BUSY)
        # A job came: an ordinary node from now on.
        self._set_state(action.record_id, action.state, action.reason, now,
                        drain=None if settled else KEEP,
                        prewarm=False if action.state is NodeState.BUSY else KEEP)
        if action.failure is not None:
            self._pool_failed(before.pool, action.failure, action.reason, now)
            self._event(now, EventKind.FAILURE, f"{before.hostname}: {action.reason}", before.id,
                        error_kind=action.failure)
            self._notify("capacity_error" if action.failure is ErrorKind.CAPACITY
                         else "boot_failed", before, reason=action.reason)
        elif before.state is NodeState.REGISTERED and action.state in (NodeState.IDLE,
                                                                        NodeState.BUSY):
            self._pool_recovered(before.pool)
            self._event(now, EventKind.READY, f"{before.hostname} ready after "
                        f"{int((now - before.created).total_seconds())} s", before.id)
        elif action.state is NodeState.DELETED:
            self._event(now, EventKind.DELETED, f"{before.hostname}: {action.reason}", before.id)
            if before.instance_id:
                self._notify("post_vm_destroy", before, reason=action.reason)
        return f"{before.state.value} -> {action.state.value}"

    def _set_state(self, record_id: str, state: NodeState, reason: str, now: datetime, *,
                   address: str | Keep = KEEP, drain: DrainKind | None | Keep = KEEP,
                   prewarm: bool | Keep = KEEP) -> NodeRecord:
        return self.store.update_record(record_id, state=state, state_since=now,
                                        reason=reason, address=address, drain=drain,
                                        prewarm=prewarm)

    def _notify(self, name: str, record: NodeRecord, *, address: str | None = None,
                reason: str = "") -> None:
        self.on_event(NodeEvent(name, record.hostname, address or record.address or "",
                                record.id, record.pool, reason))

    def _pool_failed(self, pool: str, kind: ErrorKind, message: str, now: datetime) -> None:
        health = next_health(self.store.pool_health().get(pool), pool, kind, message, now,
                             self.policy)
        self.store.save_pool_health(health)
        log.warning("pool backoff pool=%s kind=%s failures=%d until=%s stopped=%s",
                    pool, kind, health.consecutive_failures, health.backoff_until,
                    health.stopped)

    def _pool_recovered(self, pool: str) -> None:
        health = self.store.pool_health().get(pool)
        if health is not None and health.consecutive_failures:
            self.store.save_pool_health(replace(health, consecutive_failures=0,
                                                backoff_until=None))

    def _event(self, now: datetime, kind: EventKind, message: str, record_id: str, *,
               pool: str | None = None, error_kind: ErrorKind | None = None) -> None:
        record = self.store.record(record_id)
        log.info("%s host=%s %s", kind, record.hostname, message)
        self.store.add_event(now, kind, message, hostname=record.hostname,
                             pool=pool or record.pool, error_kind=error_kind)

    # -- loop ------------------------------------------------------------------------------
    def run_forever(self, stop: threading.Event, *, interval: float,
                    wakeup: Wakeup | None = None) -> None:
        """Pass after pass until `stop` is set; a wakeup (a hint arrived, or background
        steps ended) cuts the wait. A pass that raises is recorded as failed and the next
        one comes at the next interval; FATAL_ERRORS end the loop and reach the caller."""
        if wakeup is not None:
            self.on_background_done = wakeup.notify
        woken = False
        while not stop.is_set():
            pause = interval
            started = time.monotonic()
            try:
                # Woken by news (a hint, a step done): plan from the cloud as last read, with
                # our creates since, for at most one interval; otherwise read it again.
                report = self.run_once(interrupted=wakeup.pending if wakeup else None,
                                       cloud_view_age=interval if woken else 0.0)
            except FATAL_ERRORS:
                log.critical("pass failed: the reconciler stops, to be restarted",
                             exc_info=True)
                raise
            except DtError as error:
                log.error("pass failed error=%s", error)
                self._pass_failed(error, started)
            except Exception as error:        # noqa: BLE001 - a bug fails one pass, not all
                log.exception("pass failed with an unexpected error")
                self._pass_failed(error, started)
            else:
                if report.plan.revisit_after is not None:
                    pause = min(interval, report.plan.revisit_after.total_seconds())
            if wakeup is not None:
                woken = wakeup.wait(pause, stop)
            else:
                stop.wait(pause)
        self.wait_for_background()

    def _pass_failed(self, error: Exception, started: float) -> None:
        """Count the pass and record it, failed with its error, for /status and /metrics
        (the API reads them from the store). A store that refuses is logged, not raised."""
        self._pass_errors += 1
        # Escaped: an error may quote what a user wrote, and /status goes to terminals.
        text = printable(f"{type(error).__name__}: {error}")
        try:
            self.store.save_pass(PassReport(
                time=self.clock.now(), duration_seconds=time.monotonic() - started, ok=False,
                summary={"error": text[:_PASS_ERROR_CHARS], "pass_errors": self._pass_errors}))
        except FATAL_ERRORS:
            raise
        except Exception:                     # noqa: BLE001 - the loop must go on
            log.exception("failed pass not recorded")
