"""The kill -9 harness: the reconciler as a real process, SIGKILLed at chosen steps of node
lives and restarted, against the real Nova API (tests/tooling/novastack) and the TORQUE CLI
emulator; after every kill and at the end it checks Nova's and TORQUE's own state.

What runs, and how production runs it:
- the reconciler is the console script `dtserver-reconciler -c dynamic_torque.conf`
  (the systemd unit's ExecStart; `dtserver-db migrate`, its ExecStartPre, runs before every
  start), in its own process group, with its background workers, logging to a file;
- TORQUE is the CLI emulator (dtserver/fakes/torque/cli.py): the reconciler runs qstat,
  pbsnodes and qmgr as processes from `torque_bin_dir`; the node names resolve through
  `hosts_file`, which the emulator's qmgr checks as pbs_server does;
- Nova is the real Nova API; the harness plays each instance's cloud-init: once a server of
  ours is ACTIVE and its node entry is announced (metadata), its pbs_mom starts in the
  emulator (`mom_up`), and it dies with the server (`mom_down`);
- the workload submits waves of one-core jobs with the emulator's `qsub`: scale-up, join,
  jobs run on the moms, finish, nodes idle, drain, release, delete.

Kill points. Each start of the reconciler is armed (kill9_site/sitecustomize.py, loaded
through PYTHONPATH) with kill points: the N-th time the process logs a given line (its own
`dtserver.*` log lines), records a given store event, or writes a given record state (KINDS
lists these steps in the order a node's life passes them). The first point reached stops
the process group on the spot; the harness then SIGKILLs the group (the reconciler and
any TORQUE command it was running) and starts it again. GreedyPlan arms, at every start,
the next occurrence of every kind not yet killed at, so each kill lands on a new point
wherever the lives in flight are; every fifth start is instead killed at a random moment,
with no trigger at all.

Checks, from Nova (its API, and its cell databases for servers already deleted, with their
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

import json
import logging
import os
import random
import re
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint
from novaclient import client as nova_client

from dtserver.cloud.nova import CLUSTER_KEY, RECORD_KEY
from dtserver.fakes.torque.cli import install_bin
from dtserver.fakes.torque.persistence import EmulatorHome, init_home, open_server
from dtserver.model import NodeRecord, NodeState, announces_entry
from dtserver.planning.repair import SLOT_NOTE
from dtserver.store.sqlite import SqliteStore
from tests.tooling.novastack.plugin import CLOUD_NAME, MICROVERSION, LiveNova

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SITE_DIR = HERE / "kill9_site"
BIN = Path(sys.executable).parent
TRIGGER_VARIABLE = "DT_KILL9_TRIGGER"

FLAVOR = "dt.small"                  # one core: one node per job
SERVER_NAME = "k9-head"
PREFIX = "k9-"
PLACEHOLDER = "127.0.0.2"            # HostsFile's placeholder address for empty slots
START_SECONDS = 60.0                 # dtserver-db migrate, and a stop after SIGTERM
POLL = 0.25                          # the world's tick
STUCK_QUEUED = 20.0                  # a wave whose jobs wait this long lets the next one in


@dataclass(frozen=True)
class KillKind:
    """One step of a node's life the reconciler reports: a kill trigger."""

    name: str
    source: str                      # "log" (regex on a dtserver.* message), "event", "state"
    pattern: str
    max_nth: int = 4                 # how many occurrences one process may see
    thread: str | None = None        # log: a regex the logging thread's name must match


# Joins and releases run on the reconciler's background workers ("steps_N", as in
# production); new slots are created by the pass itself, on the main thread.
WORKER = r"^steps"
MAIN = r"^MainThread$"


