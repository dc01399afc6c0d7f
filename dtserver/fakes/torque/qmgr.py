"""qmgr on the emulated server: server, queue and node attributes, node create and
delete (the command language itself is read by qmgr_parse.py).
"""
from __future__ import annotations

import getopt
import logging
from typing import Callable

from dtserver import nodespec
from dtserver.fakes.torque.qmgr_parse import QmgrCommand, QmgrError, parse_qmgr
from dtserver.fakes.torque.render import HIERARCHY_NOT_SENT, Rendering, unsupported
from dtserver.fakes.torque.scheduler import Scheduler, node_count, normalize_resource
from dtserver.fakes.torque.state import (
    FALSE_WORDS, HIERARCHY, NodeEntry, QueueEntry, TRUE_WORDS, is_true)

logger = logging.getLogger(__name__)

_NODE_ATTRIBUTES = frozenset({"np", "properties", "note", "ntype", "state",
                              "mom_service_port", "mom_manager_port"})
_BOOLEAN_SERVER_ATTRIBUTES = frozenset({
    "scheduling", "query_other_jobs", "poll_jobs", "down_on_error", "mom_job_sync",
    "auto_node_np", "record_job_info", "moab_array_compatible", "note_append_on_error"})


def _boolean_text(value: str, kind: str, name: str) -> str:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return "True"
    if word in FALSE_WORDS:
        return "False"
    obj = "" if kind == "server" else name
    raise QmgrError(f"qmgr obj={obj} svr=default: Illegal attribute or resource value for\n")


def _setter(node: NodeEntry, name: str, value: object) -> Callable[[], None]:
    return lambda: setattr(node, name, value)


def _property_change(node: NodeEntry, operator: str, words: list[str]) -> Callable[[], None]:
    def change() -> None:
        if operator == "=":
            node.properties = list(dict.fromkeys(words))
        elif operator == "+=":
            node.properties += [word for word in words if word not in node.properties]
        else:
            node.properties = [word for word in node.properties if word not in words]
    return change


def _state_change(node: NodeEntry, operator: str, flags: set[str]) -> Callable[[], None]:
    """qmgr `set node X state`: it overwrites down, unlike pbsnodes -o (09_)."""
    def change() -> None:
        wanted = flags - {"free"}
        if operator == "=":
            node.down, node.offline = "down" in wanted, "offline" in wanted
        elif operator == "+=":
            node.down = node.down or "down" in wanted
            node.offline = node.offline or "offline" in wanted
        else:
            node.down = node.down and "down" not in wanted
            node.offline = node.offline and "offline" not in wanted
    return change


