"""What the emulated TORQUE prints: qstat tables and `-x` XML, pbsnodes text and XML,
qmgr print/list output, and the clients' words when the server is down.
"""
from __future__ import annotations

import math
import re
import zlib
from typing import Iterable, Mapping, Sequence
from xml.sax.saxutils import escape

from dtserver.fakes.torque.core import ServerCore
from dtserver.fakes.torque.state import (
    EXIT_DELETED, EmulatedJob, EmulatedNode, JobEntry, NodeEntry, PBS_VERSION, QueueEntry,
    epoch_text, hms, is_true, utc_datetime, walltime_seconds)

_SERVER_ADDRESS = "127.0.0.1"
_SUBSTATES = {"Q": 10, "H": 20, "R": 42, "C": 59}
# TORQUE's XML writer escapes quotes too; a list attribute such as Variable_List also puts a
# backslash before these characters of its values (encode_arst; 51_).
_QUOTES_ESCAPED = {'"': "&quot;", "'": "&apos;"}
_ARST_SPECIAL = re.compile(r"""["',\\]""")
_WRAP_COLUMN = 80            # qmgr list wraps `status` at this column (05b_)
# PBSE_HIERARCHY_NOT_SENT's text (pbs_error_db.h), as pbsnodes and qmgr print it (49_).
HIERARCHY_NOT_SENT = ("The updated okclients list hasn't been sent out to the cluster yet. The "
                      "node(s) will automatically update to free once this is done and the mom "
                      "has reported in.")
# `qmgr -c 'p s'` order (01_, 03b_); attributes not listed here print after them.
_SERVER_PRINT_ORDER = (
    "scheduling", "acl_hosts", "managers", "operators", "default_queue", "log_events",
    "mail_from", "query_other_jobs", "scheduler_iteration", "node_check_rate", "tcp_timeout",
    "job_stat_rate", "poll_jobs", "down_on_error", "mom_job_sync", "keep_completed",
    "auto_node_np", "next_job_number", "record_job_info", "moab_array_compatible", "nppcu",
    "timeout_for_job_delete", "timeout_for_job_requeue", "note_append_on_error")


def _element(tag: str, value: str | list[tuple[str, str]]) -> str:
    if isinstance(value, list):
        inner = "".join(_element(child, text) for child, text in value)
    else:
        # Every other byte goes out raw, control bytes included (51_).
        inner = escape(value, _QUOTES_ESCAPED)
    return f"<{tag}>{inner}</{tag}>"


def unsupported(what: str) -> tuple[int, str, str]:
    return 2, "", f"torque emulator: not emulated: {what}\n"


def _core_ranges(cores: Sequence[int]) -> list[str]:
    runs: list[list[int]] = []
    for core in sorted(cores):
        if runs and core == runs[-1][1] + 1:
            runs[-1][1] = core
        else:
            runs.append([core, core])
    return [f"{first}-{last}" if last != first else f"{first}" for first, last in runs]


def exec_host(placement: Sequence[tuple[str, list[int]]]) -> str:
    """`vm/0-1+cn01/0`: each host with its cores, as pbs_server writes exec_host."""
    return "+".join(f"{name}/{','.join(_core_ranges(cores))}" for name, cores in placement)


def _node_jobs(slots: Mapping[int, str]) -> str:
    """`0-1/1.vm,2/5.vm`: runs of cores held by one job, in core order (14_, 31_)."""
    entries: list[str] = []
    run: list[int] = []
    for core in sorted(slots):
        if run and (core != run[-1] + 1 or slots[core] != slots[run[-1]]):
            entries.append(f"{_core_ranges(run)[0]}/{slots[run[-1]]}")
            run = []
        run.append(core)
    if run:
        entries.append(f"{_core_ranges(run)[0]}/{slots[run[-1]]}")
    return ",".join(entries)


def _wrap_status(status: str) -> str:
    """`qmgr list node` folds status at column 80 under a 17-column indent (05b_)."""
    indent = 17
    lines: list[str] = []
    line = ""
    items = status.split(",")
    for index, item in enumerate(items):
        piece = item + ("," if index < len(items) - 1 else "")
        if line and indent + len(line) + len(piece) > _WRAP_COLUMN:
            lines.append(line)
            line = ""
        line += piece
    lines.append(line)
    return ("\n" + " " * indent).join(lines)


