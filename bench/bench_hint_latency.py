"""Bench: hint received -> Nova create call (docs/design.md; target p95 <= 200 ms).

The API runs under real gunicorn (deploy/gunicorn.conf.py) on loopback and writes the
wakeup FIFO after storing each hint. The reconciler runs its ordinary loop in this
process (run_forever with a 60 s poll interval, so only the wakeup can explain a fast
launch) over the in-process TorqueEmulator and NovaCloud on FakeNova, all on the real
clock. Each hint asks for one more node on an idle cluster: the time is from just before
the POST to the moment NovaCloud.create_instance is called, split at the moment the
reconciler's FIFO read returns (the API writes the FIFO before it answers 202, so the
202 usually arrives after the wakeup); the POST's own round trip is shown beside.

With `--torque cli`, TORQUE is read through the emulator's executables (qstat, pbsnodes,
qmgr as child processes, as the real adapter runs real TORQUE's), which adds their start
time to each pass.

    .venv/bin/python bench/bench_hint_latency.py [--hints 50] [--torque inprocess|cli]
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtserver.batch.torque import TorqueBatch  # noqa: E402
from dtserver.batch.torque_commands import Runner, SubprocessRunner  # noqa: E402
from dtserver.bootstrap import build_nova_cloud  # noqa: E402
from dtserver.clock import SystemClock  # noqa: E402
from dtserver.fakes.nova import FakeNova  # noqa: E402
from dtserver.fakes.torque.cli import install_bin  # noqa: E402
from dtserver.fakes.torque.persistence import EmulatorHome, init_home  # noqa: E402
from dtserver.fakes.torque.server import TorqueEmulator  # noqa: E402
from dtserver.fakes.world import DEMO_FLAVORS, DEMO_IMAGE, LockedRunner  # noqa: E402
from dtserver.policy import HintTrust  # noqa: E402
from dtserver.reconcile.loop import Reconciler  # noqa: E402
from dtserver.wakeup import Wakeup  # noqa: E402
from dtserver.store.sqlite import SqliteStore  # noqa: E402
from tests.e2e.support import Gunicorn, TimedCloud  # noqa: E402
from tests.sim.scenario import scenario_policy  # noqa: E402

TARGET_P95_MS = 200.0
POLL_SECONDS = 60.0
WAIT_SECONDS = 10.0
SETTLE_HIERARCHY_SECONDS = 1.0
HINT = {"user": "alice", "queue": "batch", "resources": ["nodes=1:ppn=2", "walltime=01:00:00"],
        "submit_host": "login1", "job_name": "bench"}


class TimedWakeup(Wakeup):
    """Notes when each wait ended because a byte arrived, and whether the loop is waiting
    (idle) rather than in a pass."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.woken: list[float] = []
        self.idle = threading.Event()

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        self.idle.set()
        woken = super().wait(timeout, stop)
        self.idle.clear()
        if woken:
            self.woken.append(time.monotonic())
        return woken


def settle(reconciler: Reconciler) -> None:
    """Passes until the slots are registered and offline and a pass has nothing to do."""
    started = time.monotonic()
    while time.monotonic() < started + 120:
        report = reconciler.run_once()
        if not report.plan.actions and time.monotonic() - started > 2 * SETTLE_HIERARCHY_SECONDS:
            return
        time.sleep(SETTLE_HIERARCHY_SECONDS / 2)
    raise SystemExit("the idle cluster did not settle within 120 s")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def line(label: str, values: list[float]) -> str:
    return (f"  {label:<22} median {statistics.median(values):6.1f} ms  "
            f"p95 {percentile(values, 0.95):6.1f} ms  max {max(values):6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hints", type=int, default=50)
    parser.add_argument("--torque", choices=("inprocess", "cli"), default="inprocess")
    options = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    clock = SystemClock()
    # One slot per hint: every hint launches a node of its own. They all come from one user
    # on one host, so the hint budget (policy.HintTrust) is raised to hold them all.
    cores = 2 * options.hints
    policy = scenario_policy(max_nodes=options.hints + 1, max_cores=4 * options.hints,
                             hint_ttl=timedelta(seconds=600),
                             hints=HintTrust(cores_per_user=cores, cores_per_source=cores,
                                             cores_total=cores, max_array=1))
    # Instances never finish booting: the cluster stays idle and each pass stays the same.
    nova = FakeNova(clock, flavors=DEMO_FLAVORS, images=(DEMO_IMAGE,), boot_delay=3600.0)
    # A new node entry loses a `pbsnodes -o` until its hierarchy is sent (10 s on TORQUE);
    # 1 s here, so the slots settle quickly before the measurement.
    emulator_options = {"hierarchy_delay": SETTLE_HIERARCHY_SECONDS}

    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        directory = Path(tmp)
        store = SqliteStore(directory / "dt.db")
        wakeup = TimedWakeup(directory / "wakeup")
        cloud = TimedCloud(build_nova_cloud(nova, store, cluster_id="bench", clock=clock))
        runner: Runner
        if options.torque == "cli":
            home = EmulatorHome(directory / "torque")
            init_home(home, **emulator_options)
            install_bin(directory / "bin", home=home)
            runner = SubprocessRunner(str(directory / "bin"))
        else:
            runner = LockedRunner(TorqueEmulator(clock, **emulator_options), threading.RLock())
        reconciler = Reconciler(batch=TorqueBatch(runner), cloud=cloud, store=store,
                                clock=clock, policy=policy)
        settle(reconciler)
        api = Gunicorn(directory, {"DT_DB_PATH": str(directory / "dt.db"),
                                   "DT_WAKEUP_PATH": str(directory / "wakeup")})
        stop = threading.Event()
        loop = threading.Thread(target=reconciler.run_forever, args=(stop,),
                                kwargs={"interval": POLL_SECONDS, "wakeup": wakeup})
        load_before = os.getloadavg()
        total, post, wake, plan = [], [], [], []
        try:
            loop.start()
            with requests.Session() as session:
                for index in range(options.hints):
                    # Idle cluster: the last hint's pass is over, the loop waits.
                    if not wakeup.idle.wait(WAIT_SECONDS):
                        raise SystemExit("the reconciler loop never went back to waiting")
                    wakeup.woken.clear()
                    started = time.monotonic()
                    response = session.post(f"{api.url}/v1/hints", json=HINT, timeout=5)
                    answered = time.monotonic()
                    if response.status_code != 202:
                        raise SystemExit(f"hint refused: {response.status_code} {response.text}")
                    deadline = started + WAIT_SECONDS
                    while len(cloud.creates) <= index and time.monotonic() < deadline:
                        time.sleep(0.001)
                    if len(cloud.creates) <= index:
                        raise SystemExit(f"hint {index}: no create within {WAIT_SECONDS} s")
                    created = cloud.creates[index][0]
                    woken = wakeup.woken[0] if wakeup.woken else created
                    total.append((created - started) * 1000)
                    post.append((answered - started) * 1000)
                    wake.append((woken - started) * 1000)
                    plan.append((created - woken) * 1000)
        finally:
            stop.set()
            loop.join(timeout=WAIT_SECONDS)
            api.stop()
            wakeup.close()
            store.close()
        load_after = os.getloadavg()

    print(f"hint -> Nova create call, {options.hints} hints, idle cluster, gunicorn + "
          f"reconciler loop on the wakeup FIFO, TORQUE {options.torque}, "
          f"{os.cpu_count()} CPUs")
    print(line("total", total) + f"   (target p95 <= {TARGET_P95_MS:g} ms)")
    print(line("POST sent until woken", wake))
    print(line("woken until create", plan))
    print(line("POST until 202", post))
    print(f"  load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
