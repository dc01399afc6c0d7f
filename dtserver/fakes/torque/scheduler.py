"""pbs_sched and the job lifecycle on the emulated server: admission of a submission,
FIFO cycles with first-fit placement, start, end, requeue and purge.
"""
from __future__ import annotations

import logging
import re
from typing import Iterable, Mapping, Sequence

from dtserver import nodespec
from dtserver.fakes.torque.core import ServerCore
from dtserver.fakes.torque.render import exec_host
from dtserver.fakes.torque.state import (
    EmulatorError, JOB_END, JobEntry, NodeEntry, PURGE, QueueEntry, Submission, hms, is_true,
    utc_datetime, walltime_seconds)
from dtserver.model import Chunk

logger = logging.getLogger(__name__)

_EXIT_WALLTIME = -11         # assumed: TORQUE's JOB_EXEC_OVERLIMIT for walltime
_NOT_ENOUGH_NODES = "Not Running: Not enough of the right type of nodes are available"
_UNKNOWN_NODE = "Not Running - PBS Error: Unknown node "
_UNKNOWN_NODE_ATTRIBUTE = "Not Running - PBS Error: Unknown node-attribute "
_UNAVAILABLE = ("Not Running - PBS Error: Resource temporarily unavailable MSG=job "
                "allocation request exceeds currently available cluster nodes,")
_INFEASIBLE = ("qsub: submit error (Job exceeds queue resource limits MSG=cannot locate "
               "feasible nodes (nodes file is empty, all systems are busy, or no nodes "
               "have the requested feature))\n")
_PATH_VARIABLE = ("PBS_O_PATH=/usr/local/bin:/usr/local/sbin:/usr/local/sbin:/usr/local/bin:"
                  "/usr/sbin:/usr/bin:/sbin:/bin")
# Resource names pbs_server knows (resc_def_all.c); any other is refused with 189.
_KNOWN_RESOURCES = frozenset({
    "arch", "cput", "epilogue", "feature", "file", "gres", "host", "mem", "naccesspolicy",
    "ncpus", "neednodes", "nice", "nodect", "nodes", "opsys", "other", "pcput", "pmem",
    "procs", "procs_bitmap", "prologue", "pvmem", "signal", "size", "software", "tpn",
    "trl", "vmem", "walltime"})
_SIZE_RESOURCES = frozenset({"mem", "pmem", "vmem", "pvmem", "file"})
_TIME_RESOURCES = frozenset({"walltime", "cput", "pcput"})
_SIZE = re.compile(r"([0-9]+)([kmgtp]?)([bw]?)", re.IGNORECASE)


def _array_indices(text: str) -> list[int]:
    ranges = text.partition("%")[0]
    indices: list[int] = []
    for token in ranges.split(","):
        start, dash, end = token.strip().partition("-")
        indices.extend(range(int(start), int(end if dash else start) + 1))
    return sorted(indices)


def normalize_resource(key: str, value: str) -> str:
    """A resource value as pbs_server stores it: times as HH:MM:SS, sizes with a unit."""
    value = value.strip()
    if key in _TIME_RESOURCES:
        return hms(nodespec.parse_walltime(value))
    if key in _SIZE_RESOURCES:
        match = _SIZE.fullmatch(value)
        if match is None:
            raise nodespec.RequestError(f"{key}={value!r} is not a size")
        digits, prefix, unit = match.groups()
        return f"{int(digits)}{prefix.lower()}{(unit or 'b').lower()}"
    return value


def node_count(spec: str) -> int:
    try:
        return sum(part.count for part in nodespec.parse_nodes_spec(spec))
    except nodespec.RequestError:
        return 1


def _with_queue_defaults(requested: Mapping[str, str],
                         queue: QueueEntry) -> tuple[dict[str, str], list[str]]:
    """Resource_List in pbs_server's order: the request, nodect/neednodes derived from
    nodes, then the queue's defaults for what is missing (10_, 15_, 42_). procs and ncpus
    jobs get no node defaults; a neednodes default only applies without a nodes spec."""
    resources = dict(requested)
    if "nodes" in resources:
        resources["nodect"] = str(node_count(resources["nodes"]))
        resources.setdefault("neednodes", resources["nodes"])
    defaulted = []
    node_free = "procs" in resources or "ncpus" in resources
    for attribute, value in queue.attributes.items():
        prefix, _, key = attribute.partition(".")
        if prefix != "resources_default" or key in resources:
            continue
        if node_free and key in ("nodes", "neednodes", "nodect"):
            continue
        resources[key] = value
        defaulted.append(key)
        if key == "nodes":
            resources["nodect"] = str(node_count(value))
            resources.setdefault("neednodes", value)
    return resources, defaulted


