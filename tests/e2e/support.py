"""The passive-mode chain with real processes: the emulator's `qsub` runs our submit filter,
which posts to gunicorn (deploy/gunicorn.conf.py) on loopback; the reconciler runs in the
test process on the same SQLite file, reading TORQUE through the emulator's executables
and launching on FakeNova.

Every process is started by PID and stopped by PID; every wait has a deadline.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import requests

from dtserver.batch.torque import TorqueBatch
from dtserver.batch.torque_commands import SubprocessRunner
from dtserver.bootstrap import build_nova_cloud
from dtserver.clock import SystemClock
from dtserver.cloud import Cloud
from dtserver.fakes.nova import FakeNova
from dtserver.fakes.nova_resources import FakeServer
from dtserver.fakes.torque.cli import install_bin
from dtserver.fakes.torque.persistence import EmulatorHome, init_home, open_server
from dtserver.fakes.world import DEMO_FLAVORS, DEMO_IMAGE, play_worker_user_data
from dtserver.model import Flavor, Instance, InstanceSpec, Quota
from dtserver.policy import Policy
from dtserver.reconcile.loop import Reconciler
from dtserver.wakeup import Wakeup
from dtserver.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
FILTER = ROOT / "hooks" / "torque_submitfilter"
HINT_TOKEN = "e2e-hint-token-0123456789"
ADMIN_TOKEN = "e2e-admin-token-9876543210fedcba9876543210"
START_SECONDS = 30.0
STOP_SECONDS = 15.0
COMMAND_SECONDS = 30.0

JOB = b"#!/bin/sh\n#PBS -l walltime=00:10:00\necho hello from e2e\n"


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to this PID, SIGKILL if it does not go in time."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_SECONDS)


class Gunicorn:
    """The API as production runs it: gunicorn with deploy/gunicorn.conf.py, on loopback."""

    def __init__(self, directory: Path, environment: Mapping[str, str],
                 extra_args: Sequence[str] = ()) -> None:
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "gunicorn.log"
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF),
                 "-b", f"127.0.0.1:{self.port}", *extra_args],
                env={**os.environ, **environment}, cwd=directory, stdout=output,
                stderr=subprocess.STDOUT)
        try:
            self._wait_until_serving()
        except BaseException:
            self.stop()
            raise

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                requests.get(f"{self.url}/healthz", timeout=5)
                return
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)     # not listening yet, or its worker still loading the app
        raise RuntimeError(f"gunicorn did not answer within {START_SECONDS} s")

    def stop(self) -> None:
        stop_process(self.process)


class TimedCloud:
    """The Cloud port, noting the monotonic time of each create_instance call."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.creates: list[tuple[float, InstanceSpec]] = []

    def flavors(self) -> tuple[Flavor, ...]:
        return self.cloud.flavors()

    def create_instance(self, spec: InstanceSpec) -> Instance:
        self.creates.append((time.monotonic(), spec))
        return self.cloud.create_instance(spec)

    def owned_instances(self) -> tuple[Instance, ...]:
        return self.cloud.owned_instances()

    def delete_instance(self, instance_id: str) -> None:
        self.cloud.delete_instance(instance_id)

    def mark_entry_ready(self, instance_id: str) -> None:
        self.cloud.mark_entry_ready(instance_id)

    def quota(self) -> Quota:
        return self.cloud.quota()


@dataclass(frozen=True)
class QsubRun:
    status: int
    stdout: str
    stderr: str
    seconds: float


def write_filter_config(path: Path, url: str, *, token_file: Path | None,
                        log_file: Path) -> None:
    lines = [f"url = {url}", "timeout_seconds = 0.5", f"log_file = {log_file}"]
    if token_file is not None:
        lines.append(f"token_file = {token_file}")
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


@dataclass
class Site:
    """A TORQUE server (the CLI emulator) with our filter in torque.cfg, a store, the
    wakeup FIFO, FakeNova and a reconciler over them; the API is started separately."""

    directory: Path
    policy: Policy
    user: str
    clock: SystemClock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        self.home = EmulatorHome(self.directory / "torque")
        # Real time, but a new node's mom reports in ~1.5 s instead of TORQUE's ~15 s.
        init_home(self.home, submit_filter=str(FILTER), submit_user=self.user,
                  hierarchy_delay=1.0, mom_report_delay=0.5)
        self.bin_dir = self.directory / "bin"
        install_bin(self.bin_dir, home=self.home)
        self.work = self.directory / "work"
        self.work.mkdir()
        self.db_path = self.directory / "dt.db"
        self.store = SqliteStore(self.db_path)
        self.wakeup_path = self.directory / "wakeup"
        self.wakeup = Wakeup(self.wakeup_path)
        self.hint_token = self._token("hint.token", HINT_TOKEN, 0o644)
        self.admin_token = self._token("admin.token", ADMIN_TOKEN, 0o600)
        self.filter_config = self.directory / "filter.conf"
        self.filter_log = self.directory / "filter.log"
        self.nova = FakeNova(self.clock, flavors=DEMO_FLAVORS, images=(DEMO_IMAGE,),
                             boot_delay=0.0)
        play_worker_user_data(self.nova, self._mom_starts, lambda server: None)
        self.cloud = TimedCloud(build_nova_cloud(self.nova, self.store, cluster_id="e2e",
                                                 clock=self.clock))
        self.batch = TorqueBatch(SubprocessRunner(str(self.bin_dir), timeout=COMMAND_SECONDS))
        self.reconciler = Reconciler(batch=self.batch, cloud=self.cloud, store=self.store,
                                     clock=self.clock, policy=self.policy)

    def _token(self, name: str, token: str, mode: int) -> Path:
        path = self.directory / name
        path.write_text(token + "\n", encoding="utf-8")
        path.chmod(mode)
        return path

    def _mom_starts(self, server: FakeServer) -> None:
        # What the worker user-data does on a real instance: start pbs_mom, which reports.
        with open_server(self.home) as torque:
            torque.emulator.mom_up(server.name, int(server.flavor["vcpus"]),
                                   int(server.flavor["ram"]))

    def api_environment(self) -> dict[str, str]:
        return {"DT_DB_PATH": str(self.db_path), "DT_WAKEUP_PATH": str(self.wakeup_path),
                "DT_TOKEN_FILE": str(self.admin_token),
                "DT_HINT_TOKEN_FILE": str(self.hint_token)}

    def point_filter_at(self, url: str) -> None:
        write_filter_config(self.filter_config, url, token_file=self.hint_token,
                            log_file=self.filter_log)

    def qsub(self, *args: str, script: bytes = JOB) -> QsubRun:
        """The emulator's qsub executable, as a user runs it: script on stdin."""
        environment = {"PATH": f"{self.bin_dir}:/usr/bin:/bin", "HOME": str(self.work),
                       "USER": self.user, "LOGNAME": self.user, "LANG": "C.UTF-8",
                       "DT_FILTER_CONFIG": str(self.filter_config)}
        started = time.monotonic()
        done = subprocess.run([str(self.bin_dir / "qsub"), *args], input=script,
                              capture_output=True, cwd=self.work, env=environment,
                              timeout=COMMAND_SECONDS, check=False)
        return QsubRun(done.returncode, done.stdout.decode(), done.stderr.decode(),
                       time.monotonic() - started)

    def close(self) -> None:
        self.wakeup.close()
        self.store.close()
