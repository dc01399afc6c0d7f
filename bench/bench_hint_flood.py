"""Hostile hints: what a flood of hints with no job behind them makes the scaler do.

    python bench/bench_hint_flood.py [--users 100] [--sources 1] [--minutes 10] [--every 5]
                                     [--stored 10000]

Flood: `--users` users (claimed from `--sources` addresses) each post a hint every `--every`
simulated seconds for `--minutes` minutes, no job ever submitted: arrays of 100,000 indices,
bodies of about 64 KB. Hints go through the store with the API's limits (what is refused
there is a 429); the reconciler runs a pass after every second that brought hints and every
10 s, on the emulated TORQUE and fake Nova (boot 120 s), until an hour has passed. Reported:
hints stored and refused, instances launched, core-hours billed with no job behind them
(all of them: no job exists), per user per hour, peak memory and pass times.

Stored: `--stored` hints with maximal arrays already waiting when a reconciler starts; one
pass plans them (target: <= 1 s and <= 200 MB), and the next pass with them cached.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtserver.actions import LaunchInstance  # noqa: E402
from dtserver.batch.torque import TorqueBatch  # noqa: E402
from dtserver.bootstrap import build_fake_world  # noqa: E402
from dtserver.clock import FakeClock  # noqa: E402
from dtserver.cloud.nova import NovaCloud  # noqa: E402
from dtserver.fakes.world import DEMO_FLAVORS, DEMO_IMAGE, FakeWorld  # noqa: E402
from dtserver.model import NodeState  # noqa: E402
from dtserver.policy import Policy, Pool  # noqa: E402
from dtserver.reconcile.loop import Reconciler  # noqa: E402
from dtserver.store import HintLimitReached, HintLimits  # noqa: E402
from dtserver.store.sqlite import SqliteStore  # noqa: E402
from tests.builders import T0  # noqa: E402

CLUSTER = "flood"
HORIZON = timedelta(hours=1)
PASS_EVERY = 10


def policy() -> Policy:
    pool = Pool("cloud", DEMO_FLAVORS, DEMO_IMAGE, max_nodes=12, name_prefix="vnode-")
    return Policy(pools=(pool,), hint_ttl=timedelta(seconds=20))


def hint_body(user: str) -> dict:
    # 60 directives of 1,000 characters: about 64 KB, under the API's 64 KiB body limit.
    return {"user": user, "queue": "batch", "resources": ["nodes=1:ppn=8"],
            "array": "0-99999", "directives": ["#PBS -N " + "x" * 992] * 60}


def reconciler(store: SqliteStore, world: FakeWorld) -> Reconciler:
    cloud = NovaCloud(world.nova, cluster_id=CLUSTER, installation=store.installation_id(),
                      clock=world.clock)
    return Reconciler(batch=TorqueBatch(world.runner()), cloud=cloud, store=store,
                      clock=world.clock, policy=policy())


def fake_world(clock: FakeClock) -> FakeWorld:
    return build_fake_world(clock, boot_delay=120.0, scheduler_iteration=60.0)


def flood(args: argparse.Namespace, folder: Path) -> None:
    clock = FakeClock(T0)
    store = SqliteStore(folder / "flood.db")
    world = fake_world(clock)
    scaler = reconciler(store, world)
    limits = HintLimits()
    users = [f"user{index:03d}" for index in range(args.users)]
    owner: dict[int, str] = {}
    launched_for: dict[tuple, set[str]] = {}       # (hostname, time) -> users it served
    stored = refused = 0
    pass_seconds: list[float] = []
    flood_end = args.minutes * 60
    for second in range(int(HORIZON.total_seconds()) + 1):
        clock.advance(0 if second == 0 else 1)
        world.nova.tick()
        posted = False
        if second < flood_end:
            for index, user in enumerate(users):
                if (second + index) % args.every == 0:
                    try:
                        hint_id = store.add_hint(clock.now(), hint_body(user), limits=limits,
                                                 source=f"192.0.2.{index % args.sources + 1}")
                    except HintLimitReached:
                        refused += 1
                        continue
                    owner[hint_id] = user
                    stored += 1
                    posted = True
        if posted or second % PASS_EVERY == 0:
            started = time.perf_counter()
            report = scaler.run_once()
            pass_seconds.append(time.perf_counter() - started)
            for launch in report.plan.of_type(LaunchInstance):
                launched_for[(launch.hostname, clock.now())] = _hint_users(launch.reason, owner)

    records = store.records(include_deleted=True)
    end = clock.now()
    billed: dict[str, float] = {}
    total = 0.0
    for record in records:
        gone = record.state_since if record.state is NodeState.DELETED else end
        core_hours = record.cores * (gone - record.created).total_seconds() / 3600
        total += core_hours
        named = launched_for.get((record.hostname, record.created), set())
        for user in named or {"(unknown)"}:
            billed[user] = billed.get(user, 0.0) + core_hours / max(len(named), 1)
    hours = HORIZON.total_seconds() / 3600
    live = world.nova.peek()
    print(f"flood: {args.users} users from {args.sources} source(s), a hint each every "
          f"{args.every} s for {args.minutes} min (arrays of 100,000, ~64 KB bodies); "
          f"simulated {hours:g} h")
    print(f"  hints stored {stored}, refused (429) {refused}")
    print(f"  instances launched {len(records)} (cores {sum(r.cores for r in records)}), "
          f"live at the end {len(live)}")
    print(f"  core-hours billed with no job: {total:.2f} in all, "
          f"{total / args.users / hours:.3f} per user per hour; "
          f"most billed to one user: {max(billed.values(), default=0.0) / hours:.3f} "
          f"core-hours per hour")
    print(f"  passes {len(pass_seconds)}: median {statistics.median(pass_seconds) * 1000:.1f} "
          f"ms, p95 {_p95(pass_seconds) * 1000:.1f} ms, max {max(pass_seconds) * 1000:.1f} ms")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    store.close()


def _hint_users(reason: str, owner: dict[int, str]) -> set[str]:
    users = set()
    for key in reason.removeprefix("demand: ").split(", "):
        if key.startswith("hint:"):
            hint_id = key[len("hint:"):].split("#")[0]
            if hint_id.isdigit() and int(hint_id) in owner:
                users.add(owner[int(hint_id)])
    return users


def stored_hints(args: argparse.Namespace, folder: Path) -> None:
    clock = FakeClock(T0)
    store = SqliteStore(folder / "stored.db")
    for index in range(args.stored):
        store.add_hint(clock.now(), {"user": f"user{index % 100:03d}", "queue": "batch",
                                     "resources": ["nodes=1:ppn=8"], "array": "0-99999"},
                       source=f"192.0.2.{index % 50 + 1}")
    clock.advance(1)
    world = fake_world(clock)
    reconciler(store, world).run_once(dry_run=True)      # the schema and slots warmed up
    timed = reconciler(store, world)
    started = time.perf_counter()
    report = timed.run_once()
    first = time.perf_counter() - started
    started = time.perf_counter()
    timed.run_once()
    cached = time.perf_counter() - started
    traced = reconciler(store, world)
    tracemalloc.start()
    traced.run_once(dry_run=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"stored: {args.stored} hints with 0-99999 arrays from 100 users, 50 sources")
    print(f"  first pass (parses every hint) {first:.3f} s, next pass {cached:.3f} s, "
          f"allocated at peak {peak / 2**20:.1f} MB; launches planned "
          f"{len(report.plan.of_type(LaunchInstance))}")
    store.close()


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--sources", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--stored", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        stored_hints(args, Path(folder))
        flood(args, Path(folder))


if __name__ == "__main__":
    main()
