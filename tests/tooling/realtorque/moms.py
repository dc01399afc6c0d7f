"""Real pbs_moms playing the instances of the real-Nova harness.

Each ACTIVE server becomes one execution host: a network namespace with the server's fixed
address on a veth into the host bridge, its own UTS namespace named like the instance, a
bind-mounted /proc/cpuinfo with the flavor's cores (pbs_mom counts them for np), and its
own mom home. That is what cloud-init does on a real instance; `MomFleet` does it for
every instance it sees ACTIVE and undoes it when the instance is gone. Traffic stays on
loopback and inside namespaces this module made.
"""
from __future__ import annotations

import itertools
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from tests.tooling.realtorque.install import TorqueInstall
from tests.tooling.realtorque.server import BRIDGE, Daemon, NETWORK, run_checked

log = logging.getLogger(__name__)

NAMESPACE_PREFIX = "dtmom-"
VETH_PREFIX = "dtv"
POLL_SECONDS = 0.3
STOP_TIMEOUT = 15.0
_CPU_BLOCK = ("processor\t: {index}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n"
              "model name\t: dynamictorque test cpu\ncpu MHz\t\t: 2000.000\n\n")


class MomError(Exception):
    """A pbs_mom did not start."""


@dataclass(frozen=True)
class CloudServer:
    """What the fleet needs of one Nova server."""

    id: str
    name: str
    status: str
    address: str | None
    cores: int
    entry_announced: bool = False     # metadata dynamictorque:entry = ready


class MomHost:
    """One instance as an execution host: namespace, veth, mom home, pbs_mom."""

    def __init__(self, install: TorqueInstall, workdir: Path, index: int, server: CloudServer,
                 server_name: str, status_update_time: int | None = None) -> None:
        self.install = install
        self.server = server
        self.name = server.name
        # The PID tells our namespaces from a killed session's (remove_stale_namespaces).
        self.namespace = f"{NAMESPACE_PREFIX}{os.getpid()}-{index}"
        self.veth = f"{VETH_PREFIX}{os.getpid()}-{index}"          # at most 15 characters
        self.home = workdir / f"mom-{index}-{server.name}"
        self.server_name = server_name
        self.status_update_time = status_update_time      # None: pbs_mom's 45 s
        self.daemon: Daemon | None = None
        self.started_at: float | None = None

    def start(self) -> None:
        self._write_home()
        run_checked(["ip", "netns", "add", self.namespace])
        try:
            run_checked(["ip", "link", "add", self.veth, "type", "veth", "peer", "name",
                         "eth0", "netns", self.namespace])
            run_checked(["ip", "link", "set", self.veth, "master", BRIDGE])
            run_checked(["ip", "link", "set", self.veth, "up"])
            inside = ["ip", "netns", "exec", self.namespace]
            run_checked([*inside, "ip", "addr", "add",
                         f"{self.server.address}/{NETWORK.network.prefixlen}", "dev", "eth0"])
            run_checked([*inside, "ip", "link", "set", "eth0", "up"])
            run_checked([*inside, "ip", "link", "set", "lo", "up"])
            # The shell execs pbs_mom: the PID we hold is the mom's.
            script = ('hostname "$1" && mount --bind "$2" /proc/cpuinfo && '
                      'exec "$3" -F -d "$4"')
            self.daemon = Daemon(
                f"pbs_mom {self.name}",
                [*(_which("ip"), "netns", "exec", self.namespace), _which("unshare"), "--uts",
                 "--mount", "--propagation", "private", "sh", "-c", script, "mom", self.name,
                 str(self.home / "cpuinfo"), str(self.install.command("pbs_mom")),
                 str(self.home)],
                self.home / "pbs_mom.out", os.environ)
            self.started_at = time.monotonic()
            time.sleep(0.3)
            if not self.daemon.alive():
                raise MomError(f"pbs_mom for {self.name} exited: {self.daemon.tail()}")
        except BaseException:
            self.remove()
            raise
        log.info("mom started name=%s address=%s cores=%d namespace=%s", self.name,
                 self.server.address, self.server.cores, self.namespace)

    def kill(self) -> None:
        """The mom dies (SIGKILL); the namespace, its address and its jobs' processes stay."""
        if self.daemon is not None:
            self.daemon.stop(signal.SIGKILL)

    def alive(self) -> bool:
        return self.daemon is not None and self.daemon.alive()

    def remove(self) -> None:
        """Stop the mom by PID, then every process left in the namespace, then the namespace."""
        if self.daemon is not None:
            self.daemon.stop()
        for pid in self._namespace_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True, timeout=30,
                       check=False)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=30,
                       check=False)
        log.info("mom removed name=%s namespace=%s", self.name, self.namespace)

    def _namespace_pids(self) -> list[int]:
        result = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True,
                                text=True, timeout=30, check=False)
        return [int(word) for word in result.stdout.split() if word.isdigit()]

    def _write_home(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
        for directory, mode in (("mom_priv", 0o751), ("mom_priv/jobs", 0o751),
                                ("mom_logs", 0o755), ("spool", 0o1777),
                                ("undelivered", 0o1777), ("aux", 0o755),
                                ("checkpoint", 0o700)):
            path = self.home / directory
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)
        self.home.chmod(0o755)
        (self.home / "server_name").write_text(self.server_name + "\n")
        # pbs_mom refuses to start without it: the environment of every job.
        (self.home / "pbs_environment").write_text("PATH=/usr/local/bin:/usr/bin:/bin\nLANG=C\n")
        config = f"$pbsserver {self.server_name}\n$usecp *:/ /\n$logevent 255\n"
        if self.status_update_time is not None:
            config += f"$status_update_time {self.status_update_time}\n"
        (self.home / "mom_priv" / "config").write_text(config)
        (self.home / "cpuinfo").write_text(
            "".join(_CPU_BLOCK.format(index=index) for index in range(self.server.cores)))


