"""qstat, qdel and pbsnodes on the emulated server."""
from __future__ import annotations

import getopt
import logging
import shlex

from dtserver.fakes.torque.render import HIERARCHY_NOT_SENT, Rendering, unsupported
from dtserver.fakes.torque.scheduler import Scheduler
from dtserver.fakes.torque.state import EXIT_DELETED, JobEntry, NodeEntry

logger = logging.getLogger(__name__)

_NO_NODE_LIST = ("pbsnodes: Server has no node list MSG=node list is empty - check "
                 "'server_priv/nodes' file\n")
_PBSNODES_USAGE = ("usage:\tpbsnodes [-{c|d|l|o|p|r}] [-s server] [-n] [-N \"note\"] [-q] "
                   "node ...\n\tpbsnodes [-{a|x}] [-s server] [-q] [node]\n")
_PBSNODES_LIST_TYPES = ("free", "offline", "down", "reserve", "job-exclusive", "job-sharing",
                        "busy", "state-unknown", "time-shared", "active", "all", "up")


class ClientCommands(Scheduler, Rendering):
    """The client commands that read jobs and nodes, delete jobs and mark nodes."""

    def _qdel(self, args: list[str], stdin: bytes | None) -> tuple[int, str, str]:
        try:
            options, rest = getopt.getopt(args, "acpm:t:W:b:")
        except getopt.GetoptError:
            options, rest = [], []
        if options or not rest or any(word.lower() == "all" for word in rest):
            return unsupported(shlex.join(["qdel", *args]))
        status, errors = 0, []
        for word in rest:
            job = self._find_job(word)
            if job is None:
                status = 153
                errors.append(f"qdel: nonexistent job id: {word}\n")
                continue
            targets = [self._state.jobs[child] for child in job.children] or [job]
            if all(target.state == "C" for target in targets):
                status = 170
                errors.append("qdel: Request invalid for state of job MSG=invalid state for "
                              f"job - COMPLETE {job.id}\n")
                continue
            ended = False
            for target in targets:
                if target.state == "R":
                    self._complete(target, EXIT_DELETED)
                    ended = True
                elif target.state in ("Q", "H"):
                    self._complete(target, None)
            if ended:
                self._cycle()
        return status, "", "".join(errors)

    def _qstat(self, args: list[str], stdin: bytes | None) -> tuple[int, str, str]:
        try:
            options, rest = getopt.getopt(args, "fxt1aeinrsuGMQBW:")
        except getopt.GetoptError:
            return 2, "", ("usage: qstat [-f [-1]] [-W site_specific] [-x] [-t] "
                           "[ job_identifier... ]\n")
        flags = {option for option, _ in options}
        if flags - {"-f", "-x", "-t"} or ("-f" in flags and "-x" not in flags):
            return unsupported(shlex.join(["qstat", *args]))
        expand = "-t" in flags
        status, errors = 0, []
        if rest:
            selected: list[JobEntry] = []
            for word in rest:
                job = self._find_job(word)
                if job is None:
                    status = 153
                    errors.append(f"qstat: Unknown Job Id Error {self._full_job_id(word)}\n")
                elif expand and job.children:
                    selected.extend(self._state.jobs[child] for child in job.children)
                else:
                    selected.append(job)
        elif expand:
            selected = [job for job in self._state.jobs.values() if not job.children]
        else:
            selected = [job for job in self._state.jobs.values() if job.parent is None]
        if "-x" in flags:
            if rest and not selected:
                return status, "", "".join(errors)
            body = "".join(self._job_xml(job) for job in selected)
            return status, f'<?xml version="1.0"?>\n<Data>{body}</Data>\n', "".join(errors)
        return status, self._qstat_table(selected), "".join(errors)

    def _pbsnodes(self, args: list[str], stdin: bytes | None) -> tuple[int, str, str]:
        try:
            options, rest = getopt.getopt(args, "acdlopqrs:xN:n")
        except getopt.GetoptError:
            return 1, "", _PBSNODES_USAGE
        mode, xml, note, list_notes = "all", False, None, False
        for option, value in options:
            if option in ("-a", "-x"):
                mode, xml = "all", xml or option == "-x"
            elif option in ("-c", "-l", "-o", "-r", "-d", "-p"):
                mode = {"-c": "clear", "-l": "list", "-o": "offline", "-r": "reset",
                        "-d": "diag", "-p": "purge"}[option]
            elif option == "-N":
                mode = "note" if mode == "all" else mode
                note = "" if value == "n" else value
            elif option == "-n":
                list_notes = True
        if list_notes and mode != "list":
            return 1, "", "Error: -n requires -l\n" + _PBSNODES_USAGE
        if any(not word for word in rest):
            return 1, "", _PBSNODES_USAGE
        if mode in ("diag", "purge"):
            return unsupported(shlex.join(["pbsnodes", *args]))
        if mode in ("clear", "reset", "offline", "note"):
            return 0, "", "".join(self._mark_node(name, mode, note) for name in rest)
        if mode == "list":
            list_type = None
            if rest and rest[0].lower() in _PBSNODES_LIST_TYPES:
                list_type = rest.pop(0).lower()
            nodes = self._stat_nodes(rest)
            if isinstance(nodes, str):
                return 1, "", nodes
            return 0, self._node_list(nodes, list_type, list_notes), ""
        nodes = self._stat_nodes(rest)
        if isinstance(nodes, str):
            return 1, "", nodes
        if xml:
            return 0, "<Data>" + "".join(self._node_xml(node) for node in nodes) + "</Data>\n", ""
        text = "".join(node.name + "\n" + "".join(f"     {key} = {value}\n" for key, value
                                                  in self._node_attributes(node)) + "\n"
                       for node in nodes)
        return 0, text, ""

    def _stat_nodes(self, names: list[str]) -> list[NodeEntry] | str:
        nodes = self._state.nodes
        if not nodes:
            return _NO_NODE_LIST
        if not names:
            return list(nodes.values())
        for name in names:
            if name not in nodes:
                return "pbsnodes: Unknown node  MSG=cannot locate specified node\n"
        return [nodes[name] for name in names]

    def _mark_node(self, name: str, mode: str, note: str | None) -> str:
        """-o/-c/-r/-N on one node; pbsnodes reports a failure on stderr and exits 0."""
        node = self._state.nodes.get(name)
        if node is None:
            return f"Error setting note attribute for {name} - Unknown node \n"
        if mode != "note" and node.list_not_sent:
            # -o/-c/-r go as a `state` attribute in one request with -N's note, and
            # node_state() refuses any new state while the hierarchy is not sent, even an
            # unchanged one; the whole request fails (source: node_state ATR_ACTION_ALTER,
            # pbsnodes.c set_all_nodeattrs).
            return f"Error setting note attribute for {name} - {HIERARCHY_NOT_SENT}\n"
        offline_before, note_before = node.offline, node.note
        if note is not None:
            node.note = note or None
        if mode == "offline":
            node.offline = True
        elif mode == "clear":
            node.offline = False
        elif mode == "reset":
            node.offline = False
            node.down = True
            due = self._next_periodic_report(node)
            if due is not None:
                self._schedule_report(node, due)
        self._save_changed_node_files(node, offline_before, note_before)
        logger.info("node marked node=%s mode=%s note=%s", name, mode, note)
        return ""
