"""Move each owned node along its lifecycle; clean up what faults and crashes left behind.

Nothing here deletes on a guess: every destructive step needs TORQUE and Nova to have been
read this pass, and a node with a job on it is only ever waited for.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Mapping

from dtserver.actions import (
    AdoptInstance, ClearNode, DeleteInstance, JoinNode, MarkDown, MarkEntryReady, PokeScheduler,
    RegisterSlot, Transition)
from dtserver.model import (
    ErrorKind, Instance, Node, NodeRecord, NodeState, PoolHealth, Snapshot)
from dtserver.planning.dismantle import (
    DELETE_RETRY, SLOT_NOTE, dismantle, finish_dismantling, instance_of)
from dtserver.planning.step import StepResult
from dtserver.policy import Policy


def fault_is_capacity(fault: str | None) -> bool:
    return bool(fault) and "no valid host" in fault.lower()


class Lifecycle:
    """Collects one pass's lifecycle actions and notes, record by record."""

    def __init__(self, snapshot: Snapshot, policy: Policy, now: datetime) -> None:
        self.snapshot = snapshot
        self.policy = policy
        self.now = now
        self.nodes: Mapping[str, Node] | None = snapshot.node_by_name
        self.instances: Mapping[str, Instance] | None = snapshot.instance_by_id
        self.actions: list = []
        self.notes: list[str] = []
        self.poke = False

    # -- helpers -------------------------------------------------------------------------
    def take(self, result: StepResult) -> None:
        self.actions += result.actions
        self.notes += result.notes

    def fail(self, record: NodeRecord, reason: str, kind: ErrorKind = ErrorKind.BOOT) -> None:
        self.actions.append(Transition(record.id, NodeState.FAILED, reason, failure=kind))

    # -- per state -------------------------------------------------------------------------
    def step(self, record: NodeRecord) -> None:
        state = record.state
        if state is NodeState.LAUNCHING:
            self.launching(record)
        elif state is NodeState.FAILED:
            self.take(dismantle(self.snapshot, self.policy, record, record.reason or "failed"))
        elif state is NodeState.DELETING:
            self.take(finish_dismantling(self.snapshot, self.policy, record, self.now))
        elif state in (NodeState.BOOTING, NodeState.REGISTERED, NodeState.IDLE,
                       NodeState.BUSY, NodeState.OFFLINE, NodeState.UNKNOWN):
            if self.instances is None:
                return
            instance = instance_of(self.snapshot, record)
            if instance is None:
                self.fail(record, "instance disappeared from Nova", ErrorKind.OTHER)
            elif instance.status == "ERROR":
                kind = ErrorKind.CAPACITY if fault_is_capacity(instance.fault) else ErrorKind.BOOT
                self.fail(record, f"instance ERROR: {instance.fault or 'no fault given'}", kind)
            elif state is NodeState.BOOTING:
                self.booting(record, instance)
            elif state is NodeState.REGISTERED:
                self.registered(record, instance)
            elif state is not NodeState.OFFLINE:
                self.running(record, instance)

    def launching(self, record: NodeRecord) -> None:
        if self.instances is None:
            return
        instance = self.snapshot.instance_by_record.get(record.id)
        if instance is not None:
            self.actions.append(AdoptInstance(record.id, instance.id))
        elif self.now - record.state_since > self.policy.launch_grace:
            # The record is written before servers.create; no instance carries its id, so
            # the create never reached Nova (crash or refused call): nothing to delete.
            self.actions.append(Transition(record.id, NodeState.DELETED,
                                           "servers.create never reached Nova"))

    def booting(self, record: NodeRecord, instance: Instance) -> None:
        if instance.status == "ACTIVE" and instance.addresses:
            pool = self.policy.pool(record.pool)
            if pool is not None:
                self.actions.append(JoinNode(record.id, record.hostname, instance.addresses[0],
                                             record.cores, pool.properties))
        elif self.now - record.created > self.policy.boot_timeout:
            self.fail(record, f"boot timeout: not ACTIVE after "
                              f"{int(self.policy.boot_timeout.total_seconds())} s")

    def registered(self, record: NodeRecord, instance: Instance) -> None:
        if self.nodes is None:
            return
        node = self.nodes.get(record.hostname)
        if node is not None and node.is_ready:
            state = NodeState.BUSY if node.jobs else NodeState.IDLE
            self.actions.append(Transition(record.id, state, "mom reported"))
            self.poke = True
        elif node is None and instance.addresses:
            pool = self.policy.pool(record.pool)
            if pool is not None:
                self.actions.append(JoinNode(record.id, record.hostname, instance.addresses[0],
                                             record.cores, pool.properties,
                                             "node entry missing"))
        elif self.now - record.created > self.policy.boot_timeout:
            self.fail(record, "never joined: the mom did not report within "
                              f"{int(self.policy.boot_timeout.total_seconds())} s")
        elif node is not None and not node.is_settling:
            self.unstale(record, node)
            if not instance.entry_announced:
                self.actions.append(MarkEntryReady(record.id, instance.id, record.hostname))

    def unstale(self, record: NodeRecord, node: Node) -> None:
        """An owned node we did not drain must not be offline or carry our note. TORQUE can
        bring either back: `qmgr delete node` + `create node` leaves the old entry's saved
        offline flag and note (server_priv/node_status, node_note) for a restart to restore,
        and pbs_sched never places a job on an offline node."""
        if record.drain is not None:
            return
        ours = node.note is not None and node.note.startswith(self.policy.drain_note_prefix)
        if node.is_offline or ours:
            self.actions.append(ClearNode(record.id, record.hostname,
                                          "offline flag or note that no drain of ours set"))

    def running(self, record: NodeRecord, instance: Instance) -> None:
        """IDLE, BUSY or UNKNOWN: follow what TORQUE says."""
        if self.nodes is None:
            return
        node = self.nodes.get(record.hostname)
        if node is None:
            if record.state is not NodeState.UNKNOWN:
                self.actions.append(Transition(record.id, NodeState.UNKNOWN,
                                               "node entry missing from TORQUE"))
            if instance.addresses:
                pool = self.policy.pool(record.pool)
                if pool is not None:
                    self.actions.append(JoinNode(record.id, record.hostname,
                                                 instance.addresses[0], record.cores,
                                                 pool.properties, "node entry missing"))
            return
        if node.is_settling:
            return          # re-created this pass or the last: nothing is known of it yet
        if record.drain is not None and node.is_offline:
            # A drain recorded but its transition lost (a crash between the two): resume it.
            self.actions.append(Transition(record.id, NodeState.OFFLINE,
                                           f"{record.drain.value} drain resumed"))
            return
        self.unstale(record, node)
        if node.is_down:
            # A down node is neither idle nor busy: only its down timer runs.
            if record.down_since is None:
                self.actions.append(MarkDown(record.id, self.now))
            elif self.now - record.down_since > self.policy.down_timeout and not node.jobs:
                self.fail(record, f"down for more than "
                                  f"{int(self.policy.down_timeout.total_seconds())} s",
                          ErrorKind.OTHER)
            return
        if record.down_since is not None:
            self.actions.append(MarkDown(record.id, None))
        wanted = NodeState.BUSY if node.jobs else NodeState.IDLE
        if record.state is not wanted:
            self.actions.append(Transition(record.id, wanted,
                                           "jobs arrived" if node.jobs else "jobs finished"))

    # -- cluster-wide ----------------------------------------------------------------------
    def orphans(self) -> None:
        """Owned instances with no live record: a crash or a failed create. The snapshot
        holds this installation's instances only (Cloud.owned_instances decides, by the
        installation id), so another installation's busy node never shows up here."""
        if self.instances is None:
            return
        live = {record.id for record in self.snapshot.records
                if record.state is not NodeState.DELETED}
        for instance in self.instances.values():
            if instance.record_id in live:
                continue
            node = self.nodes.get(instance.name) if self.nodes else None
            if self.nodes is None or (node is not None and node.jobs):
                self.notes.append(f"orphan instance {instance.id} ({instance.name}) kept: "
                                  "its node runs jobs or TORQUE is unreadable")
                continue
            self.actions.append(DeleteInstance(None, instance.id,
                                               "orphan: no live record owns it"))

    def slots(self) -> None:
        """Every slot without an instance exists, offline, with the slot note and np. A new
        entry settles for about 10 s (the server refuses pbsnodes -o until then) and then
        loses the offline flag it was created with; a restart can bring back an old note."""
        if self.nodes is None:
            return
        taken = {record.hostname for record in self.snapshot.records
                 if record.state is not NodeState.DELETED}
        for pool in self.policy.pools:
            for hostname in pool.slot_names:
                if hostname in taken:
                    continue          # its record's lifecycle owns the entry, missing or not
                node = self.nodes.get(hostname)
                if node is None:
                    self.actions.append(RegisterSlot(hostname, pool.name, pool.slot_np,
                                                     pool.properties))
                    continue
                if node.jobs or node.is_settling:
                    continue
                problem = ("slot lost its offline flag" if not node.is_offline
                           else "slot note missing" if node.note != SLOT_NOTE
                           else f"slot np {node.np}, not {pool.slot_np}"
                           if node.np != pool.slot_np else None)
                if problem is not None:
                    self.actions.append(RegisterSlot(hostname, pool.name, pool.slot_np,
                                                     pool.properties, problem))