# In the order a node's life passes them; the comment says where a kill there leaves it.
KINDS: tuple[KillKind, ...] = (
    # the first pass is about to begin
    KillKind("startup", "log", r"^pool catalogue published", max_nth=1),
    # a new slot's name has its placeholder address, its node entry is not created
    KillKind("slot hosts", "log",
             rf"^hosts entry set name=\S+ address={re.escape(PLACEHOLDER)} ", thread=MAIN),
    # the same, `qmgr create node` of the slot about to run
    KillKind("slot create", "log", r"^torque command argv=qmgr -c 'create node .*note=",
             thread=MAIN),
    # the launching record is written, servers.create not sent
    KillKind("create requested", "log", r"^instance create requested "),
    # Nova took servers.create; the record does not know the instance yet
    KillKind("servers.create", "log", r"^instance created id="),
    # the record is booting with its instance id; the launch event not stored
    KillKind("launch", "log", r"^launch host="),
    KillKind("launch event", "event", "launch"),
    # join: the name points at the instance; the slot's entry still exists
    KillKind("join hosts", "log", r"^hosts entry set name=\S+ address=169\.254\."),
    # join or release: `qmgr delete node` about to run
    KillKind("qmgr delete", "log", r"^torque command argv=qmgr -c 'delete node "),
    # join: the slot's entry is deleted, the node's not yet created
    KillKind("join create", "log",
             r"^torque command argv=qmgr -c 'create node \S+ np=\d+,properties=[^,']+'$"),
    # join: the node entry exists; the record is still booting
    KillKind("node joined", "log", r"^node joined "),
    KillKind("join", "log", r"^join host="),
    # the instance was told (metadata) its entry is ready; no event stored
    KillKind("entry told", "log", r"^instance told its node entry is ready"),
    KillKind("entry", "event", "entry"),
    # the record turned idle or busy; the scheduler not yet poked
    KillKind("ready", "log", r"^ready host="),
    KillKind("poke", "log", r"^scheduler poked"),
    KillKind("busy", "state", "busy"),
    KillKind("idle", "state", "idle"),
    # the drain is recorded, `pbsnodes -o` not run
    KillKind("drain recorded", "state", "drain"),
    # the node is offline in TORQUE; the record not yet offline
    KillKind("offlined", "log", r"^node offlined "),
    KillKind("drain", "event", "drain"),
    # the record is deleting; the node entry not yet released
    KillKind("deleting", "state", "deleting"),
    # release: the node's entry is deleted, its name back at the placeholder, no slot yet
    KillKind("release hosts", "log",
             rf"^hosts entry set name=\S+ address={re.escape(PLACEHOLDER)} ", thread=WORKER),
    KillKind("release create", "log", r"^torque command argv=qmgr -c 'create node .*note=",
             thread=WORKER),
    # the slot is back; servers.delete not sent
    KillKind("released", "log", r"^node released "),
    # the instance is ours (checked); servers.delete about to be sent
    KillKind("delete requested", "log", r"^instance delete requested "),
    # servers.delete sent and recorded
    KillKind("delete sent", "event", "delete"),
    # a re-created slot offlined again
    KillKind("slot", "log", r"^node slot registered "),
    # the record is deleted; no event stored
    KillKind("deleted", "log", r"^deleted host="),
    KillKind("deleted event", "event", "deleted"),
)
KIND_BY_NAME = {kind.name: kind for kind in KINDS}
RANDOM = "random"


@dataclass(frozen=True)
class KillPoint:
    """The nth occurrence of a step kind in one process."""

    kind: str
    nth: int = 1

    @property
    def label(self) -> str:
        return f"{self.kind}#{self.nth}"


@dataclass(frozen=True)
class Arm:
    """What one start of the reconciler is armed with: kill points (the first one reached
    kills it), or a SIGKILL `after` seconds."""

    points: tuple[KillPoint, ...] = ()
    after: float | None = None


class GreedyPlan:
    """Every start is armed with the next occurrence of every step kind not yet killed at
    (kind#1 of each, then kind#2 once kind#1 was hit, ... up to the kind's max_nth); the
    first one the reconciler reaches kills it. So each kill is at a new point, and the
    points follow the lives in flight wherever they are. Every `random_every`-th start is
    killed at a random moment instead."""

    def __init__(self, rng: random.Random, *, random_every: int = 5,
                 kinds: Sequence[KillKind] = KINDS) -> None:
        self.rng = rng
        self.random_every = random_every
        self.kinds = kinds
        self.next_nth = {kind.name: 1 for kind in kinds}
        self.starts = 0

    def arm(self) -> Arm:
        self.starts += 1
        pending = tuple(KillPoint(kind.name, self.next_nth[kind.name]) for kind in self.kinds
                        if self.next_nth[kind.name] <= kind.max_nth)
        if not pending or (self.random_every and self.starts % self.random_every == 0):
            return Arm(after=round(self.rng.uniform(0.5, 9.0), 2))
        return Arm(points=pending)

    def hit(self, point: KillPoint) -> None:
        self.next_nth[point.kind] = point.nth + 1


