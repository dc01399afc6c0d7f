"""dtserver-simulate: replay an SWF trace on the emulated cluster with the real reconciler."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from dtserver.model import Flavor
from dtserver.sim.metrics import timeline
from dtserver.sim.replay import replay
from dtserver.sim.report import as_data, format_table, format_trace
from dtserver.sim.runner import BootDelay, SimSettings, SimulationError, dynamic_torque_settings
from dtserver.sim.swf import read_swf
from dtserver.sim.workload import SHAPES

# Powers of two up to 16 cores, 2 GiB per core, price 1 per core-hour.
DEFAULT_FLAVORS = ("c1:1:2048", "c2:2:4096", "c4:4:8192", "c8:8:16384", "c16:16:32768")


def parse_flavor(text: str) -> tuple[Flavor, float]:
    """NAME:CORES[:MEM_MB[:PRICE_PER_CORE_HOUR]] -> (flavor, price); price defaults to 1."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 4 or not parts[0]:
        raise argparse.ArgumentTypeError(f"{text!r}: use NAME:CORES[:MEM_MB[:PRICE]]")
    try:
        cores = int(parts[1])
        mem_mb = int(parts[2]) if len(parts) > 2 else cores * 2048
        price = float(parts[3]) if len(parts) > 3 else 1.0
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from error
    if cores < 1 or mem_mb < 1 or price < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: cores and memory must be positive")
    return Flavor(parts[0], cores=cores, mem_mb=mem_mb, id=parts[0]), price


