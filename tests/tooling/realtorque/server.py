"""A single-host real TORQUE server for the live tests: trqauthd, pbs_server, pbs_sched.

Facts from the shared real-torque notes that shape it:
- the server's name must resolve to the address the moms reach (the host bridge), not to
  127.0.0.1, or moms refuse jobs ("host not authorized"): `HostBridge` gives this host
  that address and the test's own block of /etc/hosts names it;
- every daemon runs in the foreground (-F, or PBSDEBUG for pbs_sched) as our child, under
  guard.py, so it is stopped by PID and dies with the test session if that is killed;
- clients reach trqauthd through /tmp/trqauthd-unix, one per machine: a lock file keeps a
  second test session from starting its own server at the same time.
"""
from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Mapping, Sequence

from dtserver.batch.hosts import BEGIN_MARKER, END_MARKER
from tests.tooling.realtorque.install import TorqueInstall, TorqueUnavailable

log = logging.getLogger(__name__)

GUARD = Path(__file__).resolve().parents[1] / "novastack" / "guard.py"
SERVER_NAME = "dt-head"
BRIDGE = "dtbr0"
# The real-Nova harness hands out 169.254.80.2-254 with gateway .1: the host is the gateway.
NETWORK = ipaddress.ip_interface("169.254.80.1/24")
JOB_USER = "dtjob"
HOSTS_FILE = Path("/etc/hosts")
HOSTS_BEGIN = "# BEGIN dt-live-torque (tests)"
HOSTS_END = "# END dt-live-torque (tests)"
RECONCILER_BLOCK_BEGIN, RECONCILER_BLOCK_END = BEGIN_MARKER, END_MARKER
TRQAUTHD_SOCKET = Path("/tmp/trqauthd-unix")
SCHEDULER_PORT = 15004

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
COMMAND_TIMEOUT = 30.0
KEEP_COMPLETED = 3600              # completed jobs stay visible to qstat for assertions


class TorqueServerError(Exception):
    """A daemon did not start, stop or answer in time."""