def plan_repairs(snapshot: Snapshot, policy: Policy, now: datetime,
                 skip: frozenset[str]) -> StepResult:
    """Lifecycle actions and notes; claims the nodes it acts on. The nodes in `skip` were
    already decided on (by an admin intent)."""
    lifecycle = Lifecycle(snapshot, policy, now)
    claimed: set[str] = set()
    for record in snapshot.records:
        if record.state is not NodeState.DELETED and record.hostname not in skip:
            before = len(lifecycle.actions)
            lifecycle.step(record)
            if len(lifecycle.actions) > before:
                claimed.add(record.hostname)
    lifecycle.orphans()
    lifecycle.slots()
    if lifecycle.poke:
        lifecycle.actions.append(PokeScheduler("nodes turned ready"))
    return StepResult(actions=tuple(lifecycle.actions), notes=tuple(lifecycle.notes),
                      claimed=frozenset(claimed))


# The timers above compare with `>`: each fires on the first look strictly after it.
JUST_AFTER = timedelta(milliseconds=1)


def record_timers(snapshot: Snapshot, policy: Policy) -> list[datetime]:
    """When each time-based rule of the lifecycle fires if nothing else changes: launch
    grace, boot timeout, delete retry, down timeout, and the end of a pool's backoff."""
    due: list[datetime] = []
    for record in snapshot.records:
        if record.state is NodeState.LAUNCHING:
            due.append(record.state_since + policy.launch_grace + JUST_AFTER)
        elif record.state in (NodeState.BOOTING, NodeState.REGISTERED):
            due.append(record.created + policy.boot_timeout + JUST_AFTER)
        elif record.state is NodeState.DELETING:
            due.append(record.state_since + DELETE_RETRY + JUST_AFTER)
        if record.down_since is not None:
            due.append(record.down_since + policy.down_timeout + JUST_AFTER)
    due += [health.backoff_until for health in snapshot.pool_health.values()
            if health.backoff_until is not None]
    return due


def next_health(health: PoolHealth | None, pool: str, kind: ErrorKind, message: str,
                now: datetime, policy: Policy) -> PoolHealth:
    """Backoff after a failure: doubling from backoff_base up to backoff_cap; the pool stops
    after max_boot_failures consecutive failures until an admin resets it."""
    current = health or PoolHealth(pool)
    failures = current.consecutive_failures + 1
    delay = min(policy.backoff_base * (2 ** min(failures - 1, 20)), policy.backoff_cap)
    return replace(current, consecutive_failures=failures, backoff_until=now + delay,
                   last_error=kind, last_message=message[:200],
                   stopped=current.stopped or (kind is ErrorKind.BOOT
                                               and failures >= policy.max_boot_failures))
