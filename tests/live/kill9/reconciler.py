"""The reconciler as production runs it, in a working directory of its own (the site):
- the console script `dtserver-reconciler -c dynamic_torque.conf` (the systemd unit's
  ExecStart; `dtserver-db migrate`, its ExecStartPre, runs before every start), in its own
  process group, with its background workers, logging to a file;
- TORQUE is the CLI emulator (dtserver/fakes/torque/cli.py): the reconciler runs qstat,
  pbsnodes and qmgr as processes from `torque_bin_dir`; the node names resolve through
  `hosts_file`, which the emulator's qmgr checks as pbs_server does.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

from dtserver.fakes.torque.cli import install_bin
from dtserver.fakes.torque.persistence import EmulatorHome, init_home
from dtserver.model import NodeRecord
from dtserver.store.sqlite import SqliteStore
from tests.live.kill9.points import KIND_BY_NAME, LOG_FORMAT, Arm
from tests.tooling.novastack.plugin import CLOUD_NAME, LiveNova

SITE_DIR = Path(__file__).resolve().parents[1] / "kill9_site"
BIN = Path(sys.executable).parent
TRIGGER_VARIABLE = "DT_KILL9_TRIGGER"

FLAVOR = "dt.small"                  # one core: one node per job
SERVER_NAME = "k9-head"
PREFIX = "k9-"
START_SECONDS = 60.0                 # dtserver-db migrate, and a stop after SIGTERM


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