class MomFleet:
    """Follows the cloud: a mom for each ACTIVE server, none for a server that is gone.

    `list_servers` reads the cloud (every server of the project). With `gated` (the default)
    a mom starts once the server's metadata announces its node entry, as the worker
    user-data (deploy/cloud-init) waits for; without, as soon as the server is ACTIVE.
    `mom_delay` is how long after that the mom starts, as booting would take. `workdir`
    must not sit below a group- or world-writable directory such as /tmp: pbs_mom checks
    every directory above its home and refuses to start."""

    def __init__(self, install: TorqueInstall, workdir: Path, server_name: str,
                 list_servers: Callable[[], Iterable[CloudServer]], *,
                 gated: bool = True, mom_delay: float = 0.0,
                 status_update_time: int | None = None) -> None:
        self.install = install
        self.workdir = workdir
        self.server_name = server_name
        self.list_servers = list_servers
        self.gated = gated
        self.mom_delay = mom_delay
        self.status_update_time = status_update_time
        self.moms: dict[str, MomHost] = {}          # by server id
        self.history: list[MomHost] = []            # every mom started, removed ones too
        self.errors: list[str] = []
        self._active_since: dict[str, float] = {}
        self._indexes = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="mom-fleet", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._lock:
            for mom in self.moms.values():
                mom.remove()
            self.moms.clear()

    def by_name(self, name: str) -> MomHost | None:
        with self._lock:
            return next((mom for mom in self.moms.values() if mom.name == name), None)

    def names(self) -> set[str]:
        with self._lock:
            return {mom.name for mom in self.moms.values()}

    def kill_mom(self, name: str) -> None:
        mom = self.by_name(name)
        if mom is None:
            raise KeyError(f"no mom plays {name}")
        mom.kill()

    def sync(self) -> None:
        """One look at the cloud: start the moms due, remove the moms whose server is gone."""
        servers = {server.id: server for server in self.list_servers()}
        now = time.monotonic()
        with self._lock:
            for server_id in list(self.moms):
                if server_id not in servers:
                    self.moms.pop(server_id).remove()
                    self._active_since.pop(server_id, None)
            for server in servers.values():
                if server.id in self.moms or server.status != "ACTIVE" or not server.address \
                        or (self.gated and not server.entry_announced):
                    continue
                since = self._active_since.setdefault(server.id, now)
                if now - since < self.mom_delay:
                    continue
                mom = MomHost(self.install, self.workdir, next(self._indexes), server,
                              self.server_name, self.status_update_time)
                # Once, even if it fails: the error is reported, not retried every poll.
                self.moms[server.id] = mom
                self.history.append(mom)
                mom.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as error:             # noqa: BLE001 - reported to the test
                self.errors.append(repr(error))
                log.exception("mom fleet sync failed")
            self._stop.wait(POLL_SECONDS)


def remove_stale_namespaces() -> list[str]:
    """Delete the mom namespaces a killed test session left (their creator's PID is gone);
    deleting a namespace deletes the veth in it, whose peer goes with it."""
    result = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            timeout=30, check=False)
    removed = []
    for line in result.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        owner = name[len(NAMESPACE_PREFIX):].split("-")[0]
        if not name.startswith(NAMESPACE_PREFIX) or not owner.isdigit():
            continue
        if int(owner) == os.getpid() or Path(f"/proc/{owner}").exists():
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                              timeout=30, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30,
                       check=False)
        removed.append(name)
    return removed


def _which(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise FileNotFoundError(program)
    return found