# --- the reconciler process -------------------------------------------------------------

@dataclass
class Outcome:
    how: str                          # "triggered", "random", "timeout", "exited"
    label: str                        # the point hit, "random@S", or "timeout@S"
    seconds: float                    # from the start to the kill
    detail: str = ""
    point: KillPoint | None = None    # the point hit
    after_step: str | None = None     # for random/timeout kills: the last step logged

    @property
    def row(self) -> str:
        """The step kind the kill is counted under."""
        if self.point is not None:
            return self.point.kind
        return self.after_step or "(before any step)"


class Incarnation:
    """One start of `dtserver-reconciler`: its process group, and the pipe its trigger
    writes to before it stops the group."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], arm: Arm | None,
                 stderr_path: Path) -> None:
        read_fd, write_fd = os.pipe()
        self._read = read_fd
        env = dict(env)
        env.pop(TRIGGER_VARIABLE, None)
        if arm is not None and arm.points:
            env[TRIGGER_VARIABLE] = json.dumps({"fd": write_fd, "points": [
                {"label": point.label, "source": KIND_BY_NAME[point.kind].source,
                 "pattern": KIND_BY_NAME[point.kind].pattern, "nth": point.nth,
                 "thread": KIND_BY_NAME[point.kind].thread}
                for point in arm.points]})
        with open(stderr_path, "ab") as stderr:
            self.process = subprocess.Popen(
                list(argv), env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                pass_fds=(write_fd,), start_new_session=True)
        os.close(write_fd)
        self.started = time.monotonic()

    def wait_trigger(self, seconds: float) -> str | None:
        """The line of the point that fired, once the group is stopped; "" if the process
        exited; None when `seconds` passed first."""
        ready, _, _ = select.select([self._read], [], [], max(seconds, 0.0))
        if not ready:
            return None
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(self._read, 4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace").strip()

    def kill(self) -> None:
        """SIGKILL to the process group (started in its own session: its id is our PID)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self._close()

    def terminate(self) -> int:
        """SIGTERM as systemd stops it: the loop ends after its pass and background steps."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=START_SECONDS)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()
        return self.process.returncode

    def _close(self) -> None:
        if self._read >= 0:
            os.close(self._read)
            self._read = -1


# --- the site ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Timing:
    """The configuration's time knobs, shortened so node lives take seconds."""

    pass_seconds: float = 1.0         # job_poller_interval, cloud_poller_interval
    idle_seconds: float = 3.0         # max_idle_time
    hint_ttl: float = 2.0
    boot_timeout: float = 120.0       # max_inaccessible_time
    down_seconds: float = 60.0        # max_down_time


