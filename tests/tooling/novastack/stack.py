"""A real Nova 34.0.0 compute API on loopback for the live tests: install, start, stop.

Adapted from the shared nova-harness recipe (novastack.sh): the real nova-api pipeline,
conductor, scheduler and nova-compute with the fake virt driver in one process
(launcher.py), and the real placement service under gunicorn, each on a free loopback
port. The harness has its own virtualenv pinned by requirements.txt, cached once per
machine as the TORQUE build is (NOVASTACK_HOME moves it), so fresh clones and reruns skip
the install. Every wait is
bounded, the processes run in their own sessions and are stopped by PID, and guard.py makes
them die with the process that started them.

By hand: `python -m tests.tooling.novastack.stack run` installs if needed, starts the
stack, prints its URL and stops it on Ctrl-C.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Mapping, Sequence

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
LAUNCHER = HERE / "launcher.py"
GUARD = HERE / "guard.py"

# Fixed by nova's in-tree fakes: the project whose `private` network the fake Neutron
# serves, that network, and a fake Glance image.
PROJECT_ID = "6f70656e737461636b20342065766572"
NETWORK_ID = "3cb9bc59-5699-4588-a4b1-b87f96708bc6"
IMAGE_ID = "155d900f-4e14-4e4c-a73d-069cbf4541e6"
ZONE = "nova"

INSTALL_TIMEOUT = 300.0      # a cold install takes ~40 s on 2 cores
COMMAND_TIMEOUT = 120.0      # one nova-manage step
READY_TIMEOUT = 90.0         # a service answering HTTP; ~13 s for nova in practice
STOP_TIMEOUT = 10.0
_LOG_TAIL = 2000


class HarnessUnavailable(Exception):
    """The harness venv could not be installed (no package registry, say)."""


class HarnessError(Exception):
    """The harness is installed but did not start."""


@dataclass(frozen=True)
class Endpoint:
    """Where the running Nova answers, and the fixed ids its fakes serve."""

    url: str                          # http://127.0.0.1:PORT/v2.1
    project: str = PROJECT_ID
    network: str = NETWORK_ID
    image: str = IMAGE_ID
    zone: str = ZONE

    def token(self, user: str) -> str:
        """The launcher's token format; user "admin" gets the admin role."""
        return f"{user}:{self.project}"


def default_home() -> Path:
    """Beside the cached TORQUE build for root (as CI runs), else the user's cache."""
    if os.environ.get("NOVASTACK_HOME"):
        return Path(os.environ["NOVASTACK_HOME"])
    if os.geteuid() == 0:
        return Path("/var/cache/dynamictorque-tests/novastack")
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "dynamictorque-tests" / "novastack"


