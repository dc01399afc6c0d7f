"""Bench: a node's life on real TORQUE 6.1.3 and the real Nova API.

dynamictorque is deployed as tests/live_torque/site.py deploys it (its documented steps,
the reconciler and the API as processes); each instance becomes a real pbs_mom in its own
network namespace once its node entry is announced, as the worker user-data does. A burst
of whole-node jobs is submitted one a second, so later submissions arrive while the
reconciler is joining the nodes of earlier ones (each join waits 2 s in pbs_server). The
bench measures, against the issue's targets:

- qsub -> Nova create (the reconciler's record, written just before servers.create):
  p95 <= 0.5 s, also while nodes are joining;
- pbs_mom start -> node ready in TORQUE (free or running a job): <= 10 s;
- qsub -> job running;
- job end -> Nova delete request, minus max_idle_time: <= 2 passes;
- releases that failed on their first try: 0;
- a pbs_server restart with every node busy: seconds until TORQUE shows the nodes again
  (their moms report), then passes until no node is left offline or with a stale note
  (target <= 2).

Needs root, ip netns and the shared real-torque source (as `make test` does); otherwise it
says why and exits 0. Results go to bench/results/real_torque.json.

    .venv/bin/python bench/bench_real_torque.py [--jobs 10]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtserver.store import StoreError  # noqa: E402
from tests.live_torque.site import PASS_SECONDS, Site  # noqa: E402
from tests.tooling.novastack.plugin import prepare  # noqa: E402
from tests.tooling.novastack.stack import HarnessVenv, NovaStack, default_home  # noqa: E402
from tests.tooling.realtorque.install import TorqueUnavailable, ensure_built  # noqa: E402
from tests.tooling.realtorque.moms import MomFleet, remove_stale_namespaces  # noqa: E402
from tests.tooling.realtorque.plugin import LiveTorque, nova_servers  # noqa: E402
from tests.tooling.realtorque.server import (  # noqa: E402
    NETWORK, SERVER_NAME, HostBridge, HostsBlock, TorqueServer, ensure_job_user)

RESULTS = Path(__file__).resolve().parent / "results" / "real_torque.json"
IDLE_SECONDS = 20
JOB_SECONDS = 40
POLL = 0.25                      # the watcher's own load must stay small
JOB = f"#!/bin/sh\n#PBS -l nodes=1:ppn=2:CLOUD\nsleep {JOB_SECONDS}\n"
_DELETE_LINE = re.compile(r"^(\S+ \S+) INFO dtserver\.cloud\.nova instance delete requested "
                          r"id=\S+ name=(\S+)")


class Watcher:
    """Polls TORQUE and the store on its own thread and notes when things first happen,
    on the monotonic clock."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.ready: dict[str, float] = {}            # node -> first seen up after its mom
        self.started: dict[str, float] = {}          # job -> first seen running
        self.ended: dict[str, float] = {}            # job -> first seen complete
        self.created: list[tuple[float, str]] = []   # (record created, hostname)
        self._known: set[str] = set()
        self.misses: list[str] = []
        self.passes: dict[datetime, float] = {}     # pass -> its duration
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._look()
            except (AssertionError, OSError, StoreError, ElementTree.ParseError) as error:
                self.misses.append(repr(error))     # the server restarting, say
            self._stop.wait(POLL)

    def _look(self) -> None:
        offset = time.time() - time.monotonic()
        now = time.monotonic()
        last = self.site.last_pass()
        if last is not None and last.time not in self.passes:
            self.passes[last.time] = last.duration_seconds
        for record in self.site.records():
            if record.id not in self._known:
                self._known.add(record.id)
                self.created.append((record.created.timestamp() - offset, record.hostname))
        started = {mom.name for mom in list(self.site.fleet.moms.values())
                   if mom.started_at is not None}
        for name, node in self.site.nodes().items():
            if name in started and name not in self.ready and "down" not in node["state"]:
                self.ready[name] = now
        for job in self.site.jobs().values():
            if job.state == "R":
                self.started.setdefault(job.id, now)
            elif job.state == "C":
                self.ended.setdefault(job.id, now)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median": statistics.median(values),
            "p95": percentile(values, 0.95), "max": max(values)}


def delete_requests(site: Site) -> dict[str, float]:
    """Node name -> when the reconciler asked Nova to delete its instance (log, wall)."""
    found = {}
    for line in site.reconciler_log.read_text(errors="replace").splitlines():
        match = _DELETE_LINE.match(line)
        if match:
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            found.setdefault(match.group(2), when)
    return found