def run_checked(argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT,
                env: Mapping[str, str] | None = None) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                            env=None if env is None else dict(env), stdin=subprocess.DEVNULL,
                            check=False)
    if result.returncode != 0:
        raise TorqueServerError(f"{' '.join(argv)} exited {result.returncode}: "
                                f"{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


class HostBridge:
    """The bridge that holds the server's address; mom namespaces plug their veths in."""

    def __init__(self, name: str = BRIDGE, address: ipaddress.IPv4Interface = NETWORK) -> None:
        self.name = name
        self.address = address

    def up(self) -> None:
        self.down()                       # one left by a killed session of ours
        run_checked(["ip", "link", "add", self.name, "type", "bridge"])
        run_checked(["ip", "addr", "add", str(self.address), "dev", self.name])
        run_checked(["ip", "link", "set", self.name, "up"])

    def down(self) -> None:
        subprocess.run(["ip", "link", "del", self.name], capture_output=True, timeout=30,
                       check=False)


class HostsBlock:
    """The test's own lines in /etc/hosts; `restore` puts the whole file back as it was,
    the block the reconciler under test keeps included."""

    def __init__(self, path: Path = HOSTS_FILE) -> None:
        self.path = path
        self._original: bytes | None = None

    def install(self, entries: Mapping[str, str]) -> None:
        self._original = self._without_our_blocks(self.path.read_bytes())
        lines = [HOSTS_BEGIN] + [f"{address} {name}" for name, address in entries.items()]
        text = self._original.decode()
        if text and not text.endswith("\n"):
            text += "\n"
        self._write((text + "\n".join(lines + [HOSTS_END]) + "\n").encode())

    def restore(self) -> None:
        if self._original is not None:
            self._write(self._original)
            self._original = None

    @staticmethod
    def _without_our_blocks(content: bytes) -> bytes:
        """The file less what a killed session of ours left: our block, and the block the
        reconciler under test keeps (a test host's names must not resolve to old addresses)."""
        kept, inside = [], False
        for line in content.decode().splitlines(keepends=True):
            if line.strip() in (HOSTS_BEGIN, RECONCILER_BLOCK_BEGIN):
                inside = True
            elif line.strip() in (HOSTS_END, RECONCILER_BLOCK_END):
                inside = False
            elif not inside:
                kept.append(line)
        return "".join(kept).encode()

    def _write(self, content: bytes) -> None:
        # In place, not by rename: a bind-mounted /etc/hosts cannot be replaced.
        with open(self.path, "r+b") as stream:
            stream.truncate(0)
            stream.write(content)


def ensure_job_user(name: str = JOB_USER) -> pwd.struct_passwd:
    """The unprivileged user the tests submit as (TORQUE refuses root's jobs by default)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        run_checked(["useradd", "--create-home", "--shell", "/bin/sh", name])
        return pwd.getpwnam(name)


class Daemon:
    """One foreground daemon started under guard.py; stopped by its PID."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: Mapping[str, str], cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, str(GUARD), str(os.getpid()), *argv], stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd,
            start_new_session=True)
        log.info("daemon started name=%s pid=%d", name, self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
        if self.alive():
            os.kill(self.process.pid, signum)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        self._log.close()

    def wait(self, timeout: float) -> int:
        status = self.process.wait(timeout=timeout)
        self._log.close()
        return status

    def tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return "(no log)"


class TorqueServer:
    """pbs_server, pbs_sched and trqauthd of `install`, with a fresh server database."""

    def __init__(self, install: TorqueInstall, workdir: Path, *,
                 name: str = SERVER_NAME) -> None:
        self.install = install
        self.workdir = workdir
        self.name = name
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.trqauthd: Daemon | None = None
        self.server: Daemon | None = None
        self.scheduler: Daemon | None = None
        self._lock: IO[str] | None = None

    # -- environment ---------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """What a TORQUE client needs: our binaries first on PATH, our server by name."""
        path = f"{self.install.bin}:{self.install.sbin}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        return {**os.environ, "PATH": path, "PBS_DEFAULT": self.name,
                "PBS_SERVER": self.name}

    def run(self, argv: Sequence[str], *, user: str | None = None,
            input: bytes | None = None, cwd: Path | None = None,
            extra_env: Mapping[str, str] | None = None,
            timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[bytes]:
        """A client command (qsub, qstat, qmgr ...), as root or as `user`, never via a shell."""
        program = str(self.install.command(argv[0]))
        command = [program, *argv[1:]]
        env = {**self.env, **(extra_env or {})}
        if user is not None:
            home = pwd.getpwnam(user).pw_dir
            env.update(HOME=home, USER=user, LOGNAME=user)
            command = ["runuser", "-u", user, "--", *command]
            cwd = cwd or Path(home)
        return subprocess.run(command, input=input, capture_output=True, env=env, cwd=cwd,
                              timeout=timeout, check=False,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def qmgr(self, directive: str) -> str:
        result = self.run(["qmgr", "-c", directive])
        if result.returncode != 0:
            raise TorqueServerError(f"qmgr -c {directive!r} exited {result.returncode}: "
                                    f"{result.stderr.decode(errors='replace').strip()}")
        return result.stdout.decode()

    # -- lifecycle -----------------------------------------------------------------------
    def acquire(self) -> None:
        """One real TORQUE per machine at a time (ports, the trqauthd socket)."""
        self._lock = open(self.install.prefix.parent / "server.lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            self._lock.close()
            self._lock = None
            raise TorqueUnavailable("another test session runs the real TORQUE server "
                                    f"({self.install.prefix.parent / 'server.lock'})") from error

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def start(self) -> None:
        """A fresh server: empty database, nodes and jobs; scheduling on; queue `batch`."""
        self.stop()
        self._wipe_home()
        (self.install.home / "server_name").write_text(self.name + "\n")
        TRQAUTHD_SOCKET.unlink(missing_ok=True)
        self.trqauthd = Daemon("trqauthd", [str(self.install.command("trqauthd")), "-F"],
                               self.logs / "trqauthd.log", self.env)
        self._wait_for(lambda: TRQAUTHD_SOCKET.exists(), "trqauthd socket", self.trqauthd)
        self._start_server(create=True)
        for directive in (
                "set server scheduling = True",
                f"set server keep_completed = {KEEP_COMPLETED}",
                "set server query_other_jobs = True",
                # qsub names this host by its own host name, not by the server name.
                f"set server submit_hosts = {socket.gethostname()}",
                "create queue batch",
                "set queue batch queue_type = Execution",
                "set queue batch enabled = True",
                "set queue batch started = True",
                "set server default_queue = batch"):
            self.qmgr(directive)
        self.start_scheduler()

    def restart_server(self) -> None:
        """qterm -t quick (jobs keep running on their moms), then pbs_server again."""
        self.stop_server()
        self._start_server(create=False)

    def stop_server(self) -> None:
        if self.server is None:
            return
        if self.server.alive():
            self.run(["qterm", "-t", "quick"], timeout=STOP_TIMEOUT)
            try:
                self.server.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.server.stop()
        self.server.stop()
        self.server = None

    def start_scheduler(self) -> None:
        if self.scheduler is not None and self.scheduler.alive():
            return
        # pbs_sched has no foreground flag; PBSDEBUG keeps it from forking.
        self.scheduler = Daemon("pbs_sched", [str(self.install.command("pbs_sched"))],
                                self.logs / "pbs_sched.log", {**self.env, "PBSDEBUG": "1"})
        time.sleep(0.2)
        if not self.scheduler.alive():
            raise TorqueServerError(f"pbs_sched exited: {self.scheduler.tail()}")

    def kill_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop(signal.SIGKILL)
            self.scheduler = None

    def stop(self) -> None:
        self.kill_scheduler()
        self.stop_server()
        if self.trqauthd is not None:
            self.trqauthd.stop()
            self.trqauthd = None

    def log_tail(self) -> str:
        return "\n".join(f"--- {daemon.name}\n{daemon.tail()}"
                         for daemon in (self.server, self.scheduler, self.trqauthd)
                         if daemon is not None)

    # -- internals -------------------------------------------------------------------------
    def _start_server(self, *, create: bool) -> None:
        # -H: the server is the host its clients and moms know by this name, so root
        # connecting from that address is a manager (svr_get_privilege). -S: pbs_sched
        # listens on the address of this machine's own name, and that name is loopback here
        # while the server would call the scheduler at its -H address.
        argv = [str(self.install.command("pbs_server")), "-F", "-H", self.name,
                "-S", f"{socket.gethostbyname(socket.gethostname())}:{SCHEDULER_PORT}"]
        if create:
            argv += ["-f", "-t", "create"]
        self.server = Daemon("pbs_server", argv, self.logs / "pbs_server.log", self.env)
        self._wait_for(self._answers, "pbs_server", self.server)

    def _answers(self) -> bool:
        return self.run(["qstat", "-B"], timeout=10).returncode == 0

    def _wait_for(self, condition, what: str, daemon: Daemon,
                  timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if not daemon.alive():
                raise TorqueServerError(f"{daemon.name} exited while starting:\n{daemon.tail()}")
            if time.monotonic() > deadline:
                raise TorqueServerError(f"{what} not ready within {timeout:.0f} s:\n"
                                        f"{daemon.tail()}")
            time.sleep(0.2)

    def _wipe_home(self) -> None:
        """Drop what an earlier session left: nodes, their saved state and notes, jobs."""
        priv = self.install.home / "server_priv"
        for name in ("nodes", "node_status", "node_note", "node_power_state", "serverdb",
                     "mom_hierarchy"):
            (priv / name).unlink(missing_ok=True)
        for directory in ("jobs", "arrays", "queues"):
            path = priv / directory
            if path.is_dir():
                for entry in path.iterdir():
                    if entry.is_dir():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
        (self.install.home / "torque.cfg").unlink(missing_ok=True)
