"""What every part of the emulated server shares: its state, the heap of timed events
(node hierarchy, mom reports, a mom declared down, job ends, purges, scheduler cycles) and
the node files a restart reads back.
"""
from __future__ import annotations

import heapq
import logging
import math
from typing import Callable

from dtserver.clock import Clock
from dtserver.fakes.torque.state import (
    CYCLE, HIERARCHY, JOB_END, MARK_DOWN, REPORT, JobEntry, Mom, NodeEntry, ServerState,
    event_fields, is_true)

logger = logging.getLogger(__name__)

_EPSILON = 1e-3              # clock round trips through datetime lose sub-microseconds


class ServerCore:
    """The state and the clock of one pbs_server; TorqueEmulator (server.py) sets them up."""

    _clock: Clock
    _server: str
    _resolvable: Callable[[str], bool] | None
    _hierarchy_delay: float
    _mom_report_delay: float
    _mom_hello_delay: float
    _status_interval: float
    _node_down_delay: float
    _restart_report_delay: float
    _submit_user: str
    _state: ServerState
    # Free cores per usable node as the last cycle left them: derived, not state; only
    # valid while nothing but new submissions happened (see ServerState.sched_dirty).
    _free_after_cycle: dict[str, list[int]]

    def _push(self, when: float, kind: int, key: str, serial: int) -> None:
        self._state.event_seq += 1
        heapq.heappush(self._state.events, (when, kind, self._state.event_seq, key, serial))

    def _schedule_cycle(self, when: float) -> None:
        self._state.cycle_due = when
        self._push(when, CYCLE, "", 0)

    def _schedule_report(self, node: NodeEntry, when: float) -> None:
        node.report_due = when
        self._push(when, REPORT, node.name, node.serial)

    def _run_until(self, now: float) -> None:
        state = self._state
        while state.events and state.events[0][0] <= now + _EPSILON:
            when, kind, _, key, serial = heapq.heappop(state.events)
            if not self._is_live(when, kind, key, serial):
                continue
            state.now = max(state.now, when)
            if kind != CYCLE:
                state.sched_dirty = True
            self._handle(kind, key)
        state.now = max(state.now, now)

    def _drop_stale_events(self) -> None:
        events = self._state.events
        while events and not self._is_live(*event_fields(events[0])):
            heapq.heappop(events)

    def _is_live(self, when: float, kind: int, key: str, serial: int) -> bool:
        state = self._state
        if kind == CYCLE:
            return when == state.cycle_due
        if kind in (HIERARCHY, REPORT, MARK_DOWN):
            node = state.nodes.get(key)
            if node is None or node.serial != serial:
                return False
            due = {HIERARCHY: node.hierarchy_at if node.list_not_sent else None,
                   REPORT: node.report_due, MARK_DOWN: node.down_due}[kind]
            return due == when
        job = state.jobs.get(key)
        if job is None:
            return False
        if kind == JOB_END:
            return job.state == "R" and job.end_at == when
        return job.state == "C" and job.purge_at == when

    def _handle(self, kind: int, key: str) -> None:
        state = self._state
        if kind == CYCLE:
            iteration = float(state.attributes.get("scheduler_iteration", "600"))
            self._schedule_cycle(state.now + iteration)
            state.sched_dirty = True
            self._cycle()
        elif kind == HIERARCHY:
            node = state.nodes[key]
            # Sending the hierarchy clears offline too (source: checkAndSendHierarchy).
            node.list_not_sent = False
            node.offline = False
            logger.debug("node hierarchy sent node=%s", key)
        elif kind == REPORT:
            self._mom_reports(state.nodes[key])
        elif kind == MARK_DOWN:
            node = state.nodes[key]
            node.down_due = None
            node.down = True
            logger.info("node marked down node=%s reason=mom silent", key)
        elif kind == JOB_END:
            self._job_ends(state.jobs[key])
        else:
            self._purge(state.jobs[key])

    def _mom_reports(self, node: NodeEntry) -> None:
        node.report_due = None
        mom = self._state.moms.get(node.name)
        if mom is None or not mom.up:
            return
        now = self._state.now
        if node.list_not_sent:
            # pbs_server ignores a mom that has not got the hierarchy (process_state_str).
            self._schedule_report(node, node.hierarchy_at + self._mom_report_delay)
            return
        if node.reported_at is None or node.reported_at < mom.up_since:
            node.reported_at = now
        node.down = False
        node.down_due = None
        node.status_ncpus = mom.ncpus
        node.status_mem_kb = mom.mem_mb * 1024
        if is_true(self._state.attributes.get("auto_node_np", "False")):
            node.np = mom.ncpus
        logger.debug("mom report node=%s ncpus=%d", node.name, mom.ncpus)

    def _next_status_send(self, mom: Mom) -> float:
        """When `mom` next sends its status: at its start and every status interval after
        (the server answers even a refused one, so the mom keeps its pace)."""
        elapsed = self._state.now - mom.up_since
        return mom.up_since + (math.floor(elapsed / self._status_interval) + 1) \
            * self._status_interval

    def _next_periodic_report(self, node: NodeEntry) -> float | None:
        """The next routine report of a reporting mom, which would reset np or `-r`."""
        mom = self._state.moms.get(node.name)
        if mom is None or not mom.up or node.reported_at is None:
            return None
        elapsed = self._state.now - node.reported_at
        return node.reported_at + (math.floor(elapsed / self._status_interval) + 1) \
            * self._status_interval

    def _mom_alive(self, hostname: str) -> bool:
        mom = self._state.moms.get(hostname)
        return mom is not None and mom.up

    def _find_job(self, word: str) -> JobEntry | None:
        return self._state.jobs.get(self._full_job_id(word))

    def _full_job_id(self, word: str) -> str:
        return word if word.endswith(f".{self._server}") else f"{word}.{self._server}"

    def _save_changed_node_files(self, node: NodeEntry, offline_before: bool,
                                 note_before: str | None) -> None:
        """mgr_node_set after a change to `node`: node_status is rewritten when its
        offline flag changed, node_note when its note did (source: chk_characteristic).
        Each holds every node at that moment, an entry in its creation window included."""
        if node.offline != offline_before:
            self._save_offline_nodes()
        if node.note != note_before:
            self._state.saved_node_notes = {name: entry.note for name, entry
                                            in self._state.nodes.items() if entry.note}

    def _save_offline_nodes(self) -> None:
        """write_node_state(): the names of the nodes offline now."""
        self._state.saved_offline_nodes = [name for name, node in self._state.nodes.items()
                                           if node.offline]

    # The scheduler (scheduler.py) handles these events.

    def _cycle(self) -> None:
        raise NotImplementedError

    def _job_ends(self, job: JobEntry) -> None:
        raise NotImplementedError

    def _purge(self, job: JobEntry) -> None:
        raise NotImplementedError