class QmgrCommands(Scheduler, Rendering):
    """The qmgr command: `-c` commands on the server, queues and nodes."""

    def _qmgr(self, args: list[str], stdin: bytes | None) -> tuple[int, str, str]:
        try:
            options, _ = getopt.getopt(args, "ac:enz")
        except getopt.GetoptError:
            return 1, "", "Usage: qmgr [-a] [-c command] [-e] [-n] [-z] [server...]\n"
        commands = [value for option, value in options if option == "-c"]
        if not commands:
            return unsupported("qmgr reading commands from stdin")
        text = commands[-1]
        try:
            command = parse_qmgr(text)
            handler = {"server": self._qmgr_server, "queue": self._qmgr_queue,
                       "node": self._qmgr_node}[command.kind]
            return handler(command)
        except QmgrError as error:
            return error.status, "", error.stderr

    def _qmgr_server(self, command: QmgrCommand) -> tuple[int, str, str]:
        attributes = self._state.attributes
        if command.verb == "print":
            return 0, self._print_queues(list(self._state.queues.values())) \
                + self._print_server(), ""
        if command.verb == "list":
            wanted = [name for name, _, _ in command.attributes]
            return 0, self._list_server(wanted), ""
        if command.verb == "unset":
            for name, _, _ in command.attributes:
                # `unset server scheduler_iteration` keeps the value (47_).
                if name != "scheduler_iteration":
                    attributes.pop(name, None)
            return 0, "", ""
        if command.verb != "set":
            return unsupported(f"qmgr {command.verb} server")
        poke = False
        for name, operator, value in command.attributes:
            illegal = QmgrError("qmgr obj= svr=default: Illegal attribute or resource value "
                                f"for  {name}\n")
            if name in _BOOLEAN_SERVER_ATTRIBUTES:
                value = _boolean_text(value, "server", self._server)
            elif name in ("scheduler_iteration", "keep_completed", "next_job_number"):
                # A zero iteration would make the periodic cycle due again at once, forever.
                lowest = 1 if name == "scheduler_iteration" else 0
                if not value.isdigit() or int(value) < lowest:
                    raise illegal
            if operator != "=":
                if name in _BOOLEAN_SERVER_ATTRIBUTES or name == "next_job_number":
                    raise illegal
                # managers, operators, acl_hosts...: += and -= edit a comma list (02_).
                items = [item for item in attributes.get(name, "").split(",") if item]
                if operator == "+=":
                    items += [item for item in value.split(",") if item not in items]
                else:
                    items = [item for item in items if item not in value.split(",")]
                value = ",".join(items)
            if name == "next_job_number":
                self._state.next_job_number = int(value)
                continue
            attributes[name] = value
            if name == "scheduler_iteration":
                self._schedule_cycle(self._state.now + float(value))
            poke = poke or (name == "scheduling" and value == "True")
        if poke:
            # Setting scheduling starts a cycle at once (47_).
            self._cycle()
        return 0, "", ""

    def _qmgr_queue(self, command: QmgrCommand) -> tuple[int, str, str]:
        queues = self._state.queues
        name = command.name
        if command.verb in ("list", "print") and not name:
            selected = list(queues.values())
        elif command.verb == "create":
            if not name:
                raise QmgrError("qmgr: Syntax error - no name specified\n")
            if name in queues:
                raise QmgrError(f"qmgr obj={name} svr=default: Queue already exists\n")
            queues[name] = QueueEntry(name, self._state.now, {})
            self._apply_queue_attributes(queues[name], command.attributes)
            return 0, "", ""
        else:
            if not name or name not in queues:
                message = "Unknown queue"
                if command.verb == "list":
                    message += f" MSG=cannot locate queue {name}"
                raise QmgrError(f"qmgr obj={name} svr=default: {message}\n")
            selected = [queues[name]]
        if command.verb == "print":
            return 0, self._print_queues(selected), ""
        if command.verb == "list":
            return 0, "".join(self._list_queue(queue) for queue in selected), ""
        queue = selected[0]
        if command.verb == "delete":
            if any(job.queue == queue.name for job in self._state.jobs.values()):
                raise QmgrError(f"qmgr obj={queue.name} svr=default: Cannot delete busy "
                                "queue\n")
            del queues[queue.name]
            return 0, "", ""
        if command.verb == "set":
            self._apply_queue_attributes(queue, command.attributes)
            return 0, "", ""
        if command.verb == "unset":
            for attribute, _, _ in command.attributes:
                queue.attributes.pop(attribute, None)
                self._propagate_default(queue, attribute, None)
            return 0, "", ""
        return unsupported(f"qmgr {command.verb} queue")

    def _apply_queue_attributes(self, queue: QueueEntry,
                                attributes: tuple[tuple[str, str, str], ...]) -> None:
        for name, _, value in attributes:
            if name in ("enabled", "started"):
                value = _boolean_text(value, "queue", queue.name)
            elif name == "queue_type":
                value = {"e": "Execution", "r": "Route"}.get(value[:1].lower(), value)
            elif name.startswith("resources_"):
                try:
                    value = normalize_resource(name.partition(".")[2], value)
                except nodespec.RequestError:
                    raise QmgrError(f"qmgr obj={queue.name} svr=default: Illegal attribute "
                                    "or resource value for\n") from None
            queue.attributes[name] = value
            self._propagate_default(queue, name, value)

    def _propagate_default(self, queue: QueueEntry, attribute: str, value: str | None) -> None:
        """A changed default reaches queued jobs that took the old one (42_)."""
        prefix, _, resource = attribute.partition(".")
        if prefix != "resources_default":
            return
        for job in self._state.jobs.values():
            if job.queue != queue.name or job.state not in ("Q", "H") \
                    or resource not in job.defaulted:
                continue
            derived = ("nodect", "neednodes") if resource == "nodes" else ()
            for key in (resource, *derived):
                job.resources.pop(key, None)
            if value is None:
                job.defaulted.remove(resource)
                continue
            job.resources[resource] = value
            if resource == "nodes":
                job.resources["nodect"] = str(node_count(value))
                job.resources["neednodes"] = value

    def _qmgr_node(self, command: QmgrCommand) -> tuple[int, str, str]:
        nodes = self._state.nodes
        names = [name for name in (command.name or "").split(",") if name]
        if command.verb in ("list", "print"):
            if not names:
                return 0, "", "No Active Nodes, nothing done.\n"
            if names == ["@default"]:
                selected = list(nodes.values())
            else:
                for name in names:
                    if name not in nodes:
                        raise QmgrError(f"qmgr obj={name} svr=default: Unknown node  "
                                        "MSG=cannot locate specified node\n")
                selected = [nodes[name] for name in names]
            if command.verb == "list":
                return 0, "".join(
                    f"Node {node.name}\n" + "".join(
                        f"\t{key} = {value}\n"
                        for key, value in self._node_attributes(node, wrap_status=True)) + "\n"
                    for node in selected), ""
            return 0, self._print_nodes(selected), ""
        if not names:
            raise QmgrError("qmgr: Syntax error - no name specified\n")
        if command.verb == "create":
            for name in names:
                self._create_node(name, command.attributes)
            return 0, "", ""
        for name in names:
            if name not in nodes:
                raise QmgrError(f"qmgr obj={name} svr=default: Unknown node \n")
        for name in names:
            if command.verb == "delete":
                self._delete_node(nodes[name])
            elif command.verb == "set":
                self._set_node(nodes[name], command.attributes)
            elif command.verb == "unset":
                for attribute, _, _ in command.attributes:
                    if attribute == "note":
                        nodes[name].note = None
                    elif attribute == "properties":
                        nodes[name].properties = []
            else:
                return unsupported(f"qmgr {command.verb} node")
        return 0, "", ""

    def _create_node(self, name: str, attributes: tuple[tuple[str, str, str], ...]) -> None:
        state = self._state
        if name in state.nodes:
            raise QmgrError(f"qmgr obj={name} svr=default: Node name already exists\n")
        if self._resolvable is not None and not self._resolvable(name):
            raise QmgrError(f"qmgr obj={name} svr=default: Unknown node \n")
        now = state.now
        state.next_serial += 1
        node = NodeEntry(name=name, serial=state.next_serial, np=1, properties=[],
                         hierarchy_at=now + self._hierarchy_delay)
        self._apply_node_attributes(node, attributes, creating=True)
        state.nodes[name] = node
        self._push(node.hierarchy_at, HIERARCHY, name, node.serial)
        mom = state.moms.get(name)
        if mom is not None and mom.up:
            # A running mom's statuses found no entry and were dropped ("address not
            # trusted"); the server hears the next one the mom sends on its cadence.
            self._schedule_report(node, self._next_status_send(mom) + self._mom_hello_delay)
        logger.info("node created node=%s np=%d properties=%s", name, node.np,
                    ",".join(node.properties))

    def _delete_node(self, node: NodeEntry) -> None:
        """Succeeds with jobs on the node: they are killed and requeued (45_)."""
        for job_id in dict.fromkeys(node.slots.values()):
            job = self._state.jobs.get(job_id)
            if job is not None and job.state == "R":
                self._requeue(job)
        del self._state.nodes[node.name]
        # A delete rewrites node_status but leaves node_note as it was (mgr_node_delete).
        self._save_offline_nodes()
        logger.info("node deleted node=%s", node.name)

    def _set_node(self, node: NodeEntry, attributes: tuple[tuple[str, str, str], ...]) -> None:
        np_before, offline_before, note_before = node.np, node.offline, node.note
        self._apply_node_attributes(node, attributes, creating=False)
        self._save_changed_node_files(node, offline_before, note_before)
        if node.np != np_before and is_true(self._state.attributes.get("auto_node_np", "")):
            due = self._next_periodic_report(node)
            if due is not None:
                self._schedule_report(node, due)

    def _apply_node_attributes(self, node: NodeEntry,
                               attributes: tuple[tuple[str, str, str], ...], *,
                               creating: bool) -> None:
        """Validate every attribute first: a refused command changes nothing (05_)."""
        bad_value = f"qmgr obj={node.name} svr=default: Illegal attribute or resource value for\n"
        changes: list[Callable[[], None]] = []
        for name, operator, value in attributes:
            if name not in _NODE_ATTRIBUTES:
                raise QmgrError(f"qmgr obj={node.name} svr=default: Undefined attribute  "
                                f"{name}\n")
            if name in ("np", "mom_service_port", "mom_manager_port"):
                if not value.isdigit() or int(value) < 1 or operator != "=":
                    raise QmgrError(bad_value)
                changes.append(_setter(node, name, int(value)))
            elif name == "properties":
                words = [word for word in value.split(",") if word]
                changes.append(_property_change(node, operator, words))
            elif name == "note":
                changes.append(_setter(node, "note", value or None))
            elif name == "ntype":
                if value != "cluster":
                    raise QmgrError(bad_value)
            else:
                flags = set(value.split(","))
                if not flags <= {"free", "down", "offline"}:
                    raise QmgrError(bad_value)
                if node.list_not_sent and not creating:
                    raise QmgrError(f"qmgr obj={node.name} svr=default: "
                                    f"{HIERARCHY_NOT_SENT}\n")
                changes.append(_state_change(node, operator, flags))
        for change in changes:
            change()
