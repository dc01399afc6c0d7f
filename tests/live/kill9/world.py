"""What happens around the reconciler, on a thread of the harness's own:
- Nova is the real Nova API; the harness plays each instance's cloud-init: once a server of
  ours is ACTIVE and its node entry is announced (metadata), its pbs_mom starts in the
  emulator (`mom_up`), and it dies with the server (`mom_down`);
- the workload submits waves of one-core jobs with the emulator's `qsub`: scale-up, join,
  jobs run on the moms, finish, nodes idle, drain, release, delete.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Sequence

from dtserver.fakes.torque.persistence import open_server
from dtserver.planning.repair import SLOT_NOTE
from tests.live.kill9.checks import Violation
from tests.live.kill9.nova import Server, live_servers, nova_client_for
from tests.live.kill9.reconciler import Site

log = logging.getLogger(__name__)

POLL = 0.25                          # the world's tick
STUCK_QUEUED = 20.0                  # a wave whose jobs wait this long lets the next one in


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
