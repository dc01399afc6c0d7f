"""EmulatorBatch: the Batch port read straight from a TorqueEmulator's state.

TorqueBatch over the emulator renders `qstat -x` and `pbsnodes -x` as XML and parses it
back on every pass; over a year of trace replay that round trip is most of the cost. This
adapter builds the same Job and Node values directly from the emulator's state (a contract
test holds it to TorqueBatch's answers on the same emulator) and keeps the values of jobs
and nodes that did not change since the last read. Changes still go through TorqueBatch,
as commands, so the emulator's rules for qmgr and pbsnodes apply unchanged.

When the emulator has processed no event, taken no submission and run no command since the
last read, the last job list is returned as it was (commands sent to the same emulator by
anyone else must therefore go through `runner`, which counts them); the last node list, as
long as the emulator's nodes_version() stays the same.

It reads the emulator's state through TorqueEmulator.reading() on purpose: it is the
emulator's sibling and exists only to make that state cheap to observe. The simulator also
asks it when each job ran.
"""
from __future__ import annotations

import operator
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from dtserver import nodespec
from dtserver.batch import BatchUnavailable
from dtserver.batch.torque import TorqueBatch
from dtserver.batch.torque_commands import CommandResult, Runner
from dtserver.fakes.torque.server import TorqueEmulator
from dtserver.model import Job, JobState, Node, Request

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# What a cached value depends on: a job's mtime moves with every change qstat shows, a
# node's `changes` with every change of the node (serial tells a re-created one apart).
_JOB_KEY = operator.attrgetter("mtime", "state", "comment", "hold_types")
_NODE_KEY = operator.attrgetter("serial", "changes")
_JOB_STATES = {state.value: state for state in JobState}