def free_port() -> int:
    """A loopback port nobody listens on now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class HarnessVenv:
    """The harness's own virtualenv, installed once per requirements.txt and Python: one
    directory each, so clones pinning different versions share a cache without churn."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.fingerprint = hashlib.sha256(REQUIREMENTS.read_bytes()
                                          + sys.version.encode()).hexdigest()
        self.path = home / f"venv-{self.fingerprint[:16]}"
        self._stamp = self.path / ".installed"

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name

    def is_installed(self) -> bool:
        return self._stamp.is_file() and self._stamp.read_text().strip() == self.fingerprint

    def ensure(self, *, timeout: float = INSTALL_TIMEOUT) -> bool:
        """Install unless already there; True when it installed. Concurrent sessions wait
        for each other on a lock file instead of installing into one venv twice."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "install.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.is_installed():
                return False
            self._install(timeout)
            return True

    def _install(self, timeout: float) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        deadline = time.monotonic() + timeout
        log_path = self.home / "install.log"
        log.info("novastack install venv=%s", self.path)
        with open(log_path, "w") as output:
            for argv in ([sys.executable, "-m", "venv", str(self.path)],
                         [str(self.bin("python")), "-m", "pip", "install", "--quiet",
                          "--disable-pip-version-check", "--timeout", "20", "--retries", "1",
                          "-r", str(REQUIREMENTS)]):
                left = deadline - time.monotonic()
                try:
                    status = subprocess.run(argv, stdout=output, stderr=subprocess.STDOUT,
                                            env=_clean_environment(), timeout=max(left, 1),
                                            check=False).returncode
                except subprocess.TimeoutExpired:
                    status = None
                if status != 0:
                    output.flush()
                    shutil.rmtree(self.path, ignore_errors=True)
                    why = "timed out" if status is None else f"exit {status}"
                    raise HarnessUnavailable(
                        f"installing the Nova harness failed ({why}: {argv[2]} ...); "
                        f"{log_path}:\n{_tail(log_path)}")
        self._stamp.write_text(self.fingerprint + "\n")


class NovaStack:
    """Placement and Nova processes over fresh databases in `state_dir`."""

    def __init__(self, venv: HarnessVenv, state_dir: Path) -> None:
        self.venv = venv
        self.state_dir = state_dir
        self.data = state_dir / "data"
        self.etc = state_dir / "etc"
        self.logs = state_dir / "logs"
        self._processes: dict[str, subprocess.Popen] = {}
        self._log_files: list[IO[bytes]] = []

    def start(self, *, timeout: float = READY_TIMEOUT) -> Endpoint:
        """Fresh databases, then placement, then Nova; stops what started if anything fails."""
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> Endpoint:
        placement_port, nova_port = free_port(), free_port()
        self._write_config(placement_port)
        self._make_databases()
        self._spawn("placement", [
            str(self.venv.bin("gunicorn")), "-b", f"127.0.0.1:{placement_port}", "-w", "1",
            "--threads", "1", "--log-level", "warning", "placement.wsgi.api:application"],
            {"OS_PLACEMENT_CONFIG_DIR": str(self.etc / "placement")})
        self._wait_ready("placement", f"http://127.0.0.1:{placement_port}/", timeout)
        self._spawn("nova", [
            str(self.venv.bin("python")), str(LAUNCHER),
            "--config-file", str(self.etc / "nova" / "nova.conf"), "--port", str(nova_port)],
            {"OS_NOVA_DISABLE_EVENTLET_PATCHING": "1"})
        self._wait_ready("nova", f"http://127.0.0.1:{nova_port}/", timeout)
        return Endpoint(f"http://127.0.0.1:{nova_port}/v2.1")

    def stop(self) -> None:
        """TERM each process group by the PID we started, KILL it if it lingers."""
        for name in ("nova", "placement"):
            process = self._processes.pop(name, None)
            if process is None:
                continue
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("novastack kill name=%s pid=%d", name, process.pid)
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT)
            # gunicorn's worker shares the group; take it down with the master.
            _signal_group(process.pid, signal.SIGKILL)
            log.info("novastack stopped name=%s pid=%d", name, process.pid)
        for handle in self._log_files:
            handle.close()
        self._log_files.clear()

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self._processes.items()}

    def log_tail(self, name: str = "nova") -> str:
        return _tail(self.logs / f"{name}.log")

    # --- internals ------------------------------------------------------------------------

    def _write_config(self, placement_port: int) -> None:
        for directory in (self.etc / "nova", self.etc / "placement", self.logs):
            directory.mkdir(parents=True, exist_ok=True)
        (self.etc / "placement" / "placement.conf").write_text(
            "[DEFAULT]\ndebug = False\n"
            "[api]\nauth_strategy = noauth2\n"
            f"[placement_database]\nconnection = sqlite:///{self.data}/placement.sqlite\n")
        # The paste pipeline as shipped, minus keystonemiddleware's authtoken: the
        # launcher's token middleware stands in for Keystone.
        shipped = (self.venv.path / "etc" / "nova" / "api-paste.ini").read_text()
        (self.etc / "nova" / "api-paste.ini").write_text(
            shipped.replace(" authtoken keystonecontext ", " keystonecontext "))
        (self.etc / "nova" / "nova.conf").write_text(f"""\
