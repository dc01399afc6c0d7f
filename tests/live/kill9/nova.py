"""Nova as the harness sees it: its API for the servers alive, its cell databases for every
server it ever had (the API keeps no metadata for deleted ones); and a novastack of the
bench's own.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint
from novaclient import client as nova_client

from dtserver.cloud.nova import CLUSTER_KEY, RECORD_KEY
from dtserver.model import announces_entry
from tests.tooling.novastack.plugin import MICROVERSION, LiveNova

def nova_client_for(live: LiveNova, user: str = "admin") -> Any:
    """A novaclient of our own (each thread gets its own session)."""
    session = ks_session.Session(auth=token_endpoint.Token(
        live.endpoint.url, live.endpoint.token(user)), timeout=30)
    return nova_client.Client(MICROVERSION, session=session)


@dataclass(frozen=True)
class Server:
    """A Nova server of ours, alive or deleted, with its ownership metadata."""

    id: str
    name: str
    created: datetime
    deleted: datetime | None
    record_id: str | None
    status: str = ""
    task_state: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    vcpus: int = 1
    ram: int = 128

    @property
    def alive(self) -> bool:
        return self.deleted is None

    @property
    def entry_announced(self) -> bool:
        return announces_entry(dict(self.metadata))


def live_servers(client: Any, cluster_id: str) -> list[Server]:
    """The project's servers that carry our cluster in their metadata (the API's view).
    Paging with a marker can list a server twice (Nova moving it from its build request
    into the cell between two pages): each id counts once."""
    found = []
    seen = set()
    for server in client.servers.list(limit=-1):
        metadata = dict(getattr(server, "metadata", None) or {})
        if metadata.get(CLUSTER_KEY) != cluster_id or server.id in seen:
            continue
        seen.add(server.id)
        flavor = getattr(server, "flavor", None) or {}
        found.append(Server(
            id=server.id, name=server.name, created=_time(server.created), deleted=None,
            record_id=metadata.get(RECORD_KEY), status=server.status,
            task_state=getattr(server, "OS-EXT-STS:task_state", None),
            metadata=tuple(sorted(metadata.items())),
            vcpus=int(flavor.get("vcpus", 1)), ram=int(flavor.get("ram", 128))))
    return found


def nova_databases(live: LiveNova) -> tuple[Path, ...]:
    """The cell databases of the running novastack (its state directory holds clouds.yaml,
    written by plugin.prepare, and data/, written by NovaStack)."""
    data = live.clouds_yaml.parent / "data"
    found = tuple(path for path in (data / "nova_cell1.sqlite", data / "nova_cell0.sqlite")
                  if path.exists())
    if not found:
        raise RuntimeError(f"no Nova cell databases under {data}")
    return found


def server_history(databases: Iterable[Path], cluster_id: str) -> list[Server]:
    """Every server Nova ever had for our cluster, deleted ones included, from its cell
    databases: the API keeps no metadata for deleted servers, the database does."""
    servers = []
    for path in databases:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            rows = connection.execute(
                "SELECT i.uuid, i.display_name, i.created_at, i.deleted_at, i.deleted, m.key, "
                "m.value FROM instances i JOIN instance_metadata m ON m.instance_uuid = i.uuid "
                "WHERE m.key IN (?, ?)", (CLUSTER_KEY, RECORD_KEY)).fetchall()
        finally:
            connection.close()
        by_id: dict[str, dict[str, Any]] = {}
        for uuid, name, created, deleted_at, deleted, key, value in rows:
            entry = by_id.setdefault(uuid, {"name": name, "created": created,
                                            "deleted": deleted_at if deleted else None})
            entry[key] = value
        for uuid, entry in by_id.items():
            if entry.get(CLUSTER_KEY) != cluster_id:
                continue
            servers.append(Server(id=uuid, name=entry["name"], created=_db_time(entry["created"]),
                                  deleted=_db_time(entry["deleted"]) if entry["deleted"] else None,
                                  record_id=entry.get(RECORD_KEY)))
    return servers


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _db_time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@dataclass
class NovaForBench:
    """A novastack of the bench's own (the tests use the session fixture instead)."""

    directory: Path
    stack: Any = None

    def __enter__(self) -> LiveNova:
        from tests.tooling.novastack.plugin import prepare
        from tests.tooling.novastack.stack import HarnessVenv, NovaStack, default_home

        venv = HarnessVenv(default_home())
        venv.ensure()
        self.stack = NovaStack(venv, self.directory)
        endpoint = self.stack.start()
        return prepare(endpoint, self.directory)

    def __exit__(self, *exc_info: object) -> None:
        if self.stack is not None:
            self.stack.stop()