def run(site: Site, jobs: int) -> dict:
    site.deploy()
    site.wait_for(site.slots_restored, "slots registered")
    watcher = Watcher(site)
    watcher.start()
    try:
        submitted: dict[str, float] = {}
        for _ in range(jobs):
            started = time.monotonic()
            submitted[site.submit(JOB)] = started
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        site.wait_for(lambda: len(watcher.started) == jobs, "every job running")

        # Restart pbs_server with every node busy.
        restarted = time.monotonic()
        site.torque.server.restart_server()
        site.wait_for(lambda: all("down" not in node["state"] for name, node in
                                  site.nodes().items() if name in site.fleet.names()),
                      "moms reported after the restart", poll=POLL)
        torque_back = time.monotonic()

        def usable() -> bool:
            nodes = site.nodes()
            return all("offline" not in nodes[name]["state"] and not nodes[name].get("note")
                       for name in site.fleet.names())

        site.wait_for(usable, "every node usable after the restart", poll=POLL)
        usable_at = time.monotonic()

        site.wait_for(lambda: len(watcher.ended) == jobs, "every job done")
        site.wait_for(site.scaled_to_zero, "every instance deleted")
    finally:
        watcher.stop()

    offset = time.time() - time.monotonic()
    creates = sorted(watcher.created)
    create_latency = [created - started for (created, _), started
                      in zip(creates, sorted(submitted.values()))]
    ready_after_mom = [watcher.ready[mom.name] - mom.started_at
                       for mom in site.fleet.history if mom.name in watcher.ready]
    job_start = [watcher.started[job] - submitted[job] for job in submitted]
    host_of = {job.id: job.exec_host.split("/")[0] for job in site.jobs().values()
               if job.exec_host}
    deletes = delete_requests(site)
    idle_to_delete = [deletes[host_of[job]] - offset - watcher.ended[job] - IDLE_SECONDS
                      for job in submitted if host_of.get(job) in deletes]
    release_failures = [line for line in site.failures() if "ReleaseNode" in line]
    return {
        "jobs": jobs, "pass_seconds": PASS_SECONDS, "max_idle_time": IDLE_SECONDS,
        "qsub_to_nova_create_s": summary(create_latency),
        "qsub_to_nova_create_samples_s": [round(value, 3) for value in create_latency],
        "pass_duration_s": summary(list(watcher.passes.values())),
        "mom_start_to_node_ready_s": summary(ready_after_mom),
        "qsub_to_job_running_s": summary(job_start),
        "job_end_to_nova_delete_minus_idle_s": summary(idle_to_delete),
        "release_first_try_failures": len(release_failures),
        "failed_actions": len(site.failures()),
        "restart_until_moms_reported_s": torque_back - restarted,
        "restart_moms_reported_until_usable_s": usable_at - torque_back,
        "restart_passes_until_usable": (usable_at - torque_back) / PASS_SECONDS,
        "instances_launched": len({record.instance_id for record in site.records()
                                   if record.instance_id}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    try:
        install = ensure_built()
    except TorqueUnavailable as error:
        print(f"skipped: {error}")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-real-torque-") as scratch:
        workdir = Path(scratch)
        stack = NovaStack(HarnessVenv(default_home()), workdir / "nova")
        server = TorqueServer(install, workdir / "torque")
        bridge, hosts = HostBridge(), HostsBlock()
        moms = install.prefix.parent / "moms" / f"bench-{os.getpid()}"
        shared = install.prefix.parent / "sites" / f"bench-{os.getpid()}"
        server.acquire()
        fleet = None
        site = None
        try:
            remove_stale_namespaces()
            bridge.up()
            hosts.install({SERVER_NAME: str(NETWORK.ip)})
            ensure_job_user()
            live = prepare(stack.start(), workdir / "nova")
            server.start()
            torque = LiveTorque(install, server, workdir)
            fleet = MomFleet(install, moms, SERVER_NAME, lambda: nova_servers(live))
            fleet.start()
            site = Site(torque, live, workdir / "site", shared, fleet,
                        idle_seconds=IDLE_SECONDS, max_nodes=args.jobs)
            (workdir / "site").mkdir()
            results = run(site, args.jobs)
        finally:
            if site is not None:
                site.close()
            if fleet is not None:
                fleet.stop()
            stack.stop()
            server.stop()
            bridge.down()
            hosts.restore()
            server.release()
            shutil.rmtree(moms, ignore_errors=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
