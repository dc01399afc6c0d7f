"""dynamictorque deployed on real TORQUE 6.1.3 and the real Nova API, by its own documented
steps (docs/operations.md, deploy/torque/README.md, hooks/README.md):

1. `dynamic_torque.conf` (the hosts file is /etc/hosts: the tests run as root);
2. `dtserver-check-config`, then `deploy/torque/setup_torque.py` (queue, node slots, manager);
3. the submit filter in torque.cfg, its filter.conf and the hint token;
4. `dtserver-db migrate`, the reconciler as a process, the API under gunicorn.

The instances become real pbs_moms (tests/tooling/realtorque/moms.py), which start once
their node entry is announced, as the worker user-data does. Every process is started and
stopped by PID; every wait is bounded.
"""
from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import requests

from dtserver.model import NodeRecord, NodeState
from dtserver.store import PassReport
from dtserver.store.sqlite import SqliteStore
from tests.e2e.support import Gunicorn, stop_process
from tests.tooling.novastack.plugin import CLOUD_NAME, LiveNova
from tests.tooling.realtorque.moms import MomFleet
from tests.tooling.realtorque.plugin import LiveTorque

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FILTER = ROOT / "hooks" / "torque_submitfilter"
USER_DATA = ROOT / "deploy" / "cloud-init" / "worker-user-data.yaml.tmpl"
SETUP_TORQUE = ROOT / "deploy" / "torque" / "setup_torque.py"
HINT_TOKEN = "live-torque-hint-token-0123456789"
ADMIN_TOKEN = "live-torque-admin-token-9876543210"
CLUSTER_ID = "live-torque"
POOL = "cloud"
BIG_POOL = "big"
IDLE_SECONDS = 15
PASS_SECONDS = 2
DOWN_SECONDS = 20
WAIT_SECONDS = 240.0              # the longest any one condition may take under load
SLOT_NOTE = "dynamictorque: slot, no instance"


@dataclass(frozen=True)
class FinishedJob:
    id: str
    state: str
    exit_status: int | None
    exec_host: str | None


