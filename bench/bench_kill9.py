"""Bench: kill -9 the reconciler at >= 100 points of node lives and check that nothing leaks.

The reconciler runs as production runs it (`dtserver-db migrate`, then
`dtserver-reconciler -c dynamic_torque.conf` with its background workers) against the real
Nova API (tests/tooling/novastack, started here on loopback) and the TORQUE CLI emulator,
while waves of jobs go through full node lives: qsub, scale-up, join, jobs run on the
emulated moms, finish, idle, drain, release, delete. It is SIGKILLed (with its process
group) at each kill point and started again at once. Every start is armed with the next
occurrence of each step the reconciler logs or records (tests/live/kill9/points.py,
KINDS) not yet killed at, and dies at the first one it reaches, so each kill is at a new
point; every fifth start is killed at a random moment instead. After every kill and at the
end, once the run has settled, it checks Nova's and TORQUE's own state: leaked
instances, duplicate creates, nodes deleted under a running job, orphan node entries, and
that every job ran once with exit status 0.

Time is accelerated through the configuration (1 s passes, max_idle_time 3 s, hint TTL
2 s) and the emulator's settle delays. Two timers are not configuration keys and still
run at full length: launch_grace (120 s) holds a launch cut off before servers.create (the
final settle can take two minutes), and the delete retry (60 s) holds an instance whose
node was released just before a kill. On 2 cores, 105 kills took 11 minutes (load ~3)
and 100 kills 16 minutes (load ~5, other suites running).

    .venv/bin/python bench/bench_kill9.py [--kills 105] [--seed 1] [--keep]

Prints a table of kill points by step kind and the failure counts; results go to
bench/results/kill9.json. Exits 1 if any check failed. Without the Nova harness (no
package registry to install it) it says why and exits 0.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.live.kill9.nova import NovaForBench  # noqa: E402
from tests.live.kill9.points import GreedyPlan  # noqa: E402
from tests.live.kill9.reconciler import Site  # noqa: E402
from tests.live.kill9.run import Kill9Run  # noqa: E402
from tests.tooling.novastack.stack import HarnessUnavailable  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "kill9.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=105,
                        help="kills (default %(default)s: a few starts may reach no armed "
                             "point in time, and at least 100 must land on distinct points)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    parser.add_argument("--random-every", type=int, default=5,
                        help="every N-th kill at a random time (default %(default)s; 0: none)")
    parser.add_argument("--trigger-timeout", type=float, default=30.0,
                        help="kill a start anyway when it reaches no armed point in this "
                             "many seconds (default %(default)s)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the working directory (logs, state) after a clean run")
    args = parser.parse_args()
    if args.kills < 1:
        parser.error("--kills must be positive")
    # SIGTERM (and SIGINT, which a shell leaves ignored for background jobs) unwind: the
    # reconciler and the Nova harness are stopped by the `finally` blocks.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="bench-kill9-"))
    started = time.monotonic()
    try:
        with NovaForBench(workdir / "nova") as live:
            print(f"nova up in {time.monotonic() - started:.1f} s; work dir {workdir}",
                  flush=True)
            site = Site(live, workdir / "site", cluster_id=f"kill9-{args.seed}")
            run = Kill9Run(site, seed=args.seed, trigger_timeout=args.trigger_timeout,
                           progress=lambda line: print(line, flush=True))
            plan = GreedyPlan(random.Random(args.seed), random_every=args.random_every)
            results = run.run(plan, args.kills)
    except HarnessUnavailable as error:
        print(f"skipped: {error}")
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print()
    print(results.table())
    print()
    print(results.summary())
    for violation in results.violations:
        print(f"  {violation}")
    for problem in results.job_problems:
        print(f"  job {problem}")
    for line in results.exits + results.world_errors:
        print(f"  {line}")
    if results.unsettled:
        print(f"not settled:\n{results.unsettled}")
    report = {
        "kills": len(results.outcomes), "seed": args.seed,
        "distinct_points": results.distinct_points,
        "points": [{"point": outcome.label, "how": outcome.how,
                    "after_step": outcome.after_step, "seconds": round(outcome.seconds, 2)}
                   for outcome in results.outcomes],
        "leaked": results.count("leak"), "duplicates": results.count("duplicate"),
        "busy_deleted": results.count("busy deleted"),
        "orphan_entries": results.count("orphan entry"),
        "jobs_ok": results.jobs_ok, "jobs_total": results.jobs_total,
        "servers_created": results.servers_created,
        "orphans_cleaned": results.orphans_cleaned,
        "settled": results.settled, "settle_seconds": round(results.settle_seconds, 1),
        "violations": [str(violation) for violation in results.violations],
        "job_problems": results.job_problems, "exits": results.exits,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    if results.ok and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"work dir kept: {workdir}")
    print(f"total wall time {report['wall_seconds']} s (nova start included)")
    return 0 if results.ok else 1


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
