"""SqliteStore: the Store on one SQLite file in WAL mode.

Several processes share the file: gunicorn workers write hints and intents, the
reconciler writes the rest. Every write is one short BEGIN IMMEDIATE transaction, so
writers queue on SQLite's lock (within the busy timeout) instead of failing half-way,
and readers never block them (WAL).
"""
from __future__ import annotations

import enum
import functools
import json
import logging
import os
import re
import sqlite3
import threading
import time
from contextlib import closing, contextmanager
from dataclasses import fields
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

from dtserver.actions import Plan
from dtserver.model import (
    DrainKind,
    ErrorKind,
    Flavor,
    HintStrikes,
    Intent,
    IntentKind,
    IntentStatus,
    NodeRecord,
    NodeState,
    PoolHealth,
)
from dtserver.serialize import actions_from_data, plan_as_data, verdicts_from_data
from dtserver.store import (
    KEEP, CataloguePool, Event, EventKind, HintLimitReached, HintLimits, Keep, PassReport,
    PoolCatalogue, RecordNotFound, StoredHint, StoredPlan, StoreError, given)

log = logging.getLogger(__name__)

BUSY_TIMEOUT_SECONDS = 5.0
DEFAULT_MAX_EVENTS = 10_000
# Idle connections kept for reuse; more threads than this just open their own.
_MAX_IDLE_CONNECTIONS = 8
_WAL_RETRY_SECONDS = 0.01
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_RECORD_FIELDS = tuple(f.name for f in fields(NodeRecord))
_RECORD_COLUMNS = ", ".join(_RECORD_FIELDS)
_INTENT_COLUMNS = "id, kind, target, created, status, message, finished"
_POOL_COLUMNS = "pool, consecutive_failures, backoff_until, last_error, last_message, stopped"
_SLEEPING = "sleeping"

_T = TypeVar("_T")


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection with the settings every user of the store file needs."""
    _create_by_umask(path)
    try:
        # isolation_level=None: the sqlite3 module opens no implicit transactions, we
        # issue BEGIN IMMEDIATE ourselves. check_same_thread=False: pooled connections
        # move between threads, used by one thread at a time.
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open store path={path}: {exc}") from exc
    try:
        mode = _enable_wal(conn)
        conn.execute("PRAGMA foreign_keys = ON")
        # In WAL mode NORMAL survives a process crash and saves an fsync per commit,
        # which the hint rate needs; a power cut may lose the last few commits.
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open store path={path}: {exc}") from exc
    if mode != "wal":
        conn.close()
        raise StoreError(f"store needs a file in WAL journal mode path={path} mode={mode}")
    return conn


def _create_by_umask(path: str | Path) -> None:
    """Create a missing database file with mode 0666 less the umask, as any file. SQLite
    would make it 0644 whatever the umask, and its -wal and -shm files copy that mode:
    the API, in the reconciler's group (deploy/systemd), could not write hints to it.
    SQLite takes the empty file as a new database."""
    if str(path) == ":memory:":
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot open store path={path}: {exc}") from exc


def _enable_wal(conn: sqlite3.Connection) -> str:
    # Switching a new file to WAL needs an exclusive lock, and SQLite reports a
    # competing opener as busy at once instead of calling the busy handler: retry
    # within the busy timeout. A file already in WAL mode answers at once.
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(_WAL_RETRY_SECONDS)


def latest_version() -> int:
    """The schema version this code writes."""
    return len(_migrations())


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the pending migrations, one transaction each; return the schema version.

    Refuses a database whose version is newer than this code knows.
    """
    latest = latest_version()
    try:
        version = _user_version(conn)
        _refuse_newer(version, latest)
        while version < latest:
            version = _apply_next_migration(conn, latest)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot migrate store: {exc}") from exc
    return version


def _apply_next_migration(conn: sqlite3.Connection, latest: int) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated while this one waited for the lock.
        version = _user_version(conn)
        _refuse_newer(version, latest)
        if version < latest:
            number, name, script = _migrations()[version]
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number:d}")
            log.info("store migration applying migration=%s version=%d", name, number)
            version = number
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return version