class EmulatorBatch:
    def __init__(self, emulator: TorqueEmulator, *, runner: Runner | None = None,
                 queues: frozenset[str] = frozenset()) -> None:
        """`runner` carries the commands (default: the emulator itself, unlocked)."""
        self._emulator = emulator
        self._queues = frozenset(queues)
        self.runner = CountingRunner(runner or emulator)
        self._commands = TorqueBatch(self.runner, queues=self._queues)
        self._jobs: dict[str, tuple[tuple[Any, ...], Job]] = {}
        self._nodes: dict[str, tuple[tuple[Any, ...], Node]] = {}
        self._last_jobs: tuple[tuple[Any, ...], tuple[Job, ...]] | None = None
        self._last_nodes: tuple[tuple[Any, ...], tuple[Node, ...]] | None = None
        self._requests: dict[tuple[tuple[str, str], ...],
                             tuple[Request | None, str | None]] = {}

    # --- reads ----------------------------------------------------------------------------

    def jobs(self) -> tuple[Job, ...]:
        """What TorqueBatch.jobs() returns over the same emulator (`qstat -x -t`)."""
        with self._emulator.reading() as state:
            if state.server_down:
                raise BatchUnavailable("qstat: cannot connect to server (emulated outage)")
            generation = self._generation(state)
            if self._last_jobs is not None and self._last_jobs[0] == generation:
                return self._last_jobs[1]
            entries = state.jobs
            cache = self._jobs
            fresh: dict[str, tuple[tuple[Any, ...], Job]] = {}
            jobs: list[Job] = []
            for entry in entries.values():
                if entry.children or (self._queues and entry.queue not in self._queues):
                    continue
                key = _JOB_KEY(entry)
                cached = cache.get(entry.id)
                job = (cached[1] if cached is not None and cached[0] == key
                       else self._job(entry, state))
                fresh[entry.id] = (key, job)
                jobs.append(job)
            self._jobs = fresh
            self._last_jobs = (generation, tuple(jobs))
            return self._last_jobs[1]

    def nodes(self) -> tuple[Node, ...]:
        """What TorqueBatch.nodes() returns over the same emulator (`pbsnodes -x`)."""
        with self._emulator.reading() as state:
            if state.server_down:
                raise BatchUnavailable("pbsnodes: cannot connect to server (emulated outage)")
            version = self._emulator.nodes_version()
            if self._last_nodes is not None and self._last_nodes[0] == version:
                return self._last_nodes[1]
            cache = self._nodes
            fresh: dict[str, tuple[tuple[Any, ...], Node]] = {}
            nodes: list[Node] = []
            for entry in state.nodes.values():
                key = _NODE_KEY(entry)
                cached = cache.get(entry.name)
                if cached is None or cached[0] != key:
                    cached = (key, _node(entry))
                fresh[entry.name] = cached
                nodes.append(cached[1])
            self._nodes = fresh
            self._last_nodes = (version, tuple(nodes))
            return self._last_nodes[1]

    def run_times(self, job_id: str) -> tuple[datetime, datetime | None, tuple[str, ...]] | None:
        """When `job_id` started and completed (None while running) and its hosts; None
        while it has not started or once the server has purged it."""
        with self._emulator.reading() as state:
            entry = state.jobs.get(job_id)
            if entry is None or entry.start_time is None:
                return None
            end = None if entry.comp_time is None else _time(entry.comp_time)
            return (_time(entry.start_time), end,
                    tuple(dict.fromkeys(name for name, _ in entry.exec_slots)))

    def next_news_time(self, *, cycles: bool) -> datetime | None:
        """When the next emulator event is due that can change what jobs() and nodes()
        show, other than a completed job leaving the list: purges are left out, and so
        are scheduler cycles unless `cycles` (a cycle with nothing queued starts nothing).
        Superseded events may still count: at worst a reader looks once for nothing."""
        self._emulator.advance()
        return self._emulator.next_event_time(purges=False, cycles=cycles)

    # --- changes: the same commands TorqueBatch sends ---------------------------------------

    def register_slot(self, hostname: str, np: int, properties: frozenset[str], note: str) -> None:
        self._commands.register_slot(hostname, np, properties, note)

    def join_node(self, hostname: str, address: str, np: int, properties: frozenset[str]) -> None:
        self._commands.join_node(hostname, address, np, properties)

    def offline_node(self, hostname: str, note: str) -> None:
        self._commands.offline_node(hostname, note)

    def clear_node(self, hostname: str) -> None:
        self._commands.clear_node(hostname)

    def release_node(self, hostname: str, np: int, properties: frozenset[str], note: str) -> None:
        self._commands.release_node(hostname, np, properties, note)

    def poke_scheduler(self) -> None:
        self._commands.poke_scheduler()

    # --- value builders ---------------------------------------------------------------------

    def _generation(self, state: Any) -> tuple[Any, ...]:
        """Changes whenever what qstat shows may have changed: every event
        processed or scheduled moves the event counters, every submission the job number,
        every command the runner's count; `sched_dirty` covers commands sent elsewhere
        until the next scheduler cycle."""
        return (state.event_seq, len(state.events), state.next_job_number, self.runner.count,
                state.sched_dirty, state.server_down)

    def _job(self, entry: Any, state: Any) -> Job:
        letter = entry.state
        if entry.children:
            letters = {state.jobs[child].state for child in entry.children}
            letter = next((item for item in ("R", "Q", "H") if item in letters), "C")
        resources = dict(entry.resources)
        request, error = self._request(resources, entry.array_request)
        return Job(
            id=entry.id, owner=entry.owner, queue=entry.queue, state=_JOB_STATES[letter],
            # qstat prints whole seconds
            created=_time(int(entry.ctime)),
            request=request, resources=resources, account=entry.account or None,
            exec_hosts=tuple(dict.fromkeys(name for name, _ in entry.exec_slots)),
            # qstat shows Hold_Types only for jobs that are not array subjobs
            hold_types=(entry.hold_types or "n") if entry.parent is None else "n",
            comment=entry.comment or None, request_error=error,
            started=None if entry.start_time is None else _time(int(entry.start_time)))

    def _request(self, resources: dict[str, str],
                 array: str | None) -> tuple[Request | None, str | None]:
        key = (*sorted(resources.items()), ("", array or ""))
        known = self._requests.get(key)
        if known is None:
            try:
                known = nodespec.parse_resource_list(resources, array=array or None), None
            except nodespec.RequestError as error:
                known = None, str(error)
            self._requests[key] = known
        return known


def _node(entry: Any) -> Node:
    flags = [flag for flag, on in (("down", entry.down), ("offline", entry.offline),
                                   ("MOM-list-not-sent", entry.list_not_sent)) if on]
    if not flags:
        flags = ["job-exclusive" if entry.slots and len(entry.slots) >= entry.np else "free"]
    slots = entry.slots
    reported = entry.reported_at is not None
    return Node(
        name=entry.name, states=frozenset(flags), np=entry.np,
        properties=frozenset(entry.properties),
        jobs=tuple(dict.fromkeys(slots[core] for core in sorted(slots))),
        used_cores=len(slots), note=entry.note or None, has_reported=reported,
        ncpus=entry.status_ncpus if reported else None)


def _time(epoch: float) -> datetime:
    return _EPOCH + timedelta(seconds=epoch)


class CountingRunner:
    """A Runner that counts the commands it forwards."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self.count = 0

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None,
            timeout: float | None = None) -> CommandResult:
        self.count += 1
        return self._runner.run(argv, stdin=stdin, timeout=timeout)