def _parse_parts(spec: str) -> tuple[Chunk, ...] | None:
    try:
        return nodespec.parse_nodes_spec(spec)
    except nodespec.RequestError:
        return None


def _fits(part: Chunk, offered: set[str], cores: int) -> bool:
    wanted = set(part.properties) | ({part.hostname} if part.hostname else set())
    return wanted <= offered and part.gpus == 0 and cores >= part.cores


def _take_anywhere(free: dict[str, list[int]], count: int) -> list[tuple[str, list[int]]]:
    if count < 1 or sum(len(cores) for cores in free.values()) < count:
        return []
    taken = []
    for name, cores in free.items():
        if count <= 0:
            break
        share = cores[:count]
        if share:
            taken.append((name, share))
            del cores[:len(share)]
            count -= len(share)
    return taken


class Scheduler(ServerCore):
    """Places and runs jobs; every command that submits, deletes or frees cores comes here."""

    def _cycle(self) -> None:
        """One pbs_sched cycle: FIFO over queued jobs, first fit over usable nodes.

        When nothing but new submissions changed since the last cycle, the jobs seen then
        would get the same answer again, so only the new ones are tried.
        """
        state = self._state
        if state.server_down or not is_true(state.attributes.get("scheduling", "False")):
            return
        if state.sched_dirty:
            candidates = list(state.jobs.values())
            # Full nodes are left out: no job could take a core of theirs.
            free = {name: [core for core in range(node.np) if core not in node.slots]
                    for name, node in state.nodes.items()
                    if len(node.slots) < node.np and self._is_usable(node)}
        else:
            candidates = [state.jobs[job_id] for job_id in state.sched_new
                          if job_id in state.jobs]
            free = self._free_after_cycle
        state.sched_dirty = False
        state.sched_new.clear()
        running: dict[str, int] = {}
        # Free cores only shrink during a cycle: a request that did not fit will not fit
        # later in the same cycle, which keeps a cycle over 100k alike jobs cheap.
        refused: dict[tuple[str | None, str | None, str | None], str] = {}
        started = {name for name, queue in state.queues.items()
                   if is_true(queue.attributes.get("started", "False"))}
        for job in candidates:
            if job.state != "Q" or job.children or job.queue not in started:
                continue
            parent = state.jobs.get(job.parent) if job.parent else None
            if parent is not None and parent.slot_limit is not None:
                if parent.id not in running:
                    running[parent.id] = sum(state.jobs[child].state == "R"
                                             for child in parent.children)
                if running[parent.id] >= parent.slot_limit:
                    continue
            resources = job.resources
            request = (resources.get("nodes"), resources.get("neednodes"),
                       resources.get("procs"))
            placement = refused.get(request) or self._place(job, free)
            if isinstance(placement, str):
                refused[request] = placement
                if job.comment != placement:
                    job.comment = placement
                    job.mtime = state.now
                continue
            self._start(job, placement)
            if parent is not None and parent.id in running:
                running[parent.id] += 1
        self._free_after_cycle = {name: cores for name, cores in free.items() if cores}

    def _is_usable(self, node: NodeEntry) -> bool:
        return not (node.down or node.offline or node.list_not_sent) \
            and self._mom_alive(node.name)

    def _place(self, job: JobEntry,
               free: dict[str, list[int]]) -> list[tuple[str, list[int]]] | str:
        """Cores for `job` taken out of `free`, or the comment saying why it cannot run.

        pbs_sched checks only Resource_List.nodes (hostnames count as properties there);
        a job it lets through is placed by pbs_server from neednodes, or `1` without one,
        and a refusal comes back as "PBS Error". That is why `neednodes=CLOUD` gets
        "Unknown node" and `ncpus=4` gets "1 requested, 0 available" in 12_.
        """
        resources = job.resources
        if "nodes" in resources:
            parts = _parse_parts(resources["nodes"])
            if parts is None or self._allocate(parts, free, None)[1]:
                return _NOT_ENOUGH_NODES
        spec = resources.get("neednodes") or resources.get("nodes")
        if spec is None and "procs" in resources:
            wanted = resources["procs"]
            taken = _take_anywhere(free, int(wanted)) if wanted.isdigit() else []
            return taken or _UNKNOWN_NODE_ATTRIBUTE
        parts = _parse_parts(spec or "1")
        if parts is None:
            return _UNKNOWN_NODE_ATTRIBUTE
        first = parts[0].hostname
        if first is not None and first not in self._state.nodes:
            return _UNKNOWN_NODE
        placement, missing = self._allocate(parts, free, first)
        if missing:
            requested = sum(part.count for part in parts)
            return (f"{_UNAVAILABLE} {requested} requested, {requested - missing} available")
        for name, cores in placement:
            del free[name][:len(cores)]
        return placement

    def _allocate(self, parts: Sequence[Chunk], free: Mapping[str, list[int]],
                  first: str | None) -> tuple[list[tuple[str, list[int]]], int]:
        """node_spec(): usable nodes in creation order (a named first host first), each
        serving every `+` part it fits once. Returns the placement and how many node
        slices are missing; `free` is not changed (a placement takes its lowest cores)."""
        order: Iterable[str] = free
        if first is not None:
            order = [first, *(name for name in free if name != first)]
        remaining = [part.count for part in parts]
        taken: dict[str, list[int]] = {}
        for name in order:
            cores = free.get(name)
            if not cores:
                continue
            offered = set(self._state.nodes[name].properties) | {name}
            for index, part in enumerate(parts):
                used = len(taken.get(name, ()))
                if remaining[index] and _fits(part, offered, len(cores) - used):
                    taken.setdefault(name, []).extend(cores[used:used + part.cores])
                    remaining[index] -= 1
            if not any(remaining):
                break
        return list(taken.items()), sum(remaining)

    def _start(self, job: JobEntry, placement: list[tuple[str, list[int]]]) -> None:
        now = self._state.now
        for name, cores in placement:
            node = self._state.nodes[name]
            for core in cores:
                node.slots[core] = job.id
            node.touch()
        job.exec_slots = placement
        job.state = "R"
        job.start_time = now
        job.start_count += 1
        job.session_id = 10_000 + (job.seq * 37 + (job.array_index or 0)) % 50_000
        job.comment = f"Job started on {utc_datetime(now):%a %b %d at %H:%M}"
        job.mtime = now
        limit = walltime_seconds(job.resources)
        duration = job.runtime if limit is None else min(job.runtime, limit)
        job.end_status = _EXIT_WALLTIME if limit is not None and job.runtime > limit else 0
        job.end_at = now + max(duration, 0.0)
        self._push(job.end_at, JOB_END, job.id, 0)
        logger.info("job started job=%s exec_host=%s", job.id, exec_host(placement))

    def _job_ends(self, job: JobEntry) -> None:
        if not all(self._mom_alive(host) for host, _ in job.exec_slots):
            job.end_blocked = True
            job.end_at = None
            return
        self._complete(job, job.end_status)
        self._cycle()

    def _complete(self, job: JobEntry, exit_status: int | None) -> None:
        now = self._state.now
        self._release_slots(job)
        job.state = "C"
        job.exit_status = exit_status
        job.comp_time = now
        job.mtime = now
        job.end_at = None
        job.end_blocked = False
        job.purge_at = now + float(self._state.attributes.get("keep_completed", "300"))
        self._push(job.purge_at, PURGE, job.id, 0)
        logger.info("job completed job=%s exit_status=%s", job.id, exit_status)

    def _release_slots(self, job: JobEntry) -> None:
        for name, cores in job.exec_slots:
            node = self._state.nodes.get(name)
            if node is None:
                continue
            for core in cores:
                if node.slots.get(core) == job.id:
                    del node.slots[core]
            node.touch()

    def _requeue(self, job: JobEntry) -> None:
        """What pbs_server does to a job whose node is deleted under it (45_)."""
        self._release_slots(job)
        job.state = "Q"
        job.exec_slots = []
        job.session_id = None
        job.start_time = None
        job.end_at = None
        job.end_blocked = False
        job.exit_status = 0
        job.mtime = self._state.now
        logger.info("job requeued job=%s", job.id)

    def _purge(self, job: JobEntry) -> None:
        jobs = self._state.jobs
        del jobs[job.id]
        if job.parent is not None and job.parent in jobs:
            parent = jobs[job.parent]
            parent.children.remove(job.id)
            if not parent.children:
                del jobs[parent.id]

    def _submit(self, submission: Submission) -> str:
        state = self._state
        now = state.now
        # The server numbers a job before checking it: refused submissions use up ids (10_).
        seq = state.next_job_number
        state.next_job_number += 1
        queue = state.queues.get(submission.queue or state.attributes.get("default_queue", ""))
        if queue is None:
            raise EmulatorError(172, "qsub: submit error (Unknown queue MSG=requested queue "
                                     "not found)\n")
        for key in submission.resources:
            if key not in _KNOWN_RESOURCES:
                raise EmulatorError(189, "qsub: submit error (Unknown resource type  "
                                         f"Resource_List.{key})\n")
        resources, defaulted = _with_queue_defaults(submission.resources, queue)
        if "nodes" in resources and not self._is_feasible(resources["nodes"]):
            raise EmulatorError(190, _INFEASIBLE)
        state_letter = "H" if submission.hold else "Q"
        variables = [f"PBS_O_QUEUE={queue.name}", f"PBS_O_HOME=/home/{submission.owner}",
                     f"PBS_O_LOGNAME={submission.owner}",
                     _PATH_VARIABLE, "PBS_O_SHELL=/bin/bash",
                     "PBS_O_LANG=C.UTF-8",
                     *([f"PBS_O_SUBMIT_FILTER={submission.submit_filter}"]
                       if submission.submit_filter else []),
                     *submission.variables,
                     f"PBS_O_WORKDIR=/home/{submission.owner}",
                     f"PBS_O_HOST={self._server}", f"PBS_O_SERVER={self._server}"]

        def entry(job_id: str, name: str, extra: list[str]) -> JobEntry:
            rank = state.next_rank
            state.next_rank += 1
            return JobEntry(
                id=job_id, seq=seq, name=name, owner=submission.owner, queue=queue.name,
                state=state_letter, ctime=now, mtime=now, resources=dict(resources),
                defaulted=list(defaulted), submit_args=submission.submit_args,
                variables=extra + variables, queue_rank=rank, runtime=submission.runtime,
                hold_types="u" if submission.hold else "n", account=submission.account,
                qtime=now, etime=None if submission.hold else now)

        if submission.array is None:
            job_id = f"{seq}.{self._server}"
            state.jobs[job_id] = entry(job_id, submission.name, [])
        else:
            job_id = f"{seq}[].{self._server}"
            parent = entry(job_id, submission.name, [])
            parent.qtime = None
            parent.array_request = submission.array
            parent.slot_limit = nodespec.parse_array_spec(submission.array).slot_limit
            state.jobs[job_id] = parent
            for index in _array_indices(submission.array):
                child_id = f"{seq}[{index}].{self._server}"
                child = entry(child_id, f"{submission.name}-{index}", [f"PBS_ARRAYID={index}"])
                child.parent = job_id
                child.array_index = index
                parent.children.append(child_id)
                state.jobs[child_id] = child
        state.sched_new.extend(child for child in state.jobs[job_id].children or [job_id])
        logger.info("job submitted job=%s queue=%s resources=%s", job_id, queue.name, resources)
        self._cycle()
        return job_id

    def _is_feasible(self, spec: str) -> bool:
        """node_spec()'s submit-time check: could the node entries ever run this request?

        Every (node, part) pair a node could satisfy ignoring its state counts as eligible;
        free nodes also use up the part, and the scan stops once every part is met.
        """
        parts = _parse_parts(spec)
        if parts is None:
            return False
        nodes = self._state.nodes
        total = sum(part.count for part in parts)
        if total > len(nodes):
            return False
        remaining = [part.count for part in parts]
        eligible = 0
        for node in nodes.values():
            offered = set(node.properties) | {node.name}
            free_cores = node.np - len(node.slots)
            available = not (node.down or node.offline or free_cores <= 0)
            for index, part in enumerate(parts):
                if not remaining[index] or not _fits(part, offered, node.np):
                    continue
                eligible += 1
                if available and free_cores >= part.cores:
                    remaining[index] -= 1
            # The answer is `eligible >= total` and eligible only grows: stop once it holds.
            if eligible >= total or not any(remaining):
                break
        return eligible >= total