class Site:
    """A working directory with TORQUE (the CLI emulator), the configuration, the state
    directory, and the reconciler process when one runs."""

    def __init__(self, live: LiveNova, directory: Path, *, cluster_id: str, max_nodes: int = 4,
                 timing: Timing = Timing(), migrate_each_start: bool = True) -> None:
        self.live = live
        self.directory = directory
        self.cluster_id = cluster_id
        self.max_nodes = max_nodes
        self.timing = timing
        self.migrate_each_start = migrate_each_start
        self.state = directory / "state"
        self.config = directory / "dynamic_torque.conf"
        self.hosts = directory / "hosts"
        self.user_data = directory / "user-data.tmpl"
        self.log_path = directory / "reconciler.log"
        self.stderr_path = directory / "reconciler.stderr"
        self.home = EmulatorHome(directory / "torque")
        self.bin_dir = directory / "bin"
        self.slot_names = tuple(f"{PREFIX}{index:03d}" for index in range(1, max_nodes + 1))
        self.current: Incarnation | None = None
        self.starts = 0

    def setup(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hosts.write_text("127.0.0.1 localhost\n")
        self.user_data.write_text("#cloud-config\nfqdn: $hostname\n"
                                  "runcmd:\n  - [/usr/local/sbin/dt-join-torque, $torque_server]\n")
        # Real time. The delays TORQUE measured (hierarchy 10 s, mom report 5 s after it)
        # are shortened as the e2e site does; pbs_sched keeps its 600 s cycle.
        init_home(self.home, hosts_file=self.hosts, server_name=SERVER_NAME,
                  keep_completed=1e6, hierarchy_delay=1.0, mom_report_delay=0.5,
                  mom_hello_delay=0.5)
        install_bin(self.bin_dir, home=self.home)
        self.config.write_text(self.configuration())

    def configuration(self) -> str:
        timing = self.timing
        endpoint = self.live.endpoint
        return f"""\
[global]
cluster_id: {self.cluster_id}
state_dir: {self.state}
job_poller_interval: {timing.pass_seconds:g}
cloud_poller_interval: {timing.pass_seconds:g}
max_idle_time: {timing.idle_seconds:g}
max_down_time: {timing.down_seconds:g}
max_inaccessible_time: {timing.boot_timeout:g}
hint_ttl_seconds: {timing.hint_ttl:g}
backoff_base_seconds: 1
backoff_cap_seconds: 4

[torque]
torque_bin_dir: {self.bin_dir}
torque_server: {SERVER_NAME}
hosts_file: {self.hosts}
command_timeout_seconds: 20

[cloud]
cloud_name: {CLOUD_NAME}
cloud_image_uuid: {endpoint.image}
worker_node_flavor: {FLAVOR}
cloud_availability_zone: {endpoint.zone}
cloud_network: {endpoint.network}
cloud_vm_prefix: {PREFIX}
cloud_vm_userdata_file: {self.user_data}
number_of_dynamic_worker_nodes: {self.max_nodes}

[logging]
log_level: INFO
log_location: {self.log_path}
log_format: {LOG_FORMAT}
"""

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("OS_")}
        env.update({"OS_CLIENT_CONFIG_FILE": str(self.live.clouds_yaml),
                    "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(SITE_DIR)})
        return env

    def start(self, arm: Arm | None) -> Incarnation:
        """ExecStartPre (`dtserver-db migrate`), then ExecStart, armed with `arm`."""
        assert self.current is None, "one reconciler at a time"
        self.starts += 1
        armed = ("no kill point" if arm is None else f"kill after {arm.after} s"
                 if arm.after is not None else " ".join(point.label for point in arm.points))
        self.note(f"=== kill9: start {self.starts}: {armed}")
        if self.migrate_each_start or self.starts == 1:
            done = subprocess.run([str(BIN / "dtserver-db"), "migrate", "-c", str(self.config)],
                                  env=self.environment(), capture_output=True, text=True,
                                  timeout=START_SECONDS, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"dtserver-db migrate exited {done.returncode}: "
                                   f"{done.stderr[-2000:]}")
        self.current = Incarnation(
            [str(BIN / "dtserver-reconciler"), "-c", str(self.config)], self.environment(),
            arm, self.stderr_path)
        return self.current

    def kill(self) -> None:
        if self.current is not None:
            self.current.kill()
            self.current = None

    def stop(self) -> int | None:
        if self.current is None:
            return None
        status = self.current.terminate()
        self.current = None
        return status

    def note(self, line: str) -> None:
        """A line of the harness's own in the reconciler's log (the kill points' lines are
        not there: the trigger stops the process before the file handler writes them)."""
        with open(self.log_path, "a") as stream:
            stream.write(f"{datetime.now():%Y-%m-%d %H:%M:%S,%f}"[:23] + f" {line}\n")

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as stream:
                stream.seek(offset)
                return stream.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def records(self) -> tuple[NodeRecord, ...]:
        if not (self.state / "dt.db").exists():
            return ()
        with SqliteStore(self.state / "dt.db") as store:
            return store.records(include_deleted=True)

    def qsub(self, name: str, runtime: float) -> subprocess.CompletedProcess[bytes]:
        env = {key: value for key, value in os.environ.items()
               if key not in (TRIGGER_VARIABLE, "PYTHONPATH")}
        return subprocess.run(
            [str(self.bin_dir / "qsub"), "-N", name, "-l", "nodes=1:ppn=1",
             "-v", f"DT_EMULATOR_RUNTIME={runtime:g}"],
            input=f"#!/bin/sh\nsleep {runtime:g}\n".encode(), capture_output=True,
            cwd=self.directory, env=env, timeout=60, check=False)


# The reconciler's log lines, with the thread (configured through log_format).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(threadName)s %(message)s"


def step_after(text: str) -> str | None:
    """The last step (a log-kind) the reconciler logged in `text`: where a kill without a
    trigger landed."""
    last = None
    kinds = [(kind.name, re.compile(kind.pattern), re.compile(kind.thread or ""))
             for kind in KINDS if kind.source == "log"]
    for line in text.splitlines():
        # "<date> <time> LEVEL logger thread message"
        parts = line.split(" ", 5)
        if len(parts) < 6 or not parts[3].startswith("dtserver"):
            continue
        for name, regex, thread in kinds:
            if regex.search(parts[5]) and thread.search(parts[4]):
                last = name
                break
    return last


# --- Nova, as the harness sees it ---------------------------------------------------------

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


# --- the world around the reconciler ---------------------------------------------------

@dataclass
class Violation:
    what: str                        # "duplicate", "busy deleted", "orphan entry", "leak", ...
    detail: str
    kill: int                        # the number of kills done when it was seen

    def __str__(self) -> str:
        return f"[after kill {self.kill}] {self.what}: {self.detail}"


class World:
    """What happens around the reconciler, on its own thread: each server's cloud-init
    (its pbs_mom), users submitting waves of jobs, and a watch on jobs and moms."""

    def __init__(self, site: Site, rng: random.Random, *, runtimes: tuple[float, float] = (2, 4),
                 wave_sizes: tuple[int, int] = (2, 4), early_waves: float = 0.4,
                 max_waves: int | None = None) -> None:
        """Waves of `wave_sizes` jobs running `runtimes` seconds; `early_waves`: the share
        of waves sent while the last one's nodes are about to be drained."""
        self.site = site
        self.rng = rng
        self.runtimes = runtimes
        self.wave_sizes = wave_sizes
        self.early_waves = early_waves
        self.max_waves = max_waves
        self.submit = True
        self.client = nova_client_for(site.live)
        self.kills = 0                                   # set by the run, for reports
        self.moms: dict[str, str] = {}                   # hostname -> server id
        self.jobs: dict[str, str] = {}                   # job id -> last state seen
        self.exec_hosts: dict[str, set[str]] = {}
        self.submitted: list[str] = []
        self.submit_errors: list[str] = []
        self.violations: list[Violation] = []
        self.errors: list[str] = []
        self.waves = 0
        self.min_wave = 1
        self._last_wave = 0.0
        self._gap: float | None = None
        self._all_done_at: float | None = None
        self._job_counter = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kill9-world", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as error:          # noqa: BLE001 - report, keep the world going
                with self._lock:
                    self.errors.append(f"{type(error).__name__}: {error}")
                log.exception("kill9 world tick failed")
            self._stop.wait(POLL)

    def tick(self) -> None:
        servers = live_servers(self.client, self.site.cluster_id)
        if not self.site.home.state_file.exists():
            return
        with open_server(self.site.home) as torque:
            emulator = torque.emulator
            nodes = {node.name: node for node in emulator.nodes()}
            jobs = emulator.jobs()
            self._play_cloud_init(emulator, servers, nodes, jobs)
        self._watch_jobs(jobs)
        self._maybe_submit(jobs, nodes)

    # -- cloud-init: moms come and go with their servers ------------------------------------
    def _play_cloud_init(self, emulator: Any, servers: list[Server], nodes: dict,
                         jobs: Sequence[Any]) -> None:
        by_name: dict[str, list[Server]] = {}
        for server in servers:
            by_name.setdefault(server.name, []).append(server)
        for name, same in by_name.items():
            if len(same) > 1:
                self._violate("duplicate", f"{len(same)} servers named {name} alive at once: "
                                           f"{sorted(server.id for server in same)}")
        alive = {server.id: server for server in servers
                 if server.task_state != "deleting" and server.status not in ("DELETED",
                                                                               "SOFT_DELETED")}
        for name, server_id in list(self.moms.items()):
            if server_id in alive:
                continue
            # Its VM is gone or going: the mom dies with it. A job on its node dies too.
            node = nodes.get(name)
            running = [job.id for job in jobs if job.state == "R" and job.exec_host
                       and name in _hosts_of(job.exec_host)]
            busy = sorted(set(running) | set(node.jobs if node is not None else ()))
            if busy:
                self._violate("busy deleted", f"server {server_id} ({name}) deleted while "
                              f"TORQUE ran {busy} on it")
            emulator.mom_down(name)
            del self.moms[name]
        for server in alive.values():
            if server.status != "ACTIVE" or not server.entry_announced:
                continue
            if self.moms.get(server.name) == server.id:
                continue
            if server.name in self.moms:
                emulator.mom_down(server.name)
            emulator.mom_up(server.name, server.vcpus, server.ram)
            self.moms[server.name] = server.id

    # -- jobs --------------------------------------------------------------------------------
    def _watch_jobs(self, jobs: Sequence[Any]) -> None:
        for job in jobs:
            if job.id not in self.jobs and job.id not in self.submitted:
                continue
            before = self.jobs.get(job.id)
            if before == "R" and job.state == "Q":
                hosts = sorted(self.exec_hosts.get(job.id, ()))
                self._violate("busy deleted", f"job {job.id} requeued: its node entry was "
                              f"deleted under it (ran on {hosts})")
            if job.exec_host:
                self.exec_hosts.setdefault(job.id, set()).update(_hosts_of(job.exec_host))
            self.jobs[job.id] = job.state

    def _maybe_submit(self, jobs: Sequence[Any], nodes: dict[str, Any]) -> None:
        """The next wave once the last one is done: mostly once every node is an empty slot
        again in TORQUE, sometimes while the idle nodes are about to be drained (a job can
        meet a drain half done). A wave whose jobs all stay queued (capacity held by a
        launch that a kill cut off before servers.create waits for launch_grace) lets
        another one in."""
        if not self.submit or (self.max_waves is not None and self.waves >= self.max_waves):
            return
        now = time.monotonic()
        pending = [job for job in jobs if job.id in self.submitted and job.state != "C"]
        if pending:
            self._all_done_at = None
            stuck = all(job.state == "Q" for job in pending) and \
                now - self._last_wave > STUCK_QUEUED
            if stuck and len(pending) < self.site.max_nodes:
                self._submit_wave()
            return
        if self._all_done_at is None:
            self._all_done_at = now
            idle = self.site.timing.idle_seconds
            self._gap = (self.rng.uniform(0.6, 1.6) * idle
                         if self.rng.random() < self.early_waves else None)
        waited = now - self._all_done_at
        scaled_down = all(node.note == SLOT_NOTE for node in nodes.values())
        if scaled_down or (self._gap is not None and waited >= self._gap):
            self._submit_wave()

    def _submit_wave(self) -> None:
        low, high = self.wave_sizes
        size = self.rng.randint(max(low, self.min_wave), max(high, self.min_wave))
        wave = self.waves + 1
        submitted = 0
        for _ in range(min(size, self.site.max_nodes)):
            self._job_counter += 1
            runtime = round(self.rng.uniform(*self.runtimes), 1)
            done = self.site.qsub(f"k9w{wave}j{self._job_counter}", runtime)
            if done.returncode != 0:
                # Before the first pass no slot exists and qsub refuses (190): try again.
                with self._lock:
                    self.submit_errors.append(done.stderr.decode(errors="replace").strip())
                continue
            self.submitted.append(done.stdout.decode().strip())
            submitted += 1
        if submitted:
            self.waves = wave
            self._last_wave = time.monotonic()

    def _violate(self, what: str, detail: str) -> None:
        with self._lock:
            if not any(item.what == what and item.detail == detail for item in self.violations):
                self.violations.append(Violation(what, detail, self.kills))
                log.warning("kill9 violation %s: %s", what, detail)

    def pending_jobs(self) -> int:
        return sum(1 for job in self.submitted if self.jobs.get(job) != "C")


def _hosts_of(exec_host: str) -> set[str]:
    """`k9-001/0+k9-002/0` -> {k9-001, k9-002}."""
    return {part.split("/")[0] for part in exec_host.split("+") if part}


# --- checks ------------------------------------------------------------------------------

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


# --- a run --------------------------------------------------------------------------------

@dataclass
class Results:
    outcomes: list[Outcome] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    jobs_total: int = 0
    jobs_ok: int = 0
    job_problems: list[str] = field(default_factory=list)
    servers_created: int = 0
    orphans_cleaned: int = 0
    settled: bool = False
    settle_seconds: float = 0.0
    unsettled: str = ""
    wall_seconds: float = 0.0
    world_errors: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)

    def count(self, what: str) -> int:
        return sum(1 for item in self.violations if item.what == what)

    @property
    def distinct_points(self) -> int:
        """Kills at a point of their own: each point hit (never armed again) and each
        random-time kill."""
        return len({outcome.label for outcome in self.outcomes
                    if outcome.how in ("triggered", "random")})

    @property
    def ok(self) -> bool:
        return (self.settled and not self.violations and self.jobs_ok == self.jobs_total
                and not self.exits and not self.world_errors)

    def table(self) -> str:
        """Kills by the step kind they hit (random and timeout kills: the last step the
        reconciler logged before it)."""
        rows: dict[str, Counter] = {}
        nths: dict[str, set[int]] = {}
        for outcome in self.outcomes:
            rows.setdefault(outcome.row, Counter())[outcome.how] += 1
            if outcome.point is not None:
                nths.setdefault(outcome.row, set()).add(outcome.point.nth)
        order = [kind.name for kind in KINDS]
        lines = [f"{'kill point (step kind)':<24} {'triggered':>9} {'nth':>9} {'random':>7} "
                 f"{'timeout':>7}"]
        total: Counter = Counter()
        for key in sorted(rows, key=lambda name: order.index(name) if name in order else -1):
            counts = rows[key]
            total.update(counts)
            hit = ",".join(str(nth) for nth in sorted(nths.get(key, ()))) or "-"
            lines.append(f"{key:<24} {counts['triggered']:>9} {hit:>9} {counts['random']:>7} "
                         f"{counts['timeout']:>7}")
        lines.append(f"{'total':<24} {total['triggered']:>9} {'':>9} {total['random']:>7} "
                     f"{total['timeout']:>7}")
        return "\n".join(lines)

    def summary(self) -> str:
        return "\n".join([
            f"kills: {len(self.outcomes)} ({self.distinct_points} at distinct points; "
            f"{sum(o.how == 'timeout' for o in self.outcomes)} starts reached no armed "
            f"point in time and were killed anyway)",
            f"leaked instances: {self.count('leak')}",
            f"duplicate creates: {self.count('duplicate')}",
            f"nodes deleted while a job ran: {self.count('busy deleted')}",
            f"orphan node entries: {self.count('orphan entry')}",
            f"jobs run once with exit status 0: {self.jobs_ok}/{self.jobs_total}",
            f"servers created: {self.servers_created}; unexplained while running (orphans "
            f"the reconciler deleted): {self.orphans_cleaned}",
            f"settled: {self.settled} after {self.settle_seconds:.1f} s",
            f"reconciler exits on its own: {len(self.exits)}",
            f"world errors: {len(self.world_errors)}",
            f"wall time: {self.wall_seconds:.1f} s",
        ])


class Kill9Run:
    """Start the reconciler, kill it where `plan` arms it, `kills` times; check after each
    kill; then let it settle and check the end state."""

    def __init__(self, site: Site, *, seed: int, trigger_timeout: float = 30.0,
                 settle_timeout: float = 240.0, world: World | None = None,
                 progress: Callable[[str], None] = lambda line: None) -> None:
        self.site = site
        self.trigger_timeout = trigger_timeout
        self.settle_timeout = settle_timeout
        self.world = world or World(site, random.Random(seed + 1))
        self.checker = Checker(site, nova_databases(site.live))
        self.progress = progress
        self.results = Results()

    def run(self, plan: GreedyPlan, kills: int) -> Results:
        started = time.monotonic()
        self.site.setup()
        self.world.start()
        try:
            for index in range(1, kills + 1):
                arm = plan.arm()
                self.world.min_wave = min(self.site.max_nodes, max(
                    (point.nth for point in arm.points), default=1))
                outcome = self._one(arm)
                if outcome.point is not None:
                    plan.hit(outcome.point)
                self.results.outcomes.append(outcome)
                self.world.kills = index
                snapshot = self.checker.snapshot()
                new = self.checker.check(snapshot, index)
                self.progress(f"kill {index:3d}/{kills} {outcome.how:9s} {outcome.label:<22} "
                              f"{outcome.seconds:5.1f} s"
                              f"{' after ' + outcome.after_step if outcome.after_step else ''}"
                              + "".join(f"\n    VIOLATION {item}" for item in new))
            self._settle()
        finally:
            self.site.kill()
            self.world.stop()
        self.results.violations = self.checker.violations + self.world.violations
        self.results.world_errors = list(self.world.errors)
        self.results.wall_seconds = time.monotonic() - started
        return self.results

    def _one(self, arm: Arm) -> Outcome:
        offset = self.site.log_size()
        incarnation = self.site.start(arm)
        timeout = arm.after if arm.after is not None else self.trigger_timeout
        fired = incarnation.wait_trigger(timeout)
        seconds = time.monotonic() - incarnation.started
        if fired == "":
            # The process ended on its own: not a kill of ours.
            incarnation.process.wait(timeout=30)
            self.site.current = None
            detail = (f"exited {incarnation.process.returncode}; stderr: "
                      f"{_tail(self.site.stderr_path)}")
            self.results.exits.append(detail)
            return Outcome("exited", "exited", seconds, detail)
        self.site.kill()
        self.site.note(f"=== kill9: SIGKILL after {seconds:.2f} s: "
                       f"{fired.replace(chr(9), ' at ') if fired else 'no armed point reached'}")
        if fired is None:
            how = RANDOM if arm.after is not None else "timeout"
            return Outcome(how, f"{how}@{seconds:.2f}s#{len(self.results.outcomes) + 1}",
                           seconds, after_step=step_after(self.site.log_since(offset)))
        label, _, detail = fired.partition("\t")
        point = next(point for point in arm.points if point.label == label)
        return Outcome("triggered", label, seconds, detail, point=point)

    def _settle(self) -> None:
        """No more jobs; the reconciler runs unharmed until nothing is left (or time is
        up), then stops as systemd stops it; then the final checks."""
        self.world.submit = False
        started = time.monotonic()
        self.site.start(None)
        deadline = started + self.settle_timeout
        snapshot = self.checker.snapshot()
        while not self._is_settled(snapshot):
            if time.monotonic() > deadline:
                self.results.unsettled = describe(self.site, snapshot)
                break
            if self.site.current is not None and self.site.current.process.poll() is not None:
                self.results.exits.append(f"exited {self.site.current.process.returncode} "
                                          f"while settling: {_tail(self.site.stderr_path)}")
                self.site.current = None
                break
            time.sleep(1.0)
            snapshot = self.checker.snapshot()
        else:
            self.results.settled = True
        self.results.settle_seconds = time.monotonic() - started
        self.progress(f"settle: {'settled' if self.results.settled else 'NOT settled'} after "
                      f"{self.results.settle_seconds:.1f} s")
        status = self.site.stop()
        if status not in (0, None):
            self.results.exits.append(f"SIGTERM stop exited {status}")
        kills = len(self.results.outcomes)
        snapshot = self.checker.snapshot()
        self.checker.check(snapshot, kills, settled=True)
        self._count_jobs(snapshot)
        self.results.servers_created = len(snapshot.history)
        self.results.orphans_cleaned = sum(
            1 for server_id in self.checker.unexplained
            if server_id not in {server.id for server in snapshot.servers})

    def _is_settled(self, snapshot: Snapshot) -> bool:
        if self.world.pending_jobs() or snapshot.servers:
            return False
        if any(job["state"] != "C" for job in snapshot.jobs.values()):
            return False
        if any(record.state is not NodeState.DELETED for record in snapshot.records):
            return False
        return all(name in snapshot.nodes and snapshot.nodes[name].note == SLOT_NOTE
                   and "offline" in snapshot.nodes[name].state
                   and not snapshot.nodes[name].jobs for name in self.site.slot_names)

    def _count_jobs(self, snapshot: Snapshot) -> None:
        self.results.jobs_total = len(self.world.submitted)
        for job_id in self.world.submitted:
            job = snapshot.jobs.get(job_id)
            if job is None:
                self.results.job_problems.append(f"{job_id}: not in TORQUE")
            elif job["state"] != "C" or job["exit_status"] != 0 or job["start_count"] != 1:
                self.results.job_problems.append(
                    f"{job_id}: state {job['state']}, exit {job['exit_status']}, "
                    f"started {job['start_count']} times")
            else:
                self.results.jobs_ok += 1


def _tail(path: Path, size: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(none)"


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

