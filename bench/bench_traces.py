"""Replay the real SWF traces with the new engine and the old Dynamic Torque settings.

    python bench/bench_traces.py [--traces DIR] [--only NAME ...] [--boot-delay 120]
                                 [--ricc-limit N] [--flavor NAME:CORES[:MEM[:PRICE]] ...]
                                 [--no-lookahead] [--fixed-idle] [--no-old]

The traces are not ours to ship: they are read from DIR (default: $DT_TRACES, else
../shared/traces beside the repository). Prints one table per trace (waste ratio and its
split, mean/p95 wait added against the instant oracle, saving against a static cluster
sized to the peak) and the wall time of each replay, then the goals: waste ratio <= 0.10,
mean added wait <= 1.2 x boot delay and within 10% of the old Dynamic Torque's, >= 40%
cheaper than the static peak on the bursty traces, KTH-SP2 <= 60 s and UniLu-Gaia <= 120 s.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtserver.sim.cli import DEFAULT_FLAVORS, parse_flavor  # noqa: E402
from dtserver.sim.metrics import Metrics  # noqa: E402
from dtserver.sim.replay import replay  # noqa: E402
from dtserver.sim.report import describe_shape  # noqa: E402
from dtserver.sim.runner import BootDelay, SimSettings, dynamic_torque_settings  # noqa: E402
from dtserver.sim.swf import read_swf  # noqa: E402
from dtserver.sim.workload import SHAPES  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# name, file, wall-time target (s), bursty
TRACES = (
    ("hpc2n", "hpc2n.swf", None, True),
    ("KTH-SP2", "KTH-SP2-1996-2.1-cln.swf.gz", 60.0, True),
    ("UniLu-Gaia", "UniLu-Gaia-2014-1.swf.gz", 120.0, True),
    ("RICC", "RICC-2010-2.swf.gz", None, True),
)
COLUMNS = ("engine", "waste", "boot", "idle", "packing", "wait mean", "wait p95",
           "vs static peak", "vs static p95", "launch/1k", "peak inst", "passes", "wall s")


def row(metrics: Metrics) -> list[str]:
    billed = metrics.billed_core_hours or 1.0
    return [metrics.name + ("" if metrics.finished else " (stopped)"),
            f"{metrics.waste_ratio:.3f}", f"{metrics.boot_waste_core_hours / billed:.3f}",
            f"{metrics.idle_waste_core_hours / billed:.3f}",
            f"{metrics.packing_waste_core_hours / billed:.3f}",
            f"{metrics.wait.mean:.0f}", f"{metrics.wait.p95:.0f}",
            f"{metrics.saving_vs_static_peak:.1%}", f"{metrics.saving_vs_static_p95:.1%}",
            f"{metrics.launches_per_1000_jobs:.0f}", str(metrics.peak_instances),
            str(metrics.passes), f"{metrics.wall_seconds:.1f}"]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(line[column]) for line in [list(COLUMNS), *rows])
              for column in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) if index == 0 else cell.rjust(width)
                               for index, (cell, width) in enumerate(zip(line, widths)))
                     for line in [list(COLUMNS), *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path,
                        default=Path(os.environ.get("DT_TRACES", REPO / ".." / "shared" / "traces")))
    parser.add_argument("--only", action="append", choices=[name for name, *_ in TRACES])
    parser.add_argument("--boot-delay", default="120")
    parser.add_argument("--ricc-limit", type=int, default=0,
                        help="replay the first N RICC jobs (default 0: skip RICC)")
    parser.add_argument("--flavor", action="append", type=parse_flavor, dest="flavors")
    parser.add_argument("--shape", choices=SHAPES, default="native")
    parser.add_argument("--no-old", action="store_true",
                        help="skip the old Dynamic Torque replays (slow on long queues)")
    parser.add_argument("--no-lookahead", action="store_true",
                        help="replay the new engine a second time without waiting for "
                             "nodes whose jobs end within a boot")
    parser.add_argument("--fixed-idle", action="store_true",
                        help="replay the new engine a second time with every idle node "
                             "waiting max_idle_time (no demand-following idle time)")
    args = parser.parse_args(argv)
    chosen = args.flavors or [parse_flavor(text) for text in DEFAULT_FLAVORS]
    flavors = tuple(flavor for flavor, _ in chosen)
    boot = BootDelay.parse(args.boot_delay)
    base = SimSettings(flavors=flavors, boot_delay=boot)
    goals: list[tuple[str, bool, str]] = []
    for name, filename, target, bursty in TRACES:
        if args.only and name not in args.only:
            continue
        limit = None
        if name == "RICC":
            if not args.ricc_limit:
                continue
            limit = args.ricc_limit
        path = args.traces / filename
        if not path.is_file():
            print(f"== {name}: {path} not found, skipped\n")
            continue
        started = time.perf_counter()
        trace = read_swf(path, limit=limit)
        engines = [base]
        if args.no_lookahead:
            engines.append(replace(base, name="no-lookahead", lookahead=False))
        if args.fixed_idle:
            engines.append(replace(base, name="fixed-idle", early_idle_release=False))
        if not args.no_old:
            engines.append(dynamic_torque_settings(base))
        result = replay(trace, engines, shape=args.shape, progress=True)
        elapsed = time.perf_counter() - started
        sliced = f", first {limit} jobs" if limit else ""
        print(f"== {name}{sliced}: {len(result.jobs)} jobs, {trace.span_seconds / 86400:.0f} "
              f"days, boot {boot} s, flavors "
              + ", ".join(f"{flavor.name}:{flavor.cores}" for flavor in flavors)
              + f"; {describe_shape(trace, args.shape)}; {len(result.too_big)} too big; "
              f"skipped: {dict(trace.skipped)}")
        print(table([row(run.metrics) for run in result.runs]))
        new = result.runs[0].metrics
        print(f"static peak {new.static_peak.cores} cores, static p95 "
              f"{new.static_p95.cores} cores (FCFS mean wait {new.static_p95.wait.mean:.0f} s);"
              f" both replays and measuring took {elapsed:.1f} s\n")
        goals.append((f"{name}: waste ratio <= 0.10", new.waste_ratio <= 0.10,
                      f"{new.waste_ratio:.3f}"))
        goals.append((f"{name}: mean added wait <= 1.2 x boot ({1.2 * boot.mean:.0f} s)",
                      new.wait.mean <= 1.2 * boot.mean, f"{new.wait.mean:.0f} s"))
        if not args.no_old:
            old = result.runs[-1].metrics
            goals.append((f"{name}: mean added wait <= 1.1 x the old Dynamic Torque's "
                          f"({1.1 * old.wait.mean:.0f} s)",
                          new.wait.mean <= 1.1 * old.wait.mean, f"{new.wait.mean:.0f} s"))
        if bursty:
            goals.append((f"{name}: >= 40% cheaper than static peak",
                          new.saving_vs_static_peak >= 0.40, f"{new.saving_vs_static_peak:.1%}"))
        if target is not None and limit is None:
            goals.append((f"{name}: replay <= {target:.0f} s", new.wall_seconds <= target,
                          f"{new.wall_seconds:.1f} s"))
    if goals:
        print("goals")
        for label, met, value in goals:
            print(f"  {'met ' if met else 'MISS'}  {label}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
