"""Console scripts: dtserver-demo, dtserver-reconciler, dtserver-db."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from dtserver import __version__
from dtserver.model import DtError
from dtserver.redact import EscapingFormatter

DEFAULT_CONFIG = Path("/etc/dynamictorque/dynamic_torque.conf")


def _setup_logging(level: str, location: Path | None = None,
                   fmt: str = "%(asctime)s %(levelname)s %(name)s %(message)s") -> None:
    handler: logging.Handler = (logging.FileHandler(location) if location
                                else logging.StreamHandler(sys.stderr))
    # One line per record, whatever a logged value holds (hint fields, node names).
    handler.setFormatter(EscapingFormatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def demo_main(argv: Sequence[str] | None = None) -> int:
    from dtserver.demo import Demo, DemoOptions

    defaults = DemoOptions()
    parser = argparse.ArgumentParser(
        prog="dtserver-demo",
        description="Run dynamictorque on an emulated TORQUE cluster and a fake Nova, live.")
    parser.add_argument("--duration", type=float, default=defaults.duration,
                        help="wall-clock seconds to run (default %(default)s)")
    parser.add_argument("--speed", type=float, default=defaults.speed,
                        help="simulated seconds per second (default %(default)s)")
    parser.add_argument("--workload", choices=("burst", "steady", "mpi"),
                        default=defaults.workload)
    parser.add_argument("--port", type=int, default=defaults.port,
                        help="API port on 127.0.0.1; a free one if taken (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--boot-delay", type=float, default=defaults.boot_delay,
                        help="simulated seconds from create to ACTIVE (default %(default)s)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.speed <= 0 or args.boot_delay < 0:
        parser.error("duration and speed must be positive, boot delay not negative")
    _setup_logging(args.log_level)
    # The live view is the demo's output; per-request access lines would drown it.
    logging.getLogger("werkzeug").setLevel(max(logging.WARNING, logging.getLogger().level))
    options = DemoOptions(duration=args.duration, speed=args.speed, workload=args.workload,
                          port=args.port, seed=args.seed, boot_delay=args.boot_delay)
    demo = Demo(options, sys.stdout)
    signal.signal(signal.SIGINT, lambda *_: demo.stop.set())   # Ctrl-C: stop and summarise
    return demo.run()


# Nodes joined or released at once: each such step waits 2 s inside pbs_server.
BACKGROUND_WORKERS = 4


def reconciler_main(argv: Sequence[str] | None = None) -> int:
    from dtserver.bootstrap import build_batch, build_cloud, build_reconciler, build_store
    from dtserver.clock import SystemClock
    from dtserver.config import load_settings
    from dtserver.reconcile.lock import SingleInstanceLock
    from dtserver.wakeup import Wakeup

    parser = argparse.ArgumentParser(prog="dtserver-reconciler",
                                     description="The dynamictorque reconciler loop.")
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="one pass that plans and records the plan but changes nothing")
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except DtError as error:
        print(f"dtserver-reconciler: {error}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level, settings.log_location, settings.log_format)
    for warning in settings.warnings:
        logging.getLogger("dtserver.config").warning("%s", warning)
    if settings.batch_driver == "emulator" or settings.cloud_driver == "fake":
        print("dtserver-reconciler: the emulator and fake drivers run inside dtserver-demo "
              "and the simulator, not as a service", file=sys.stderr)
        return 2
    try:
        store = build_store(settings)
        reconciler = build_reconciler(settings, clock=SystemClock(),
                                      batch=build_batch(settings),
                                      cloud=build_cloud(settings, store=store), store=store,
                                      background_workers=BACKGROUND_WORKERS)
        with SingleInstanceLock(settings.lock_path):
            if args.once or args.dry_run:
                report = reconciler.run_once(dry_run=args.dry_run)
                for action in report.plan.actions:
                    print(action)
                return 0
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            reconciler.run_forever(stop, interval=settings.job_poller_interval,
                                   wakeup=Wakeup(settings.wakeup_path))
    except DtError as error:
        print(f"dtserver-reconciler: {error}", file=sys.stderr)
        return 1
    return 0


def check_config_main(argv: Sequence[str] | None = None) -> int:
    from dtserver.config import describe, load_settings

    parser = argparse.ArgumentParser(
        prog="dtserver-check-config",
        description="Load dynamic_torque.conf, print the effective configuration (secrets "
                    "masked) and its warnings; exit 2 on any error.")
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except DtError as error:
        print(f"dtserver-check-config: {error}", file=sys.stderr)
        return 2
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    sys.stdout.write(describe(settings))
    return 0


def db_main(argv: Sequence[str] | None = None) -> int:
    from dtserver.config import load_settings
    from dtserver.store.sqlite import SqliteStore, latest_version

    parser = argparse.ArgumentParser(prog="dtserver-db",
                                     description="Create or migrate the state database.")
    parser.add_argument("command", choices=("init", "migrate", "version"))
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        if args.command == "version":
            print(latest_version())
            return 0
        SqliteStore(settings.db_path).close()   # opening applies every pending migration
    except DtError as error:
        print(f"dtserver-db: {error}", file=sys.stderr)
        return 1
    print(f"{settings.db_path}: schema version {latest_version()}")
    return 0


if __name__ == "__main__":
    sys.exit(demo_main())
