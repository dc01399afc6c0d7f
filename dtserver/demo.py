"""The self-contained demo: the API and the reconciler on the emulated cluster, live.

Simulated users submit a realistic burst of jobs: most announce themselves through the
hint path (as the submit filter does: POST /v1/hints, then qsub), some only through the
queue (active mode). The terminal shows nodes launching, joining, running jobs, draining
and being deleted; a summary closes the run.
"""
from __future__ import annotations

import json
import random
import secrets
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from dtserver.api import create_app
from dtserver.api.devserver import serve_in_thread
from dtserver.api.settings import ApiSettings
from dtserver.batch import BatchUnavailable
from dtserver.bootstrap import (
    build_batch, build_cloud, build_fake_world, build_reconciler, build_store)
from dtserver.clock import ScaledClock, SystemClock
from dtserver.config import PoolSettings, Settings
from dtserver.fakes.world import DEMO_IMAGE
from dtserver.model import JobState, NodeState
from dtserver.wakeup import Wakeup
from dtserver.store.sqlite import SqliteStore

ARRAY_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class DemoJob:
    at: float                 # simulated seconds after the start
    name: str
    resources: tuple[str, ...]
    runtime: float
    cores: int
    array: str | None = None
    hinted: bool = True       # False: the user's qsub host has no filter (active mode)


@dataclass(frozen=True)
class DemoOptions:
    duration: float = 75.0     # wall seconds
    speed: float = 60.0        # simulated seconds per wall second
    workload: str = "burst"    # burst | steady | mpi
    port: int = 8080
    seed: int = 7
    boot_delay: float = 60.0   # simulated seconds
    idle_timeout: float = 240.0


def workload(kind: str, horizon: float, rng: random.Random) -> list[DemoJob]:
    """Submissions over the first half of `horizon` (simulated seconds), so the second
    half shows the cluster draining back to nothing."""
    shapes = [  # weight, resources, cores, runtime range (s)
        (50, ("nodes=1:ppn=1", "walltime=00:30:00"), 1, (120, 600)),
        (25, ("nodes=1:ppn=4", "mem=6gb", "walltime=01:00:00"), 4, (300, 1200)),
        (15, ("nodes=2:ppn=4", "walltime=01:00:00"), 8, (600, 1500)),
        (10, ("nodes=1:ppn=2:CLOUD", "walltime=00:20:00"), 2, (120, 400)),
    ]
    if kind == "mpi":
        shapes = [(1, ("nodes=2:ppn=8", "walltime=02:00:00"), 16, (600, 1500)),
                  (1, ("nodes=4:ppn=2", "walltime=01:00:00"), 8, (300, 900))]
    weights = [shape[0] for shape in shapes]
    arrivals: list[float] = []
    window = horizon * 0.4
    if kind in ("burst", "mpi"):
        arrivals += [rng.uniform(0, 30) for _ in range(18)]              # the morning burst
        arrivals += [window / 2 + rng.uniform(0, 60) for _ in range(10)]
    arrivals += [rng.uniform(0, window) for _ in range(12 if kind != "steady" else 40)]
    # Runtimes shrink with short demos so every job ends and the cluster drains in time.
    stretch = min(1.0, horizon * 0.3 / max(high for *_, (_, high) in shapes))
    jobs = []
    for index, at in enumerate(sorted(arrivals)):
        _, resources, cores, (low, high) = rng.choices(shapes, weights)[0]
        array = "1-4" if index % 9 == 4 and cores == 1 else None
        jobs.append(DemoJob(at, f"job{index}", resources, rng.uniform(low, high) * stretch,
                            cores * (4 if array else 1), array, hinted=index % 5 != 3))
    return jobs


def demo_settings(state_dir: Path, options: DemoOptions) -> Settings:
    pool = PoolSettings(name="cloud", flavors=("m1.small", "m1.medium", "m1.large"),
                        image=DEMO_IMAGE, max_nodes=12, name_prefix="vnode-")
    return Settings(cluster_id="demo", state_dir=state_dir, batch_driver="emulator",
                    cloud_driver="fake", pools=(pool,), max_cores=64,
                    idle_timeout=options.idle_timeout, job_poller_interval=10.0,
                    torque_server="vm")


