"""Bench: stream-parse a `qstat -x` of 100k jobs (docs/design.md: <= 2 s, streaming).

Generates the document in the reference format (job elements copied from the real TORQUE
capture, ids renumbered) into a temporary file, then parses it with iter_qstat_jobs:
1. timed, jobs counted and dropped (what streaming costs);
2. timed, jobs kept in a tuple (what TorqueBatch.jobs() returns to the reconciler);
3. under tracemalloc, jobs dropped: the peak shows memory does not grow with the queue.

    .venv/bin/python bench/bench_qstat_parse.py [--jobs 100000]
"""
from __future__ import annotations

import argparse
import re
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

from dtserver.batch.torque_parse import iter_qstat_jobs

CAPTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "torque" / "xml" / \
    "qstat-x.mixed.xml"
# A running job, queued multi-node jobs with and without CLOUD, a procs job, a cloud-queue job.
TEMPLATE_IDS = ("1.vm", "2.vm", "4.vm", "7.vm", "15.vm")


def templates() -> list[str]:
    text = CAPTURE.read_text(encoding="utf-8")
    found = {}
    for element in re.findall(r"<Job>.*?</Job>", text, flags=re.DOTALL):
        job_id = re.search(r"<Job_Id>(.*?)</Job_Id>", element).group(1)
        if job_id in TEMPLATE_IDS:
            found[job_id] = element.replace(f">{job_id}<", ">{id}<")
    return [found[job_id] for job_id in TEMPLATE_IDS]


def write_document(path: Path, count: int) -> int:
    forms = templates()
    with path.open("w", encoding="utf-8") as out:
        # Like qstat: a declaration line, then the whole <Data> on one line.
        out.write('<?xml version="1.0"?>\n<Data>')
        for index in range(count):
            out.write(forms[index % len(forms)].replace("{id}", f"{index + 100}.vm"))
        out.write("</Data>\n")
    return path.stat().st_size


def parse(path: Path, *, keep: bool) -> tuple[int, float]:
    started = time.perf_counter()
    with path.open("rb") as stream:
        if keep:
            count = len(tuple(iter_qstat_jobs(stream)))
        else:
            count = sum(1 for _ in iter_qstat_jobs(stream))
    return count, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-qstat-") as tmp:
        path = Path(tmp) / "qstat-x.xml"
        size = write_document(path, args.jobs)
        print(f"document: {args.jobs} jobs, {size / 1e6:.1f} MB")

        count, seconds = parse(path, keep=False)
        print(f"stream, jobs dropped: {count} jobs in {seconds:.2f} s "
              f"({count / seconds:,.0f} jobs/s)")
        rss_streaming = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        count, seconds = parse(path, keep=True)
        print(f"stream, jobs kept:    {count} jobs in {seconds:.2f} s "
              f"({count / seconds:,.0f} jobs/s)")
        rss_kept = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        tracemalloc.start()
        count, _ = parse(path, keep=False)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"tracemalloc peak while streaming {count} jobs: {peak / 1e6:.2f} MB")
        print(f"peak RSS after streaming: {rss_streaming:.0f} MB; "
              f"after keeping all jobs: {rss_kept:.0f} MB")


if __name__ == "__main__":
    main()
