"""Bench: hint POSTs per second against the real API under gunicorn (docs/design.md, Performance targets).

Target: at least 1,500 POST /v1/hints per second on 2 cores, p99 at most 50 ms. The API
runs as production runs it: `gunicorn -c deploy/gunicorn.conf.py` (2 gthread workers,
access log on), SQLite in a temporary directory, the wakeup FIFO with a reader draining
it as the reconciler would, a hint token required. The load generator is `wrk` (Debian
package wrk) with keep-alive connections, or, without it, Python threads each with a
requests.Session; it runs on the same cores, so it takes its share of them.

    .venv/bin/python bench/bench_api.py [--seconds 10] [--connections 16] [--client auto]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtserver.api.hints import HINT_EXAMPLE  # noqa: E402
from dtserver.wakeup import Wakeup  # noqa: E402
from dtserver.store.sqlite import SqliteStore  # noqa: E402
from tests.e2e.support import Gunicorn  # noqa: E402

TARGET_PER_SECOND = 1500.0
TARGET_P99_MS = 50.0
TOKEN = "bench-hint-token-0123456789"
BODY = json.dumps(HINT_EXAMPLE)

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%%d duration_us=%%d socket_errors=%%d non2xx=%%d p50_us=%%d p99_us=%%d max_us=%%d\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class Result:
    client: str
    requests: int
    seconds: float
    failures: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def run_wrk(url: str, seconds: float, connections: int, directory: Path) -> Result:
    script = directory / "hint.lua"
    script.write_text(WRK_SCRIPT % {"body": json.dumps(BODY), "token": TOKEN}, encoding="utf-8")
    done = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:g}s",
                           "-s", str(script), f"{url}/v1/hints"],
                          capture_output=True, text=True, timeout=seconds + 60, check=True)
    match = re.search(r"^RESULT (.*)$", done.stdout, re.M)
    if match is None:
        raise SystemExit(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    values = {key: int(value) for key, value in
              (pair.split("=") for pair in match[1].split())}
    return Result("wrk", values["requests"], values["duration_us"] / 1e6,
                  values["socket_errors"] + values["non2xx"], values["p50_us"] / 1000,
                  values["p99_us"] / 1000, values["max_us"] / 1000)


def run_python(url: str, seconds: float, connections: int) -> Result:
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        mine: list[float] = []
        bad = 0
        with requests.Session() as session:
            session.headers.update({"Content-Type": "application/json",
                                    "Authorization": f"Bearer {TOKEN}"})
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = session.post(f"{url}/v1/hints", data=BODY, timeout=10)
                mine.append(time.perf_counter() - started)
                bad += response.status_code != 202
        with lock:
            latencies.extend(mine)
            failures[0] += bad

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return Result(f"python x{connections}", len(ordered), elapsed, failures[0],
                  statistics.median(ordered) * 1000,
                  ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
                  ordered[-1] * 1000)


def drain(wakeup: Wakeup, stop: threading.Event) -> None:
    while not stop.is_set():
        wakeup.wait(0.5, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--gunicorn-arg", action="append", default=[],
                        help="extra gunicorn argument, e.g. --gunicorn-arg=--threads=8")
    options = parser.parse_args()
    client = options.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        directory = Path(tmp)
        token = directory / "hint.token"
        token.write_text(TOKEN + "\n", encoding="utf-8")
        token.chmod(0o644)
        SqliteStore(directory / "dt.db").close()      # migrated before the workers start
        wakeup = Wakeup(directory / "wakeup")
        stop = threading.Event()
        drainer = threading.Thread(target=drain, args=(wakeup, stop), daemon=True)
        drainer.start()
        api = Gunicorn(directory, {"DT_DB_PATH": str(directory / "dt.db"),
                                   "DT_WAKEUP_PATH": str(directory / "wakeup"),
                                   "DT_HINT_TOKEN_FILE": str(token)},
                       extra_args=options.gunicorn_arg)
        load_before = os.getloadavg()
        try:
            # Warm up: imports, first connections, SQLite pages.
            run_python(api.url, 1.0, 2)
            if client == "wrk":
                result = run_wrk(api.url, options.seconds, options.connections, directory)
            else:
                result = run_python(api.url, options.seconds, options.connections)
        finally:
            api.stop()
            stop.set()
            drainer.join(timeout=5)
            wakeup.close()
        load_after = os.getloadavg()
        with SqliteStore(directory / "dt.db") as store:
            stored = len(store.hints())

    print(f"POST /v1/hints under gunicorn (deploy/gunicorn.conf.py"
          f"{' ' + ' '.join(options.gunicorn_arg) if options.gunicorn_arg else ''}), "
          f"{os.cpu_count()} CPUs, client {result.client}, {options.connections} connections, "
          f"{result.seconds:.1f} s")
    print(f"  {result.per_second:,.0f} hints/s (target >= {TARGET_PER_SECOND:,.0f})  "
          f"p50 {result.p50_ms:.1f} ms  p99 {result.p99_ms:.1f} ms (target <= "
          f"{TARGET_P99_MS:g})  max {result.max_ms:.1f} ms")
    print(f"  {result.requests} requests, {result.failures} failed, {stored} hints stored")
    print(f"  load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