@dataclass
class Tally:
    submitted: dict[str, float] = field(default_factory=dict)   # job id -> sim submit
    started: dict[str, float] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    cores: dict[str, int] = field(default_factory=dict)
    runtime: dict[str, float] = field(default_factory=dict)


class Demo:
    def __init__(self, options: DemoOptions, out: TextIO) -> None:
        self.options = options
        self.out = out
        self.stop = threading.Event()
        self.start = SystemClock().now().replace(microsecond=0)
        self.clock = ScaledClock(self.start, options.speed)
        self.tally = Tally()

    def elapsed(self) -> float:
        return (self.clock.now() - self.start).total_seconds()

    def say(self, text: str) -> None:
        stamp = timedelta(seconds=int(self.elapsed()))
        self.out.write(f"[+{stamp}] {text}\n")
        self.out.flush()

    def run(self) -> int:
        options = self.options
        with tempfile.TemporaryDirectory(prefix="dtdemo-") as tmp:
            state = Path(tmp)
            settings = demo_settings(state, options)
            world = build_fake_world(self.clock, boot_delay=options.boot_delay)
            store = build_store(settings)
            batch = build_batch(settings, world)
            cloud = build_cloud(settings, world, store=store)
            reconciler = build_reconciler(settings, clock=self.clock, batch=batch,
                                          cloud=cloud, store=store)
            wakeup = Wakeup(settings.wakeup_path)
            token_file = state / "admin.token"
            token_file.write_text(secrets.token_hex(16) + "\n")
            token_file.chmod(0o600)
            app = create_app(ApiSettings(db_path=settings.db_path, token_file=token_file,
                                         wakeup_path=settings.wakeup_path),
                             store=store, clock=self.clock)
            server = serve_in_thread(app, "127.0.0.1", options.port)
            url = f"http://127.0.0.1:{server.port}"
            horizon = options.duration * options.speed
            jobs = workload(options.workload, horizon, random.Random(options.seed))
            self.out.write(
                f"dynamictorque demo: {len(jobs)} jobs over {horizon / 3600:.1f} simulated h "
                f"at {options.speed:g}x; boot {options.boot_delay:g} s, idle timeout "
                f"{options.idle_timeout:g} s (simulated)\n"
                f"API: curl {url}/status   (Ctrl-C stops)\n"
                f"     admin token in {token_file}\n\n")
            threads = [
                threading.Thread(target=reconciler.run_forever, name="reconciler",
                                 kwargs={"stop": self.stop, "wakeup": wakeup,
                                         "interval": settings.job_poller_interval
                                         / options.speed}),
                threading.Thread(target=self.submit_all, args=(jobs, url, world, batch),
                                 name="users"),
            ]
            # The first pass registers the node slots: qsub refuses `-l nodes=` jobs before.
            reconciler.run_once()
            try:
                for thread in threads:
                    thread.start()
                self.watch(store, batch, options.duration, users=threads[1])
            finally:
                self.stop.set()
                for thread in threads:
                    thread.join(timeout=10)
                server.shutdown()
                wakeup.close()
            self.summary(store)
            store.close()
        return 0

    # -- the simulated users ------------------------------------------------------------
    def submit_all(self, jobs: list[DemoJob], url: str, world, batch) -> None:
        for job in jobs:
            while not self.stop.is_set() and self.elapsed() < job.at:
                self.stop.wait(0.05)
            if self.stop.is_set():
                return
            if job.hinted:
                self.post_hint(url, job)
            argv = ["qsub", "-N", job.name, "-v", f"DT_EMULATOR_RUNTIME={int(job.runtime)}"]
            for resource in job.resources:
                argv += ["-l", resource]
            if job.array:
                argv += ["-t", job.array]
            result = world.runner().run(argv, stdin=b"#!/bin/sh\nsleep 1\n")
            job_id = result.stdout.decode().strip()
            if result.status != 0:
                self.say(f"qsub refused {job.name}: {result.stderr.strip()}")
                continue
            via = "hint + queue" if job.hinted else "queue only"
            self.say(f"qsub {job_id} {' '.join(job.resources)}"
                     f"{' -t ' + job.array if job.array else ''} ({via})")
            self.tally.submitted[job_id] = job.at
            self.tally.cores[job_id] = job.cores
            self.tally.runtime[job_id] = job.runtime

    def post_hint(self, url: str, job: DemoJob) -> None:
        body = json.dumps({"user": "alice", "queue": "batch", "resources": list(job.resources),
                           "array": job.array, "job_name": job.name}).encode()
        request = urllib.request.Request(f"{url}/v1/hints", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=2).close()
        except (urllib.error.URLError, OSError) as error:
            self.say(f"hint not delivered ({error}); the queue poll will find the job")

    # -- the live view --------------------------------------------------------------------
    def watch(self, store: SqliteStore, batch, duration: float,
              users: threading.Thread) -> None:
        """Show events and a status line until the time is up, or until every job has run
        and every instance is gone again."""
        deadline = time.monotonic() + duration
        seen_event = 0
        last_status = 0.0
        while not self.stop.is_set() and time.monotonic() < deadline:
            for event in reversed(store.events(limit=50)):
                if event.id > seen_event:
                    seen_event = event.id
                    self.say(f"{event.kind:8} {event.message}")
            if not users.is_alive() and self.is_drained(store, batch):
                self.say(self.status_line(store, batch))
                self.say("every job ran and every instance is gone: done")
                return
            self.observe_jobs(batch)
            if time.monotonic() - last_status >= 3:
                last_status = time.monotonic()
                self.say(self.status_line(store, batch))
            self.stop.wait(0.25)

    def is_drained(self, store: SqliteStore, batch) -> bool:
        try:
            jobs = batch.jobs()
        except BatchUnavailable:
            return False
        return not store.records() and all(job.state is JobState.COMPLETED for job in jobs)

    def observe_jobs(self, batch) -> None:
        try:
            jobs = batch.jobs()
        except BatchUnavailable:
            return
        now = self.elapsed()
        tally = self.tally
        for job in jobs:
            parent = ARRAY_INDEX.sub("[]", job.id)
            if job.id not in tally.submitted and parent in tally.submitted:
                # An array subjob: submitted with its parent, one share of its cores.
                tally.submitted[job.id] = tally.submitted[parent]
                tally.cores[job.id] = tally.cores[parent] // 4
                tally.runtime[job.id] = tally.runtime[parent]
            if job.state in (JobState.RUNNING, JobState.EXITING, JobState.COMPLETED):
                tally.started.setdefault(job.id, now)
            if job.state is JobState.COMPLETED:
                tally.finished.add(job.id)

    def status_line(self, store: SqliteStore, batch) -> str:
        states: dict[str, int] = {}
        for record in store.records():
            states[record.state.value] = states.get(record.state.value, 0) + 1
        try:
            jobs = batch.jobs()
            queued = sum(1 for job in jobs if job.state is JobState.QUEUED)
            running = sum(1 for job in jobs if job.state is JobState.RUNNING)
        except BatchUnavailable:
            queued = running = -1
        nodes = ", ".join(f"{state} {count}" for state, count in sorted(states.items())) or "none"
        return f"status   queued {queued}, running {running} | nodes: {nodes}"

    def summary(self, store: SqliteStore) -> None:
        now = self.clock.now()
        records = store.records(include_deleted=True)
        launched = sum(1 for record in records if record.instance_id)
        deleted = sum(1 for record in records if record.state is NodeState.DELETED
                      and record.instance_id)
        billed = sum(record.cores * ((record.state_since if record.state is NodeState.DELETED
                                      else now) - record.created).total_seconds()
                     for record in records if record.instance_id) / 3600
        tally = self.tally
        used = sum(tally.cores[job] * tally.runtime[job] for job in tally.finished
                   if job in tally.cores) / 3600
        waits = [tally.started[job] - tally.submitted[job] for job in tally.started
                 if job in tally.submitted]
        mean_wait = sum(waits) / len(waits) if waits else 0.0
        subjobs = [job for job in tally.submitted if ARRAY_INDEX.search(job)]
        self.out.write(
            "\nsummary\n"
            f"  jobs submitted        {len(tally.submitted) - len(subjobs)} "
            f"(their arrays ran {len(subjobs)} subjobs)\n"
            f"  jobs started / done   {len(tally.started)} / {len(tally.finished)}\n"
            f"  instances launched    {launched}\n"
            f"  instances deleted     {deleted}\n"
            f"  billed core-hours     {billed:.2f}\n"
            f"  used core-hours       {used:.2f} (finished jobs)\n"
            f"  mean wait             {mean_wait:.0f} s (boot delay {self.options.boot_delay:g} s)\n")