@dataclass
class Site:
    torque: LiveTorque
    nova: LiveNova
    private: Path                    # root only: database, admin token, logs
    shared: Path                     # what the submitting user reads: filter config, token
    fleet: MomFleet
    config: Path = field(init=False)
    reconciler: subprocess.Popen[bytes] | None = None
    api: Gunicorn | None = None
    setup_output: str = ""
    idle_seconds: int = IDLE_SECONDS
    max_nodes: int = 5

    def __post_init__(self) -> None:
        self.state = self.private / "state"
        self.config = self.private / "dynamic_torque.conf"
        self.reconciler_log = self.private / "reconciler.log"
        self.admin_token = self.private / "admin.token"
        self.hint_token = self.shared / "hint.token"
        self.filter_config = self.shared / "filter.conf"

    # -- deployment ------------------------------------------------------------------------
    def deploy(self, *, api: bool = True) -> None:
        self.shared.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.shared.chmod(0o755)
        self.admin_token.write_text(ADMIN_TOKEN + "\n")
        self.admin_token.chmod(0o600)
        self.hint_token.write_text(HINT_TOKEN + "\n")
        self.hint_token.chmod(0o644)
        self.config.write_text(self.configuration())
        self._run_ok([str(BIN / "dtserver-check-config"), "-c", str(self.config)])
        self.setup_output = self._run_ok([
            sys.executable, str(SETUP_TORQUE), "-c", str(self.config), "--flavor", "dt.small=1",
            "--flavor", "dt.medium=2", "--flavor", "dt.large=4", "--manager", "root",
            "--submit-filter", str(FILTER)])
        submitfilter = self.setup_output.strip().splitlines()[-1]
        (self.torque.install.home / "torque.cfg").write_text(submitfilter + "\n")
        self._run_ok([str(BIN / "dtserver-db"), "migrate", "-c", str(self.config)])
        self.start_reconciler()
        if api:
            self.start_api()

    def configuration(self) -> str:
        install = self.torque.install
        return f"""\
[global]
cluster_id: {CLUSTER_ID}
state_dir: {self.state}
job_poller_interval: {PASS_SECONDS}
max_idle_time: {self.idle_seconds}
max_down_time: {DOWN_SECONDS}
max_inaccessible_time: 300
backoff_base_seconds: 5

[torque]
driver: torque
torque_bin_dir: {install.bin}
torque_server: {self.torque.server_name}
hosts_file: /etc/hosts
command_timeout_seconds: 20

[cloud]
driver: nova
cloud_name: {CLOUD_NAME}
cloud_image_uuid: {self.nova.endpoint.image}
worker_node_flavor: dt.small,dt.medium
cloud_availability_zone: {self.nova.endpoint.zone}
cloud_network: {self.nova.endpoint.network}
cloud_vm_userdata_file: {USER_DATA}

[pool {POOL}]
max_nodes: {self.max_nodes}
name_prefix: cloud-

[pool {BIG_POOL}]
flavors: dt.large
properties: CLOUD,BIG
max_nodes: 1
name_prefix: big-

[api]
token_file: {self.admin_token}
hint_token_file: {self.hint_token}

[logging]
log_level: INFO
log_location: {self.reconciler_log}
"""

    def environment(self) -> dict[str, str]:
        return {**os.environ, "OS_CLIENT_CONFIG_FILE": str(self.nova.clouds_yaml),
                "PYTHONUNBUFFERED": "1"}

    def start_reconciler(self) -> None:
        self.reconciler = subprocess.Popen(
            [str(BIN / "dtserver-reconciler"), "-c", str(self.config)], env=self.environment(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def kill_reconciler(self) -> None:
        """SIGKILL: the process dies wherever it is, as in a crash."""
        if self.reconciler is not None and self.reconciler.poll() is None:
            os.kill(self.reconciler.pid, signal.SIGKILL)
            self.reconciler.wait(timeout=30)
        self.reconciler = None

    def start_api(self) -> None:
        self.api = Gunicorn(self.private, {
            "DT_DB_PATH": str(self.state / "dt.db"), "DT_WAKEUP_PATH": str(self.state / "wakeup"),
            "DT_TOKEN_FILE": str(self.admin_token), "DT_HINT_TOKEN_FILE": str(self.hint_token)})
        self.filter_config.write_text(f"url = {self.api.url}\ntimeout_seconds = 0.5\n"
                                      f"token_file = {self.hint_token}\n")
        self.filter_config.chmod(0o644)

    def point_filter_at(self, url: str) -> None:
        self.filter_config.write_text(f"url = {url}\ntimeout_seconds = 0.5\n"
                                      f"token_file = {self.hint_token}\n")

    def close(self) -> None:
        if self.reconciler is not None:
            stop_process(self.reconciler)
            self.reconciler = None
        if self.api is not None:
            self.api.stop()
            self.api = None
        shutil.rmtree(self.shared, ignore_errors=True)

    # -- users' side -----------------------------------------------------------------------
    def qsub(self, script: str, *args: str, timeout: float = 30.0
             ) -> subprocess.CompletedProcess[bytes]:
        """qsub as the job user, script on stdin, our filter in torque.cfg."""
        return self.torque.server.run(
            ["qsub", *args], user=self.torque.job_user, input=script.encode(),
            extra_env={"DT_FILTER_CONFIG": str(self.filter_config)}, timeout=timeout)

    def submit(self, script: str, *args: str) -> str:
        result = self.qsub(script, *args)
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout.decode().strip()

    # -- reading what TORQUE, Nova and the store say ----------------------------------------
    def jobs(self) -> dict[str, FinishedJob]:
        result = self.torque.server.run(["qstat", "-x", "-t"])
        assert result.returncode == 0, result.stderr.decode()
        jobs = {}
        for element in ElementTree.fromstring(result.stdout or b"<Data/>").iter("Job"):
            status = element.findtext("exit_status")
            jobs[element.findtext("Job_Id")] = FinishedJob(
                element.findtext("Job_Id"), element.findtext("job_state"),
                int(status) if status is not None else None, element.findtext("exec_host"))
        return jobs

    def nodes(self) -> dict[str, dict[str, str]]:
        result = self.torque.server.run(["pbsnodes", "-x"])
        if result.returncode != 0:
            return {}
        return {element.findtext("name"): {child.tag: child.text or "" for child in element}
                for element in ElementTree.fromstring(result.stdout).iter("Node")}

    def records(self, *, include_deleted: bool = True) -> tuple[NodeRecord, ...]:
        with SqliteStore(self.state / "dt.db") as store:
            return store.records(include_deleted=include_deleted)

    def last_pass(self) -> PassReport | None:
        with SqliteStore(self.state / "dt.db") as store:
            return store.last_pass()

    def events(self, kind: str | None = None) -> list[str]:
        with SqliteStore(self.state / "dt.db") as store:
            return [f"{event.kind} {event.hostname or ''} {event.message}"
                    for event in store.events(limit=1000) if kind in (None, event.kind)]

    def owned_servers(self) -> list:
        return [server for server in self.nova.admin.servers.list(limit=-1)
                if (server.metadata or {}).get("dynamictorque:cluster") == CLUSTER_ID]

    def status(self) -> dict:
        assert self.api is not None
        return requests.get(f"{self.api.url}/status", timeout=10,
                            headers={"Accept": "application/json"}).json()

    def wait_for(self, condition: Callable[[], object], what: str, *,
                 seconds: float = WAIT_SECONDS, poll: float = 0.5) -> object:
        deadline = time.monotonic() + seconds
        while True:
            value = condition()
            if value:
                log.info("%s: after %.1f s", what, time.monotonic() - deadline + seconds)
                return value
            if self.reconciler is not None and self.reconciler.poll() is not None:
                raise AssertionError(f"the reconciler exited ({self.reconciler.returncode}) "
                                     f"while waiting for {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {seconds:.0f} s\n{self.describe()}")
            time.sleep(poll)

    def all_done(self, job_ids: list[str]) -> bool:
        jobs = self.jobs()
        return all(job_id in jobs and jobs[job_id].state == "C" for job_id in job_ids)

    def scaled_to_zero(self) -> bool:
        live = [record for record in self.records()
                if record.state is not NodeState.DELETED]
        return not live and not self.owned_servers() and not self.fleet.names()

    def slots_restored(self) -> bool:
        """Every slot entry is an empty slot again: offline, with the slot note."""
        nodes = self.nodes()
        return bool(nodes) and all("offline" in node.get("state", "")
                                   and node.get("note") == SLOT_NOTE
                                   for node in nodes.values())

    def describe(self) -> str:
        records = [(record.hostname, record.state.value) for record in self.records()
                   if record.state is not NodeState.DELETED]
        nodes = {name: (node.get("state"), node.get("note")) for name, node in
                 self.nodes().items()}
        jobs = {job.id: (job.state, job.exec_host) for job in self.jobs().values()}
        return (f"records={records}\nnodes={nodes}\njobs={jobs}\n"
                f"servers={[(s.name, s.status) for s in self.owned_servers()]}\n"
                f"moms={sorted(self.fleet.names())} fleet errors={self.fleet.errors}\n"
                f"--- reconciler log\n{self.log_tail()}")

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.reconciler_log.read_text(errors="replace")[-size:]
        except OSError:
            return "(no log)"

    def failures(self) -> list[str]:
        """The reconciler's failed actions (its log's "action failed" lines)."""
        try:
            text = self.reconciler_log.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if "action failed" in line]

    def _run_ok(self, argv: list[str], env: Mapping[str, str] | None = None) -> str:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                                env=dict(env or self.environment()), stdin=subprocess.DEVNULL,
                                check=False)
        assert result.returncode == 0, f"{argv[:3]} exited {result.returncode}:\n" \
                                       f"{result.stdout}\n{result.stderr}"
        return result.stdout


def job_output(torque: LiveTorque, job_id: str, name: str) -> str:
    """What a job wrote to its stdout file in the job user's home (NAME.oSEQ)."""
    sequence = re.match(r"(\d+)", job_id)
    assert sequence is not None
    path = Path(pwd.getpwnam(torque.job_user).pw_dir) / f"{name}.o{sequence.group(1)}"
    return path.read_text(errors="replace") if path.exists() else ""