def _installation_id(conn: sqlite3.Connection) -> str:
    try:
        row = conn.execute("SELECT value FROM meta WHERE name = 'installation'").fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the installation id: {exc}") from exc
    if row is None or not row[0]:
        raise StoreError("store has no installation id (meta table damaged); restore it "
                         "from a backup or the dynamictorque:installation metadata of its "
                         "instances")
    return str(row[0])


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _refuse_newer(version: int, latest: int) -> None:
    if version > latest:
        raise StoreError(f"store schema version {version} is newer than this dynamictorque "
                         f"knows ({latest}); upgrade dynamictorque or restore a backup")


@functools.cache
def _migrations() -> tuple[tuple[int, str, str], ...]:
    folder = resources.files("dtserver.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    if [number for number, _, _ in found] != list(range(1, len(found) + 1)):
        names = ", ".join(name for _, name, _ in found)
        raise StoreError(f"store migrations must be numbered 0001.. without gaps: {names}")
    return tuple(found)


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements: executescript() would commit our transaction."""
    pieces = script.split(";")
    pending = ""
    for piece in pieces[:-1]:
        pending += piece + ";"
        # A ';' inside a string, comment or trigger body leaves the statement incomplete.
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    pending += pieces[-1]
    if pending.strip():
        yield pending


class SqliteStore:
    """The Store on one SQLite file; share one object between the threads of a process."""

    def __init__(self, path: str | Path, *, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, not {max_events}")
        self.path = Path(path)
        self.max_events = max_events
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._inherited: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False
        # Not pooled: a gunicorn master that opens the store and then forks must not
        # hand an open connection to its workers.
        with closing(connect(self.path)) as conn:
            version = migrate(conn)
            # Made once with the database and never changed by us: read it once.
            self._installation = _installation_id(conn)
        log.info("store opened path=%s schema_version=%d installation=%s", self.path, version,
                 self._installation)
        # The file this store writes to. SQLite keeps a deleted file open and goes on
        # reading and writing it, so a file deleted or replaced under us shows only here.
        self._file = _file_identity(self.path)

    def close(self) -> None:
        """Close the idle connections; connections in use close when released."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    # meta ----------------------------------------------------------------------
    def installation_id(self) -> str:
        """The random id this database was created with; see migrations/0005."""
        return self._installation

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # node records --------------------------------------------------------------
    def insert_record(self, record: NodeRecord) -> None:
        values = tuple(_encode_value(getattr(record, name)) for name in _RECORD_FIELDS)
        placeholders = ", ".join("?" for _ in _RECORD_FIELDS)
        with self._write() as conn:
            cursor = conn.execute(
                f"INSERT INTO node_records ({_RECORD_COLUMNS}) VALUES ({placeholders}) "
                "ON CONFLICT (id) DO NOTHING", values)
            if cursor.rowcount == 0:
                raise StoreError(f"node record exists id={record.id}")

    def update_record(self, record_id: str, *, state: NodeState | Keep = KEEP,
                      state_since: datetime | Keep = KEEP, reason: str | Keep = KEEP,
                      instance_id: str | Keep = KEEP, address: str | Keep = KEEP,
                      drain: DrainKind | None | Keep = KEEP,
                      down_since: datetime | None | Keep = KEEP,
                      prewarm: bool | Keep = KEEP) -> NodeRecord:
        """Change the given fields of a record and return it."""
        changes = given(state=state, state_since=state_since, reason=reason,
                        instance_id=instance_id, address=address, drain=drain,
                        down_since=down_since, prewarm=prewarm)
        if not changes:
            return self.record(record_id)
        assignments = ", ".join(f"{name} = ?" for name in changes)
        values = tuple(_encode_value(value) for value in changes.values())
        with self._write() as conn:
            rows = conn.execute(
                f"UPDATE node_records SET {assignments} WHERE id = ? RETURNING {_RECORD_COLUMNS}",
                (*values, record_id)).fetchall()
            if not rows:
                raise RecordNotFound(f"no node record id={record_id}")
            # Decoded inside the transaction: a value that would not read back rolls back.
            return _record_from_row(rows[0])

    def record(self, record_id: str) -> NodeRecord:
        with self._connection() as conn:
            row = conn.execute(f"SELECT {_RECORD_COLUMNS} FROM node_records WHERE id = ?",
                               (record_id,)).fetchone()
        if row is None:
            raise RecordNotFound(f"no node record id={record_id}")
        return _record_from_row(row)

    def records(self, *, include_deleted: bool = False) -> tuple[NodeRecord, ...]:
        where = "" if include_deleted else "WHERE state != ?"
        params = () if include_deleted else (NodeState.DELETED.value,)
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {_RECORD_COLUMNS} FROM node_records {where} "
                                "ORDER BY created, id", params).fetchall()
        return tuple(_record_from_row(row) for row in rows)

    # hints ---------------------------------------------------------------------
    def add_hint(self, received: datetime, payload: Mapping[str, Any], *,
                 source: str | None = None, limits: HintLimits | None = None) -> int:
        # Encode before taking the write lock: the lock is held for the checks and INSERT.
        encoded = _dumps(payload)
        user = str(payload.get("user", ""))
        size = len(encoded.encode())
        with self._write() as conn:
            if limits is not None:
                _check_hint_limits(conn, user, size, limits)
            cursor = conn.execute(
                "INSERT INTO hints (received, payload, claimed_user, source, bytes) "
                "VALUES (?, ?, ?, ?, ?)", (_encode_time(received), encoded, user, source, size))
        return _rowid(cursor)

    def hints(self, *, after_id: int = 0) -> tuple[StoredHint, ...]:
        """Oldest first; only those with an id above `after_id`."""
        with self._connection() as conn:
            rows = conn.execute("SELECT id, received, payload, source FROM hints WHERE id > ? "
                                "ORDER BY id", (after_id,)).fetchall()
        return tuple(StoredHint(id=hint_id, received=_decode_time(received),
                                payload=json.loads(payload), source=source)
                     for hint_id, received, payload, source in rows)

    def hint_ids(self) -> frozenset[int]:
        with self._connection() as conn:
            return frozenset(row[0] for row in conn.execute("SELECT id FROM hints"))

    def delete_hints(self, hint_ids: list[int]) -> None:
        if not hint_ids:
            return
        with self._write() as conn:
            conn.executemany("DELETE FROM hints WHERE id = ?", [(hint_id,) for hint_id in hint_ids])

    def add_hint_strike(self, user: str, source: str | None, at: datetime, *,
                        forget_before: datetime) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM hint_strikes WHERE time < ?",
                         (_encode_time(forget_before),))
            conn.execute("INSERT INTO hint_strikes (claimed_user, source, time) "
                         "VALUES (?, ?, ?)", (user, source, _encode_time(at)))

    def hint_strikes(self, since: datetime) -> HintStrikes:
        counts: tuple[dict[str, int], dict[str, int]] = ({}, {})
        with self._connection() as conn:
            for column, tally in zip(("claimed_user", "source"), counts):
                for key, count in conn.execute(
                        f"SELECT {column}, count(*) FROM hint_strikes WHERE time >= ? "
                        f"AND {column} IS NOT NULL GROUP BY {column}",
                        (_encode_time(since),)):
                    tally[key] = count
        return HintStrikes(*counts)

    # intents -------------------------------------------------------------------
    def add_intent(self, kind: IntentKind, target: str | None, now: datetime) -> Intent:
        kind = IntentKind(kind)
        created = _encode_time(now)
        params = (kind.value, target, created, IntentStatus.PENDING.value)
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO intents (kind, target, created, status) VALUES (?, ?, ?, ?)", params)
        return Intent(id=_rowid(cursor), kind=kind, created=_decode_time(created), target=target)

    def intent(self, intent_id: int) -> Intent:
        with self._connection() as conn:
            row = conn.execute(f"SELECT {_INTENT_COLUMNS} FROM intents WHERE id = ?",
                               (intent_id,)).fetchone()
        if row is None:
            raise RecordNotFound(f"no intent id={intent_id}")
        return _intent_from_row(row)

    def intents(self, *, pending_only: bool = False, limit: int = 100) -> tuple[Intent, ...]:
        """Oldest first: with pending_only the head of the reconciler's queue, otherwise
        the latest `limit` intents."""
        _check_limit(limit)
        if pending_only:
            sql = (f"SELECT {_INTENT_COLUMNS} FROM intents WHERE status = ? "
                   "ORDER BY id LIMIT ?")
            params: tuple[Any, ...] = (IntentStatus.PENDING.value, limit)
        else:
            sql = (f"SELECT * FROM (SELECT {_INTENT_COLUMNS} FROM intents "
                   "ORDER BY id DESC LIMIT ?) ORDER BY id")
            params = (limit,)
        with self._connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return tuple(_intent_from_row(row) for row in rows)

    def complete_intent(self, intent_id: int, status: IntentStatus, message: str,
                        now: datetime) -> None:
        status = IntentStatus(status)
        if status is IntentStatus.PENDING:
            raise ValueError("an intent completes as done, refused or failed, not pending")
        params = (status.value, message, _encode_time(now), intent_id)
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE intents SET status = ?, message = ?, finished = ? WHERE id = ?", params)
            if cursor.rowcount == 0:
                raise RecordNotFound(f"no intent id={intent_id}")

    # flags, pool health --------------------------------------------------------
    def set_sleeping(self, sleeping: bool, now: datetime) -> None:
        params = (_SLEEPING, "1" if sleeping else "0", _encode_time(now))
        with self._write() as conn:
            conn.execute("INSERT INTO flags (name, value, changed) VALUES (?, ?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
                         "changed = excluded.changed", params)

    def is_sleeping(self) -> bool:
        with self._connection() as conn:
            row = conn.execute("SELECT value FROM flags WHERE name = ?", (_SLEEPING,)).fetchone()
        return row is not None and row[0] == "1"

    def pool_health(self) -> dict[str, PoolHealth]:
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {_POOL_COLUMNS} FROM pool_health ORDER BY pool").fetchall()
        return {row[0]: _pool_health_from_row(row) for row in rows}

    def save_pool_health(self, health: PoolHealth) -> None:
        params = (health.pool, health.consecutive_failures,
                  _encode_value(health.backoff_until), _encode_value(health.last_error),
                  health.last_message, int(health.stopped))
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO pool_health ({_POOL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (pool) DO UPDATE SET "
                "consecutive_failures = excluded.consecutive_failures, "
                "backoff_until = excluded.backoff_until, last_error = excluded.last_error, "
                "last_message = excluded.last_message, stopped = excluded.stopped", params)

    # history -------------------------------------------------------------------
    def add_event(self, time: datetime, kind: EventKind, message: str, *,
                  hostname: str | None = None, pool: str | None = None,
                  error_kind: ErrorKind | None = None) -> None:
        params = (_encode_time(time), EventKind(kind).value, message, hostname, pool,
                  None if error_kind is None else error_kind.value)
        with self._write() as conn:
            cursor = conn.execute("INSERT INTO events (time, kind, message, hostname, pool, "
                                  "error_kind) VALUES (?, ?, ?, ?, ?, ?)", params)
            # A range delete on the primary key: usually one row, never a scan.
            conn.execute("DELETE FROM events WHERE id <= ?", (_rowid(cursor) - self.max_events,))

    def events(self, limit: int = 50) -> tuple[Event, ...]:
        """Newest first."""
        _check_limit(limit)
        with self._connection() as conn:
            rows = conn.execute("SELECT id, time, kind, message, hostname, pool, error_kind "
                                "FROM events ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return tuple(Event(id=event_id, time=_decode_time(time), kind=EventKind(kind),
                           message=message,
                           hostname=hostname, pool=pool,
                           error_kind=None if error_kind is None else ErrorKind(error_kind))
                     for event_id, time, kind, message, hostname, pool, error_kind in rows)

    def save_plan(self, time: datetime, plan: Plan) -> None:
        params = (_encode_time(time), _dumps(plan_as_data(plan)))
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO last_plan (id, time, plan) VALUES (1, ?, ?)",
                         params)

    def touch_plan(self, time: datetime) -> None:
        with self._write() as conn:
            conn.execute("UPDATE last_plan SET time = ? WHERE id = 1", (_encode_time(time),))

    def last_plan(self) -> StoredPlan | None:
        with self._connection() as conn:
            row = conn.execute("SELECT time, plan FROM last_plan WHERE id = 1").fetchone()
        if row is None:
            return None
        try:
            data = json.loads(row[1])
            return StoredPlan(_decode_time(row[0]), actions_from_data(data["actions"]),
                              verdicts_from_data(data["verdicts"]), tuple(data["notes"]))
        except (ValueError, KeyError, TypeError) as error:
            # A report, not state: one another release wrote is replaced by the next pass.
            log.warning("stored plan unreadable, shown as none until the next pass: %r", error)
            return None

    def save_pass(self, report: PassReport) -> None:
        params = (_encode_time(report.time), float(report.duration_seconds), int(report.ok),
                  _dumps(report.summary))
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO last_pass "
                         "(id, time, duration_seconds, ok, summary) VALUES (1, ?, ?, ?, ?)",
                         params)

    def last_pass(self) -> PassReport | None:
        with self._connection() as conn:
            row = conn.execute("SELECT time, duration_seconds, ok, summary FROM last_pass "
                               "WHERE id = 1").fetchone()
        if row is None:
            return None
        time, duration_seconds, ok, summary = row
        return PassReport(time=_decode_time(time), duration_seconds=duration_seconds,
                          ok=bool(ok), summary=json.loads(summary))

    # pool catalogue ------------------------------------------------------------
    def save_pool_catalogue(self, written: datetime, catalogue: PoolCatalogue) -> None:
        params = (_encode_time(written), _encode_catalogue(catalogue))
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO pool_catalogue (id, written, catalogue) "
                         "VALUES (1, ?, ?)", params)

    def pool_catalogue(self) -> tuple[datetime, PoolCatalogue] | None:
        with self._connection() as conn:
            row = conn.execute("SELECT written, catalogue FROM pool_catalogue "
                               "WHERE id = 1").fetchone()
        if row is None:
            return None
        return _decode_time(row[0]), _decode_catalogue(row[1])

    # health --------------------------------------------------------------------
    def check(self) -> None:
        """Raise StoreError unless the database file is still the one this store opened
        and answers a query (GET /healthz)."""
        self._check_file()
        with self._connection() as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def _check_file(self) -> None:
        try:
            identity = _file_identity(self.path)
        except OSError:
            identity = None
        if identity != self._file:
            raise StoreError(f"store file was deleted or replaced path={self.path}; "
                             "restart to open the current one")

    # connections ---------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; IMMEDIATE takes the lock up front, so it waits
        in the busy handler instead of failing on upgrade from a read. Nothing is written
        to a file that is no longer at our path: nobody would ever read it."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._check_file()
                yield conn
            except BaseException:
                # SQLite may already have rolled back after some errors (SQLITE_FULL).
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = self._acquire()
        try:
            yield conn
        except sqlite3.Error as exc:
            # Its transaction state is unknown now: do not pool it.
            conn.close()
            raise StoreError(f"store failed path={self.path}: {exc}") from exc
        except BaseException:
            self._release(conn)
            raise
        self._release(conn)

    def _acquire(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:
            self._forget_inherited_connections()
        with self._lock:
            if self._closed:
                raise StoreError(f"store is closed path={self.path}")
            if self._idle:
                return self._idle.pop()
        return connect(self.path)

    def _release(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if (not self._closed and self._pid == os.getpid()
                    and len(self._idle) < _MAX_IDLE_CONNECTIONS):
                self._idle.append(conn)
                return
        conn.close()

    def _forget_inherited_connections(self) -> None:
        # A SQLite connection must not be used across fork(); closing it in the child
        # could also drop locks the parent holds. Keep the parent's connections
        # referenced, unused, and start a fresh pool (and lock) in this process.
        self._lock = threading.Lock()
        self._inherited.extend(self._idle)
        self._idle = []
        self._pid = os.getpid()


def _file_identity(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


# --- encoding ------------------------------------------------------------------------

def _encode_time(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the store keeps aware UTC times")
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _decode_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return _encode_time(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _optional(decode: Callable[[Any], _T], value: Any) -> _T | None:
    return None if value is None else decode(value)


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), default=_json_default)


def _json_default(value: object) -> Any:
    # json only knows dict; frozen values often carry other mappings.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON-ready: {type(value).__name__}")


def _encode_catalogue(catalogue: PoolCatalogue) -> str:
    pools = [{"name": pool.name, "max_nodes": pool.max_nodes, "max_cores": pool.max_cores,
              "properties": sorted(pool.properties), "queues": sorted(pool.queues),
              "accounts": sorted(pool.accounts),
              "flavors": [{"name": flavor.name, "cores": flavor.cores,
                           "mem_mb": flavor.mem_mb, "gpus": flavor.gpus}
                          for flavor in pool.flavors]}
             for pool in catalogue.pools]
    return json.dumps({"queues": sorted(catalogue.queues), "max_cores": catalogue.max_cores,
                       "pools": pools}, separators=(",", ":"))


# The API reads the catalogue for every hint and it changes only when the reconciler
# publishes a new one: decode each text once (the values are frozen, so sharing is safe).
@functools.lru_cache(maxsize=8)
def _decode_catalogue(text: str) -> PoolCatalogue:
    data = json.loads(text)
    return PoolCatalogue(
        pools=tuple(CataloguePool(
            name=pool["name"], max_nodes=pool["max_nodes"], max_cores=pool["max_cores"],
            properties=frozenset(pool["properties"]), queues=frozenset(pool["queues"]),
            accounts=frozenset(pool["accounts"]),
            flavors=tuple(Flavor(flavor["name"], cores=flavor["cores"],
                                 mem_mb=flavor["mem_mb"], gpus=flavor["gpus"])
                          for flavor in pool["flavors"]))
            for pool in data["pools"]),
        queues=frozenset(data["queues"]), max_cores=data["max_cores"])


def _rowid(cursor: sqlite3.Cursor) -> int:
    if cursor.lastrowid is None:
        raise StoreError("insert returned no row id")
    return cursor.lastrowid


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")


def _check_hint_limits(conn: sqlite3.Connection, user: str, size: int,
                       limits: HintLimits) -> None:
    mine, my_bytes = conn.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM hints "
                                  "WHERE claimed_user = ?", (user,)).fetchone()
    if mine + 1 > limits.per_user or my_bytes + size > limits.bytes_per_user:
        raise HintLimitReached(f"user {user} has {mine} hints ({my_bytes} bytes) waiting; "
                               f"at most {limits.per_user} ({limits.bytes_per_user} bytes)")
    everyone, all_bytes = conn.execute(
        "SELECT count(*), coalesce(sum(bytes), 0) FROM hints").fetchone()
    if everyone + 1 > limits.total or all_bytes + size > limits.bytes_total:
        raise HintLimitReached(f"{everyone} hints ({all_bytes} bytes) are waiting; at most "
                               f"{limits.total} ({limits.bytes_total} bytes)")


def _record_from_row(row: tuple[Any, ...]) -> NodeRecord:
    values = dict(zip(_RECORD_FIELDS, row))
    values.update(
        prewarm=bool(values["prewarm"]),
        state=NodeState(values["state"]),
        drain=_optional(DrainKind, values["drain"]),
        created=_decode_time(values["created"]),
        state_since=_decode_time(values["state_since"]),
        down_since=_optional(_decode_time, values["down_since"]),
    )
    return NodeRecord(**values)


def _intent_from_row(row: tuple[Any, ...]) -> Intent:
    intent_id, kind, target, created, status, message, finished = row
    return Intent(id=intent_id, kind=IntentKind(kind), created=_decode_time(created),
                  target=target, status=IntentStatus(status), message=message,
                  finished=_optional(_decode_time, finished))


def _pool_health_from_row(row: tuple[Any, ...]) -> PoolHealth:
    pool, failures, backoff_until, last_error, last_message, stopped = row
    return PoolHealth(pool=pool, consecutive_failures=failures,
                      backoff_until=_optional(_decode_time, backoff_until),
                      last_error=_optional(ErrorKind, last_error),
                      last_message=last_message, stopped=bool(stopped))
