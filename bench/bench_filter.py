"""Bench: what the submit filter adds to each qsub (docs/design.md, Performance targets).

Targets: at most 25 ms median over a plain `cat` of the same script with the service up,
and at most 1 s with a hung service. Every run goes through `sh -c` with stdout
redirected to a file, as qsub starts a filter, so `cat` pays the same shell. `cat` gets
no arguments, since it would read qsub's as file names. The services are the real API
(Flask app, SQLite store in a temporary directory, served from a thread on loopback), a
stub that answers 202 at once, a closed port, and a socket that accepts and never
answers.

The variants take turns in every round, so load from other processes hits them alike.
Each row shows wall time and the CPU time of sh plus the program. On a busy machine, CPU
time is the steadier measure of what the filter itself costs.

    .venv/bin/python bench/bench_filter.py [--runs 50] [--hung-runs 5]
"""
from __future__ import annotations

import argparse
import logging
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtserver.api import create_app  # noqa: E402
from dtserver.api.devserver import serve_in_thread  # noqa: E402
from dtserver.api.settings import ApiSettings  # noqa: E402
from dtserver.store.sqlite import SqliteStore  # noqa: E402
from tests.hooks.support import FILTER, FJOB, HungServer, RecordingServer  # noqa: E402

ARGS = ("-l", "nodes=1:ppn=2", "-q", "batch", "-t", "1-10%2", "fjob.sh")
OVERHEAD_TARGET_MS = 25.0
HUNG_TARGET_S = 1.0


@dataclass
class Variant:
    label: str
    command: str
    env: dict[str, str]
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)

    def run_once(self, cwd: Path) -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(["/bin/sh", "-c", self.command], input=FJOB, env=self.env, cwd=cwd,
                       check=True, timeout=10)
        self.wall_ms.append((time.perf_counter() - started) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu_ms.append((after.ru_utime + after.ru_stime
                            - before.ru_utime - before.ru_stime) * 1000)
        if (cwd / "out").read_bytes() != FJOB:
            raise SystemExit(f"{self.label}: the script changed")

    def report(self) -> float:
        wall = sorted(self.wall_ms)
        median = statistics.median(wall)
        p90 = wall[min(len(wall) - 1, int(len(wall) * 0.9))]
        print(f"{self.label:<28} wall median {median:6.1f} ms  p90 {p90:6.1f} ms  "
              f"max {wall[-1]:6.1f} ms   cpu median {statistics.median(self.cpu_ms):5.1f} ms")
        return median


def variant(label: str, cwd: Path, url: str | None) -> Variant:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    if url is None:
        return Variant(label, f"cat >{cwd / 'out'}", env)
    config = cwd / f"filter-{url.rpartition(':')[2]}.conf"
    config.write_text(f"url = {url}\n", encoding="utf-8")
    env["DT_FILTER_CONFIG"] = str(config)
    quoted = " ".join(f"'{arg}'" for arg in ARGS)    # as qsub quotes them
    return Variant(label, f"{FILTER} {quoted} >{cwd / 'out'}", env)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--hung-runs", type=int, default=5)
    options = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)    # one access line per run
    logging.getLogger("dtserver").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-filter-") as tmp, \
            SqliteStore(Path(tmp) / "dt.db") as store:
        cwd = Path(tmp)
        api = serve_in_thread(create_app(ApiSettings(db_path=cwd / "dt.db"), store=store),
                              "127.0.0.1", 0)
        stub = RecordingServer()
        hung = HungServer()
        try:
            cat = variant("cat", cwd, None)
            with_api = variant("filter, real API up", cwd, f"http://127.0.0.1:{api.port}")
            with_stub = variant("filter, stub answering 202", cwd, stub.url)
            down = variant("filter, service down", cwd, closed_port_url())
            with_hung = variant("filter, hung service", cwd, hung.url)
            for _ in range(options.runs):
                for each in (cat, with_api, with_stub, down):
                    each.run_once(cwd)
            for _ in range(options.hung_runs):
                with_hung.run_once(cwd)
        finally:
            api.shutdown()
            stub.close()
            hung.close()
        stored = len(store.hints())

    print(f"{len(FJOB)}-byte script; filter argv: {' '.join(ARGS)}; {options.runs} rounds")
    cat_ms = cat.report()
    api_ms = with_api.report()
    stub_ms = with_stub.report()
    down.report()
    with_hung.report()
    cpu_overhead = statistics.median(with_api.cpu_ms) - statistics.median(cat.cpu_ms)
    print(f"hints stored by the API: {stored}/{options.runs}; "
          f"received by the stub: {len(stub.received)}/{options.runs}")
    print(f"overhead vs cat, real API: {api_ms - cat_ms:.1f} ms wall median "
          f"(target <= {OVERHEAD_TARGET_MS:g} ms), {cpu_overhead:.1f} ms CPU; "
          f"stub: {stub_ms - cat_ms:.1f} ms wall")
    print(f"hung service: worst qsub delay {max(with_hung.wall_ms) / 1000:.2f} s "
          f"(target <= {HUNG_TARGET_S:g} s)")


if __name__ == "__main__":
    main()
