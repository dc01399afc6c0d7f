"""Checks, from Nova (its API, and its cell databases for servers already deleted, with their
ownership metadata) and TORQUE (the emulator's saved server state), besides our store:
- duplicate creates: two servers ever made for one record id, or two servers of one
  hostname alive at once;
- busy deletes: a server gone while TORQUE ran a job on its node, a job requeued (its
  node entry deleted under it), or a job started twice;
- orphan node entries: an entry that is neither an empty slot (the slot note) nor bound to
  a live server of that name, or a name that is not a slot;
- leaks: after the run settles, any server of ours left (while running, servers no live
  record explains are noted with the kill after which they were first seen);
- every job ran once and exited 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from dtserver.fakes.torque.persistence import open_server
from dtserver.model import NodeRecord, NodeState
from dtserver.planning.repair import SLOT_NOTE
from tests.live.kill9.nova import Server, live_servers, nova_client_for, server_history
from tests.live.kill9.reconciler import Site

@dataclass
class Violation:
    what: str                        # "duplicate", "busy deleted", "orphan entry", "leak", ...
    detail: str
    kill: int                        # the number of kills done when it was seen

    def __str__(self) -> str:
        return f"[after kill {self.kill}] {self.what}: {self.detail}"


@dataclass
class Snapshot:
    records: tuple[NodeRecord, ...]
    servers: list[Server]                  # alive, from the API
    history: list[Server]                  # every server ever, from Nova's databases
    nodes: dict[str, Any]                  # TORQUE node entries (EmulatedNode)
    jobs: dict[str, dict[str, Any]]        # the emulator's saved jobs (plain values)


class Checker:
    def __init__(self, site: Site, databases: Sequence[Path]) -> None:
        self.site = site
        self.databases = databases
        self.client = nova_client_for(site.live)
        self.violations: list[Violation] = []
        self.unexplained: dict[str, int] = {}       # server id -> kill after which first seen

    def snapshot(self) -> Snapshot:
        with open_server(self.site.home) as torque:
            nodes = {node.name: node for node in torque.emulator.nodes()}
            jobs = dict(torque.emulator.to_state()["jobs"])
        return Snapshot(records=self.site.records(),
                        servers=live_servers(self.client, self.site.cluster_id),
                        history=server_history(self.databases, self.site.cluster_id),
                        nodes=nodes, jobs=jobs)

    def check(self, snapshot: Snapshot, kill: int, *, settled: bool = False) -> list[Violation]:
        """The invariants that hold at every moment; with `settled`, also the final state."""
        found: list[Violation] = []
        found += self._duplicates(snapshot, kill)
        found += self._orphan_entries(snapshot, kill, settled=settled)
        found += self._jobs(snapshot, kill)
        self._note_unexplained(snapshot, kill)
        if settled:
            found += self._leaks(snapshot, kill)
        new = [item for item in found if not any(
            old.what == item.what and old.detail == item.detail for old in self.violations)]
        self.violations += new
        return new

    def _duplicates(self, snapshot: Snapshot, kill: int) -> list[Violation]:
        found = []
        by_record: dict[str, list[Server]] = {}
        by_name: dict[str, list[Server]] = {}
        for server in snapshot.history:
            by_record.setdefault(server.record_id or "?", []).append(server)
            by_name.setdefault(server.name, []).append(server)
        for record_id, servers in by_record.items():
            if len(servers) > 1:
                found.append(Violation("duplicate", f"record {record_id}: {len(servers)} servers "
                                       f"{sorted((s.name, s.id) for s in servers)}", kill))
        for name, servers in by_name.items():
            servers.sort(key=lambda server: server.created)
            for earlier, later in zip(servers, servers[1:]):
                # created_at keeps whole seconds: alive at once only when certainly so.
                end = earlier.deleted or datetime.max.replace(tzinfo=timezone.utc)
                if later.created + timedelta(seconds=1) <= end:
                    found.append(Violation("duplicate", f"{name}: servers {earlier.id} and "
                                           f"{later.id} alive at once", kill))
        return found

    def _orphan_entries(self, snapshot: Snapshot, kill: int, *, settled: bool
                        ) -> list[Violation]:
        found = []
        alive_names = {server.name for server in snapshot.servers}
        for name, node in snapshot.nodes.items():
            if name not in self.site.slot_names:
                found.append(Violation("orphan entry", f"{name} is no slot ({node.state})", kill))
            elif node.note != SLOT_NOTE and name not in alive_names:
                found.append(Violation("orphan entry", f"{name} ({node.state}, note "
                                       f"{node.note!r}) is neither an empty slot nor an "
                                       "instance", kill))
            elif settled and (node.note != SLOT_NOTE or "offline" not in node.state
                              or node.jobs):
                found.append(Violation("orphan entry", f"{name} not an empty slot after the "
                                       f"run settled ({node.state}, note {node.note!r})", kill))
        if settled:
            for name in self.site.slot_names:
                if name not in snapshot.nodes:
                    found.append(Violation("orphan entry", f"slot {name} missing", kill))
        return found

    def _jobs(self, snapshot: Snapshot, kill: int) -> list[Violation]:
        return [Violation("busy deleted", f"job {job_id} started {job['start_count']} times",
                          kill)
                for job_id, job in snapshot.jobs.items() if job.get("start_count", 0) > 1]

    def _note_unexplained(self, snapshot: Snapshot, kill: int) -> None:
        live = {record.id for record in snapshot.records if record.state is not NodeState.DELETED}
        owned = {record.instance_id for record in snapshot.records
                 if record.state is not NodeState.DELETED and record.instance_id}
        for server in snapshot.servers:
            if server.record_id not in live and server.id not in owned:
                self.unexplained.setdefault(server.id, kill)

    def _leaks(self, snapshot: Snapshot, kill: int) -> list[Violation]:
        found = []
        records = {record.id: record for record in snapshot.records}
        for server in snapshot.servers:
            record = records.get(server.record_id or "")
            found.append(Violation("leak", f"server {server.id} ({server.name}, "
                                   f"{server.status}/{server.task_state}) left; its record "
                                   f"{record.state.value if record else 'does not exist'}; "
                                   f"first unexplained after kill "
                                   f"{self.unexplained.get(server.id, '-')}", kill))
        return found


def describe(site: Site, snapshot: Snapshot) -> str:
    records = [(r.hostname, r.state.value, (r.instance_id or "")[:8]) for r in snapshot.records
               if r.state is not NodeState.DELETED]
    servers = [(s.name, s.id[:8], s.status, s.task_state) for s in snapshot.servers]
    nodes = [(n.name, n.state, n.note, n.jobs) for n in snapshot.nodes.values()]
    running = [(key, job["state"]) for key, job in snapshot.jobs.items() if job["state"] != "C"]
    return f"records={records}\nservers={servers}\nnodes={nodes}\njobs not done={running}"