def _print_list(prefix: str, values: Sequence[str]) -> str:
    return "".join(f"{prefix} {'=' if index == 0 else '+='} {value}\n"
                   for index, value in enumerate(values))


def _list_type_matches(list_type: str | None, state: str) -> bool:
    """pbsnodes -l filters (pbsnodes.c filterbystate)."""
    if list_type is None:
        return any(word in state for word in ("down", "offline", "state-unknown"))
    if list_type == "all":
        return True
    if list_type == "active":
        return any(word in state for word in ("busy", "job-exclusive", "job-sharing"))
    if list_type == "up":
        return not any(word in state for word in ("down", "offline", "state-unknown"))
    if list_type == "down":
        return "down" in state or "state-unknown" in state
    return list_type in state


def _state_count(counts: Mapping[str, int]) -> str:
    return (f"Transit:0 Queued:{counts['Q']} Held:{counts['H']} Waiting:0 "
            f"Running:{counts['R']} Exiting:0 Complete:{counts['C']} ")


class Rendering(ServerCore):
    """Renders the state as the real commands print it; it changes nothing."""

    def _qstat_table(self, jobs: list[JobEntry]) -> str:
        if not jobs:
            return ""
        lines = ["Job ID                    Name             User            Time Use S Queue",
                 "------------------------- ---------------- --------------- -------- - -----"]
        for job in jobs:
            # Only a job that ran has resources_used; qstat shows "0" for the others (30_).
            used = "00:00:00" if self._job_state(job) == "C" and job.exec_slots else "0"
            lines.append(f"{job.id:<26} {job.name[:16]:<16} {job.owner[:15]:<15} {used:>8} "
                         f"{self._job_state(job)} {job.queue:<15}")
        return "\n".join(lines) + "\n"

    def _job_state(self, job: JobEntry) -> str:
        if not job.children:
            return job.state
        states = {self._state.jobs[child].state for child in job.children}
        for letter in ("R", "Q", "H"):
            if letter in states:
                return letter
        return "C"

    def _job_xml(self, job: JobEntry) -> str:
        server = self._server
        state = self._job_state(job)
        now = self._state.now
        jobs = self._state.jobs
        mtime = max([job.mtime, *(jobs[child].mtime for child in job.children)])
        base_name = jobs[job.parent].name if job.parent else job.name
        suffix = f"{job.seq}-{job.array_index}" if job.parent else f"{job.seq}"
        fields: list[tuple[str, str | list[tuple[str, str]]]] = [
            ("Job_Id", job.id), ("Job_Name", job.name), ("Job_Owner", f"{job.owner}@localhost")]
        if state == "C" and job.exec_slots:
            elapsed = (job.comp_time or now) - (job.start_time or now)
            used = [("cput", "00:00:00"), ("vmem", "0kb"), ("walltime", hms(elapsed)),
                    ("mem", "0kb"), ("energy_used", "0")]
            if job.exit_status == EXIT_DELETED:
                used.sort()     # a killed job's usage comes back sorted by name (30_)
            fields.append(("resources_used", used))
        fields += [("job_state", state), ("queue", job.queue), ("server", server)]
        if job.account:
            fields.append(("Account_Name", job.account))
        fields += [("Checkpoint", "u"), ("ctime", epoch_text(job.ctime)),
                   ("Error_Path", f"{server}:/home/{job.owner}/{base_name}.e{suffix}")]
        if job.exec_slots:
            fields.append(("exec_host", exec_host(job.exec_slots)))
        if job.parent is None:
            fields.append(("Hold_Types", job.hold_types))
        fields += [("Join_Path", "n"), ("Keep_Files", "n"), ("Mail_Points", "a"),
                   ("mtime", epoch_text(mtime)),
                   ("Output_Path", f"{server}:/home/{job.owner}/{base_name}.o{suffix}"),
                   ("Priority", "0")]
        if job.qtime is not None:
            fields.append(("qtime", epoch_text(job.qtime)))
        fields += [("Rerunable", "True"), ("Resource_List", list(job.resources.items()))]
        if job.session_id is not None and job.exec_slots:
            fields.append(("session_id", str(job.session_id)))
        fields += [("substate", str(_SUBSTATES[state])),
                   ("Variable_List", ",".join(_ARST_SPECIAL.sub(r"\\\g<0>", variable)
                                              for variable in job.variables)),
                   ("euser", job.owner), ("egroup", job.owner)]
        if job.start_count:
            fields.append(("hashname", job.id))
        fields += [("queue_rank", str(job.queue_rank)), ("queue_type", "E")]
        if job.comment is not None and not job.children:
            fields.append(("comment", job.comment))
        if job.etime is not None:
            fields.append(("etime", epoch_text(job.etime)))
        if job.exit_status is not None:
            fields.append(("exit_status", str(job.exit_status)))
        fields.append(("submit_args", job.submit_args))
        if job.array_request is not None:
            fields.append(("job_array_request", job.array_request))
        if job.array_index is not None:
            fields.append(("job_array_id", str(job.array_index)))
        if job.start_time is not None:
            fields.append(("start_time", epoch_text(job.start_time)))
            limit = walltime_seconds(job.resources)
            if state == "R" and limit is not None:
                fields.append(("Walltime", [("Remaining",
                                             str(int(limit - (now - job.start_time))))]))
        if job.start_count:
            fields.append(("start_count", str(job.start_count)))
        fields.append(("fault_tolerant", "False"))
        if state == "C" and job.comp_time is not None and not job.children:
            fields.append(("comp_time", epoch_text(job.comp_time)))
        fields.append(("job_radix", "0"))
        if state == "C" and job.start_time is not None and job.comp_time is not None:
            fields.append(("total_runtime", f"{job.comp_time - job.start_time:.6f}"))
        fields += [("submit_host", server), ("init_work_dir", f"/home/{job.owner}"),
                   ("request_version", "1")]
        return "<Job>" + "".join(_element(tag, value) for tag, value in fields) + "</Job>"

    def _job_view(self, job: JobEntry) -> EmulatedJob:
        return EmulatedJob(
            id=job.id, name=job.name, owner=job.owner, queue=job.queue,
            state=self._job_state(job), resources=dict(job.resources),
            exec_host=exec_host(job.exec_slots) if job.exec_slots else None,
            comment=job.comment, exit_status=job.exit_status, account=job.account,
            array_parent=job.parent)

    def _node_state(self, node: NodeEntry) -> str:
        flags = [flag for flag, on in (("down", node.down), ("offline", node.offline),
                                       ("MOM-list-not-sent", node.list_not_sent)) if on]
        if flags:
            return ",".join(flags)
        if node.slots and len(node.slots) >= node.np:
            return "job-exclusive"
        return "free"

    def _node_attributes(self, node: NodeEntry, *, wrap_status: bool = False
                         ) -> list[tuple[str, str]]:
        pairs = [("state", self._node_state(node)), ("power_state", "Running"),
                 ("np", str(node.np))]
        if node.properties:
            pairs.append(("properties", ",".join(node.properties)))
        pairs.append(("ntype", "cluster"))
        if node.slots:
            pairs.append(("jobs", _node_jobs(node.slots)))
        if node.reported_at is not None:
            status = self._status_text(node)
            pairs.append(("status", _wrap_status(status) if wrap_status else status))
        if node.note:
            pairs.append(("note", node.note))
        pairs += [("mom_service_port", str(node.mom_service_port)),
                  ("mom_manager_port", str(node.mom_manager_port))]
        return pairs

    def _node_xml(self, node: NodeEntry) -> str:
        return "<Node>" + _element("name", node.name) + "".join(
            _element(key, value) for key, value in self._node_attributes(node)) + "</Node>"

    def _node_list(self, nodes: list[NodeEntry], list_type: str | None, notes: bool) -> str:
        lines = []
        for node in nodes:
            state = self._node_state(node)
            if not _list_type_matches(list_type, state):
                continue
            if notes and node.note:
                lines.append(f"{node.name[:20]:<20} {state[:26]:<26} {node.note}\n")
            else:
                lines.append(f"{node.name[:20]:<20} {state}\n")
        return "".join(lines)

    def _status_text(self, node: NodeEntry) -> str:
        """The mom's last status report; kept as it was once the mom dies (17_, 46_)."""
        reported_at = node.reported_at if node.reported_at is not None else self._state.now
        mom = self._state.moms.get(node.name)
        until = reported_at                      # a restarted mom has not reported yet
        if mom is not None and mom.up and mom.up_since <= reported_at:
            until = self._state.now
        elif mom is not None and mom.down_since is not None:
            until = max(mom.down_since, reported_at)
        last = reported_at + math.floor((until - reported_at) / self._status_interval) \
            * self._status_interval
        up_since = min(mom.up_since, reported_at) if mom is not None else reported_at
        jobs = []
        for job_id in dict.fromkeys(node.slots.values()):
            job = self._state.jobs.get(job_id)
            if job is not None and job.start_time is not None and job.start_time <= last:
                jobs.append(job)
        sessions = [str(1000 + zlib.crc32(node.name.encode()) % 9000)]
        sessions += [str(job.session_id) for job in jobs]
        mem_kb = node.status_mem_kb
        items = [
            "opsys=linux", f"uname=Linux {node.name} 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC "
            "@0 x86_64", f"sessions={' '.join(sessions)}", f"nsessions={len(sessions)}",
            f"nusers={2 if jobs else 1}", f"idletime={int(last - up_since)}",
            f"totmem={mem_kb}kb", f"availmem={mem_kb * 95 // 100}kb", f"physmem={mem_kb}kb",
            f"ncpus={node.status_ncpus}", f"loadave={len(jobs):.2f}", "gres=",
            f"netload={int((last - up_since) * 1000)}", "state=free", "varattr= ",
            "cpuclock=Fixed", f"version={PBS_VERSION}", f"rectime={int(last)}",
            f"jobs={' '.join(job.id for job in jobs)}"]
        return ",".join(items)

    def _node_view(self, node: NodeEntry) -> EmulatedNode:
        return EmulatedNode(
            name=node.name, state=self._node_state(node), np=node.np,
            properties=tuple(node.properties), note=node.note,
            jobs=tuple(dict.fromkeys(node.slots[core] for core in sorted(node.slots))),
            has_status=node.reported_at is not None, mom_up=self._mom_alive(node.name))

    def _print_server(self) -> str:
        attributes = dict(self._state.attributes)
        if self._state.next_job_number:
            attributes["next_job_number"] = str(self._state.next_job_number)
        names = [name for name in _SERVER_PRINT_ORDER if name in attributes]
        names += [name for name in attributes if name not in _SERVER_PRINT_ORDER]
        return "#\n# Set server attributes.\n#\n" + "".join(
            f"set server {name} = {attributes[name]}\n" for name in names)

    def _list_server(self, wanted: list[str]) -> str:
        counts = self._state_counts(self._state.jobs.values())
        attributes: dict[str, str] = {
            "server_state": "Active" if is_true(self._state.attributes.get("scheduling", ""))
            else "Idle",
            "total_jobs": str(sum(counts.values())), "state_count": _state_count(counts)}
        for name in _SERVER_PRINT_ORDER:
            if name in self._state.attributes:
                attributes[name] = self._state.attributes[name]
            if name == "mom_job_sync":
                attributes["pbs_version"] = PBS_VERSION
        if self._state.next_job_number:
            attributes["next_job_number"] = str(self._state.next_job_number)
        for name, value in self._state.attributes.items():
            attributes.setdefault(name, value)
        if wanted:
            attributes = {name: attributes[name] for name in wanted if name in attributes}
        return f"Server {self._server}\n" + "".join(
            f"\t{name} = {value}\n" for name, value in attributes.items()) + "\n"

    @staticmethod
    def _state_counts(jobs: Iterable[JobEntry]) -> dict[str, int]:
        """Jobs per state as qmgr counts them: array subjobs, not their parents (13_)."""
        counts = {"Q": 0, "H": 0, "R": 0, "C": 0}
        for job in jobs:
            if not job.children:
                counts[job.state] += 1
        return counts

    def _print_queues(self, queues: list[QueueEntry]) -> str:
        if not queues:
            return ""
        text = "#\n# Create queues and set their attributes.\n#\n"
        for queue in queues:
            text += f"#\n# Create and define queue {queue.name}\n#\ncreate queue {queue.name}\n"
            text += "".join(f"set queue {queue.name} {name} = {value}\n"
                            for name, value in self._queue_attribute_order(queue))
        return text

    def _queue_attribute_order(self, queue: QueueEntry) -> list[tuple[str, str]]:
        attributes = queue.attributes
        head = [("queue_type", attributes["queue_type"])] if "queue_type" in attributes else []
        tail = [(name, attributes[name]) for name in ("enabled", "started") if name in attributes]
        middle = [(name, value) for name, value in attributes.items()
                  if name not in ("queue_type", "enabled", "started")]
        return head + middle + tail

    def _list_queue(self, queue: QueueEntry) -> str:
        jobs = [job for job in self._state.jobs.values() if job.queue == queue.name]
        counts = self._state_counts(jobs)
        ordered = self._queue_attribute_order(queue)
        head = [pair for pair in ordered if pair[0] == "queue_type"]
        tail = [pair for pair in ordered if pair[0] in ("enabled", "started")]
        middle = [pair for pair in ordered if pair not in head and pair not in tail]
        lines = [*head, ("total_jobs", str(sum(counts.values()))),
                 ("state_count", _state_count(counts)), *middle,
                 ("mtime", f"{utc_datetime(queue.created):%a %b %d %H:%M:%S %Y}")]
        assigned = sum(int(job.resources.get("nodect", "0")) for job in jobs
                       if job.state == "R" and not job.children)
        if assigned:
            lines.append(("resources_assigned.nodect", str(assigned)))
        lines += tail
        return f"Queue {queue.name}\n" + "".join(f"\t{name} = {value}\n"
                                                 for name, value in lines) + "\n"

    def _print_nodes(self, nodes: list[NodeEntry]) -> str:
        text = "#\n# Create nodes and set their properties.\n#\n"
        for node in nodes:
            name = node.name
            text += f"#\n# Create and define node {name}\n#\ncreate node {name}\n"
            text += _print_list(f"set node {name} state", self._node_state(node).split(","))
            text += f"set node {name} np = {node.np}\n"
            text += _print_list(f"set node {name} properties", node.properties)
            text += f"set node {name} ntype = cluster\n"
            if node.reported_at is not None:
                text += _print_list(f"set node {name} status",
                                    self._status_text(node).split(","))
            if node.note:
                text += f"set node {name} note = {node.note}\n"
        return text

    def _unreachable(self, command: str) -> tuple[int, str, str]:
        """What each client prints when pbs_server (and maybe trqauthd) is down (48_)."""
        server = self._server
        if self._state.trqauthd_down:
            socket = "socket_connect_unix failed: 15137\n"
            reason = "(errno=15137) could not connect to trqauthd"
            if command == "qstat":
                return 33, "", (socket * 3 + f"qstat: cannot connect to server (null) {reason}\n"
                                "qstat: Error (15137 - could not connect to trqauthd) \n")
            if command == "pbsnodes":
                return 1, "", (socket + f"pbsnodes: cannot connect to server {server}, "
                               "error=15137 (could not connect to trqauthd)\n")
            if command == "qmgr":
                return 3, "", socket + f"qmgr: cannot connect to server  {reason}\n"
            return 33, "", socket + f"{command}: cannot connect to server (null) {reason}\n"
        attempt = (f"\nUnable to communicate with {server}({_SERVER_ADDRESS})\n"
                   f"Cannot connect to specified server host '{server}'.\n")
        if command == "qstat":
            return 111, "", (attempt * 3 + f"qstat: cannot connect to server {server} "
                             "(errno=111) Connection refused\n"
                             "qstat: Error (111 - Connection refused) \n")
        if command == "pbsnodes":
            return 1, "", (attempt + f"pbsnodes: cannot connect to server {server}, "
                           "error=111 (Connection refused)\n")
        if command == "qmgr":
            return 3, "", (attempt + "qmgr: cannot connect to server  (errno=111) "
                           "Connection refused\n")
        return 111, "", (attempt + f"{command}: cannot connect to server {server} (errno=111) "
                         "Connection refused\n")
