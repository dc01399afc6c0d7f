"""Run every benchmark in this folder, one after the other (`make bench`)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    """Each bench draws its own progress on a terminal; this says which one runs and how
    long the ones before took."""
    failed = 0
    scripts = sorted(HERE.glob("bench_*.py"))
    started = time.perf_counter()
    for number, script in enumerate(scripts, 1):
        print(f"== [{number}/{len(scripts)}] {script.name} "
              f"({time.perf_counter() - started:.0f} s so far)", flush=True)
        failed += subprocess.run([sys.executable, str(script)],
                                 check=False).returncode != 0
    print(f"== {len(scripts)} benches in {time.perf_counter() - started:.0f} s, "
          f"{failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