[DEFAULT]
transport_url = fake:/
compute_driver = fake.FakeDriver
host = ci-compute
state_path = {self.data}/nova
instances_path = {self.data}/nova/instances
debug = False
heal_instance_info_cache_interval = -1
[api_database]
connection = sqlite:///{self.data}/nova_api.sqlite
[database]
connection = sqlite:///{self.data}/nova_cell1.sqlite
[wsgi]
api_paste_config = {self.etc}/nova/api-paste.ini
[oslo_concurrency]
lock_path = {self.data}/lock
[placement]
auth_type = admin_token
endpoint = http://127.0.0.1:{placement_port}
token = admin
[scheduler]
discover_hosts_in_cells_interval = -1
[oslo_messaging_notifications]
driver = noop
[keystone]
# No Keystone: quota updates check the project there; a refused connection (the discard
# port) makes nova log "Unable to contact keystone" and go on.
endpoint_override = http://127.0.0.1:9/v3
""")

    def _make_databases(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)
        (self.data / "lock").mkdir(parents=True)
        (self.data / "nova").mkdir()
        nova_manage = [str(self.venv.bin("nova-manage")), "--config-file",
                       str(self.etc / "nova" / "nova.conf")]
        for argv in (
                [str(self.venv.bin("placement-manage")), "--config-file",
                 str(self.etc / "placement" / "placement.conf"), "db", "sync"],
                [*nova_manage, "api_db", "sync"],
                [*nova_manage, "cell_v2", "map_cell0", "--database_connection",
                 f"sqlite:///{self.data}/nova_cell0.sqlite"],
                [*nova_manage, "cell_v2", "create_cell", "--name", "cell1",
                 "--transport-url", "fake:/", "--database_connection",
                 f"sqlite:///{self.data}/nova_cell1.sqlite"],
                [*nova_manage, "db", "sync"]):
            self._run_setup(argv)
        for database in self.data.glob("*.sqlite"):
            # WAL: readers do not block the one writer.
            with sqlite3.connect(database) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
            connection.close()

    def _run_setup(self, argv: Sequence[str]) -> None:
        log_path = self.logs / "db-setup.log"
        with open(log_path, "a") as output:
            try:
                result = subprocess.run(argv, stdout=output, stderr=subprocess.STDOUT,
                                        env=_clean_environment(), timeout=COMMAND_TIMEOUT,
                                        check=False)
            except subprocess.TimeoutExpired as error:
                raise HarnessError(f"{' '.join(argv[:4])} timed out; {log_path}:\n"
                                   f"{_tail(log_path)}") from error
        if result.returncode != 0:
            raise HarnessError(f"{' '.join(argv[:4])} failed ({result.returncode}); "
                               f"{log_path}:\n{_tail(log_path)}")

    def _spawn(self, name: str, argv: Sequence[str], extra_env: Mapping[str, str]) -> None:
        output = open(self.logs / f"{name}.log", "wb")
        self._log_files.append(output)
        guarded = [str(self.venv.bin("python")), str(GUARD), str(os.getpid()), *argv]
        self._processes[name] = subprocess.Popen(
            guarded, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            env={**_clean_environment(), **extra_env}, cwd=self.state_dir,
            start_new_session=True)
        log.info("novastack started name=%s pid=%d", name, self._processes[name].pid)

    def _wait_ready(self, name: str, url: str, timeout: float) -> None:
        process = self._processes[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise HarnessError(f"{name} exited with {process.returncode} while starting; "
                                   f"log:\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except urllib.error.HTTPError:
                return                       # it answered: up, whatever the status
            except OSError:
                time.sleep(0.25)
        raise HarnessError(f"{name} did not answer {url} within {timeout:.0f} s; "
                           f"log:\n{self.log_tail(name)}")


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)              # start_new_session: the group id is the PID
    except ProcessLookupError:
        pass


def _clean_environment() -> dict[str, str]:
    """The caller's environment without OpenStack credentials or Python path overrides:
    the harness must not pick up a developer's cloud."""
    return {key: value for key, value in os.environ.items()
            if not key.startswith("OS_") and key not in ("PYTHONPATH", "PYTHONHOME",
                                                         "VIRTUAL_ENV")}


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return text[-_LOG_TAIL:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("install", "run"))
    parser.add_argument("--home", type=Path, default=default_home())
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    venv = HarnessVenv(args.home)
    started = time.monotonic()
    installed = venv.ensure()
    print(f"harness venv {venv.path} ({'installed' if installed else 'cached'}, "
          f"{time.monotonic() - started:.1f} s)")
    if args.command == "install":
        return 0
    with tempfile.TemporaryDirectory(prefix="novastack-") as state:
        stack = NovaStack(venv, Path(state))
        started = time.monotonic()
        endpoint = stack.start()
        print(f"nova API {endpoint.url} (started in {time.monotonic() - started:.1f} s); "
              f"token {endpoint.token('demo')!r}, Ctrl-C stops")
        stopping = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
        try:
            signal.sigwait(stopping)
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