def _boot_delay(text: str) -> BootDelay:
    try:
        return BootDelay.parse(text)
    except SimulationError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _positive(kind: type):
    def convert(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not positive")
        return value
    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dtserver-simulate",
        description="Replay an SWF trace (.swf or .swf.gz) on the emulated TORQUE cluster "
                    "and fake Nova, with the real planner and reconciler; print what it "
                    "billed and how long jobs waited, against oracles and static clusters.")
    parser.add_argument("trace", type=Path)
    parser.add_argument("--flavor", action="append", type=parse_flavor, dest="flavors",
                        metavar="NAME:CORES[:MEM_MB[:PRICE]]",
                        help="a flavor of the pool, repeatable (default: "
                             + ", ".join(DEFAULT_FLAVORS) + "; price per core-hour 1)")
    parser.add_argument("--boot-delay", type=_boot_delay, default=BootDelay(),
                        metavar="SECONDS|uniform:LOW:HIGH|normal:MEAN:SD",
                        help="create to reporting mom (default 120)")
    parser.add_argument("--max-nodes", type=_positive(int), default=0,
                        help="node slots of the pool (default: twice the oracle's peak "
                             "on the largest flavor)")
    parser.add_argument("--max-cores", type=_positive(int), default=None)
    parser.add_argument("--max-booting", type=_positive(int), default=None)
    parser.add_argument("--idle-timeout", type=_positive(float), default=600.0,
                        help="max_idle_time in seconds (default 600)")
    parser.add_argument("--fixed-idle", action="store_true",
                        help="every idle node waits max_idle_time (no demand-following "
                             "idle time), for comparison")
    parser.add_argument("--boot-timeout", type=_positive(float), default=1200.0)
    parser.add_argument("--poll-interval", type=_positive(float), default=10.0,
                        help="job_poller_interval in seconds (default 10)")
    parser.add_argument("--no-hook", action="store_true",
                        help="no submit filter: arrivals wait for the next poll")
    parser.add_argument("--shape", choices=SHAPES, default="native",
                        help="how a job asks for nodes: native (the default: a job that "
                             "fitted a node of the traced machine, MaxProcs/MaxNodes cores, "
                             "as fill, a larger one as split), fill (one node up to the "
                             "largest flavor, else nodes=2:ppn=16+1:ppn=4), even "
                             "(nodes=3:ppn=12) or split (nodes of the flavors' sizes: "
                             "nodes=1:ppn=8+1:ppn=1 for 9 cores)")
    parser.add_argument("--no-packing", action="store_true",
                        help="multi-core jobs get nodes of their own")
    parser.add_argument("--no-lookahead", action="store_true",
                        help="never wait for a busy node whose jobs end within a boot: "
                             "launch, for comparison")
    parser.add_argument("--no-old", action="store_true",
                        help="skip the replay with the old Dynamic Torque settings")
    parser.add_argument("--old-flavor", help="the one flavor of the old Dynamic Torque "
                                             "(default: the largest)")
    parser.add_argument("--limit", type=_positive(int), help="replay only the first N jobs")
    parser.add_argument("--keep-cancelled", action="store_true",
                        help="replay cancelled jobs (status 5) too")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--plot", type=Path, help="write a PNG over time here")
    parser.add_argument("--check-invariants", action="store_true",
                        help="check the invariants (docs/design.md) on the world after every pass (slow)")
    parser.add_argument("--faithful", action="store_true",
                        help="read TORQUE through qstat/pbsnodes XML and list Nova in full "
                             "on every pass (slow; the default reads the same state directly)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-level", default="WARNING")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(levelname)s %(name)s %(message)s")
    chosen = args.flavors or [parse_flavor(text) for text in DEFAULT_FLAVORS]
    flavors = tuple(flavor for flavor, _ in chosen)
    prices = {flavor.name: price for flavor, price in chosen}
    if len({flavor.name for flavor in flavors}) != len(flavors):
        parser.error("flavor names must differ")
    if not args.trace.is_file():
        parser.error(f"no trace file {args.trace}")
    settings = SimSettings(
        flavors=flavors, boot_delay=args.boot_delay, max_nodes=args.max_nodes,
        max_cores=args.max_cores, max_booting=args.max_booting,
        idle_timeout=args.idle_timeout, early_idle_release=not args.fixed_idle,
        boot_timeout=args.boot_timeout,
        poll_interval=args.poll_interval, hook=not args.no_hook,
        pack_multicore=not args.no_packing, lookahead=not args.no_lookahead,
        check_invariants=args.check_invariants,
        faithful=args.faithful, seed=args.seed)
    configurations = [settings]
    if not args.no_old:
        old = None
        if args.old_flavor:
            old = next((flavor for flavor in flavors if flavor.name == args.old_flavor), None)
            if old is None:
                parser.error(f"--old-flavor {args.old_flavor} is not one of the flavors")
        configurations.append(replace(dynamic_torque_settings(settings, flavor=old),
                                      max_nodes=0 if not args.max_nodes else args.max_nodes))
    trace = read_swf(args.trace, keep_cancelled=args.keep_cancelled, limit=args.limit)
    if not trace.jobs:
        print(format_trace(trace, (), 0, args.shape))
        print("nothing to replay", file=sys.stderr)
        return 1
    try:
        result = replay(trace, configurations, prices=prices, shape=args.shape,
                        progress=True)
    except SimulationError as error:
        print(f"dtserver-simulate: {error}", file=sys.stderr)
        return 2
    print(format_trace(trace, result.too_big, len(result.jobs), args.shape))
    print()
    print(format_table([run.metrics for run in result.runs],
                       title=f"{trace.name}, boot delay {settings.boot_delay} s"))
    timelines = [timeline(run.result) for run in result.runs]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        data = as_data(trace, result.too_big, [(run.settings, run.metrics)
                                               for run in result.runs], timelines,
                       shape=args.shape)
        args.json.write_text(json.dumps(data, indent=1) + "\n")
        print(f"\nJSON written to {args.json}")
    if args.plot:
        from dtserver.sim.plot import plot_timelines
        plot_timelines([(run.settings.name, line) for run, line in zip(result.runs, timelines)],
                       args.plot, title=trace.name)
        print(f"plot written to {args.plot}")
    return 0 if all(run.result.finished for run in result.runs) else 3


if __name__ == "__main__":
    sys.exit(main())
