"""Read Standard Workload Format traces (the Parallel Workloads Archive's `.swf`, `.swf.gz`).

One job per line, 18 whitespace-separated numeric fields, `;` header lines. Replay follows
the conventions of the traces' README: arrival = submit time (field 2), duration = run time
(field 4), cores = allocated processors (field 5, or requested, field 8, when field 5 is not
positive), walltime estimate = requested time (field 9). The recorded wait (field 3) is kept
only as a reference: it came from the original static machine.

Nothing here raises on a bad line: it is reported with its line number and skipped.
"""
from __future__ import annotations

import gzip
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, TextIO

FIELDS = 18
CANCELLED = 5
# Statuses of records that describe a job's run: 1 completed, 0 failed, 5 cancelled,
# -1 unknown. 2-4 are checkpoint/swap partial records whose whole job has its own line.
RUN_STATUSES = frozenset({-1, 0, 1, CANCELLED})
MAX_PROBLEMS_KEPT = 100


@dataclass(frozen=True)
class SwfJob:
    number: int
    line: int
    submit: float                 # seconds after the log's start
    runtime: float
    cores: int
    requested_time: float | None  # field 9; None when unknown
    status: int
    recorded_wait: float | None   # field 3, the original machine's wait; None when unknown
    user: int = -1
    queue: int = -1


@dataclass(frozen=True)
class SwfProblem:
    line: int
    reason: str
    text: str


@dataclass(frozen=True)
class SwfTrace:
    name: str
    jobs: tuple[SwfJob, ...]               # sorted by submit time
    header: dict[str, str] = field(default_factory=dict)
    problems: tuple[SwfProblem, ...] = ()  # the first MAX_PROBLEMS_KEPT bad lines
    bad_lines: int = 0
    skipped: Counter[str] = field(default_factory=Counter)   # reason -> count

    @property
    def unix_start(self) -> int | None:
        value = self.header.get("UnixStartTime", "")
        return int(value) if value.lstrip("-").isdigit() else None

    @property
    def cores_per_node(self) -> int | None:
        """Processors per node of the traced machine (MaxProcs / MaxNodes, rounded down);
        None when the header does not give both."""
        counts = [self.header.get(key, "") for key in ("MaxProcs", "MaxNodes")]
        if not all(count.isdigit() and int(count) > 0 for count in counts):
            return None
        procs, nodes = map(int, counts)
        return max(1, procs // nodes)

    @property
    def span_seconds(self) -> float:
        return self.jobs[-1].submit - self.jobs[0].submit if self.jobs else 0.0


def open_trace(path: Path) -> TextIO:
    """A text stream of `path`; gzip is recognised by its magic bytes, not the name."""
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return path.open("r", encoding="utf-8", errors="replace")


def read_swf(path: Path, *, keep_cancelled: bool = False, limit: int | None = None) -> SwfTrace:
    """Parse a trace file. `limit` keeps only the first `limit` replayable jobs (a slice)."""
    with open_trace(path) as stream:
        return parse_swf(stream, name=path.name, keep_cancelled=keep_cancelled, limit=limit)


def parse_swf(lines: Iterable[str], *, name: str = "trace", keep_cancelled: bool = False,
              limit: int | None = None) -> SwfTrace:
    """Jobs worth replaying, the header, the bad lines (with numbers) and what was skipped
    and why. Jobs with no run time or no cores did not run; cancelled jobs (status 5) are
    skipped unless `keep_cancelled` (RICC's carry run times that overlap impossibly)."""
    header: dict[str, str] = {}
    jobs: list[SwfJob] = []
    problems: list[SwfProblem] = []
    bad = 0
    skipped: Counter[str] = Counter()
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        if text.startswith(";"):
            key, sep, value = text[1:].partition(":")
            if sep and key.strip() and " " not in key.strip():
                header.setdefault(key.strip(), value.strip())
            continue
        job, reason = _parse_line(text, number)
        if job is None:
            bad += 1
            if len(problems) < MAX_PROBLEMS_KEPT:
                problems.append(SwfProblem(number, reason, text[:200]))
            continue
        why = _skip_reason(job, keep_cancelled)
        if why:
            skipped[why] += 1
            continue
        jobs.append(job)
        if limit is not None and len(jobs) >= limit:
            break
    # Logs are sorted by submit time; a stable sort keeps ties in line order regardless.
    jobs.sort(key=lambda job: job.submit)
    return SwfTrace(name, tuple(jobs), header, tuple(problems), bad, skipped)


def _parse_line(text: str, number: int) -> tuple[SwfJob | None, str]:
    words = text.split()
    if len(words) != FIELDS:
        return None, f"{len(words)} fields, expected {FIELDS}"
    try:
        values = [float(word) for word in words]
    except ValueError:
        bad_word = next(word for word in words if not _is_number(word))
        return None, f"not a number: {bad_word!r}"
    if any(value != value or value in (float("inf"), float("-inf")) for value in values):
        return None, "not a finite number"
    submit = values[1]
    if submit < 0:
        return None, f"negative submit time {submit:g}"
    cores = int(values[4]) if values[4] > 0 else int(values[7])
    return SwfJob(number=int(values[0]), line=number, submit=submit, runtime=values[3],
                  cores=cores,
                  requested_time=values[8] if values[8] > 0 else None,
                  status=int(values[10]),
                  recorded_wait=values[2] if values[2] >= 0 else None,
                  user=int(values[11]), queue=int(values[14])), ""


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _skip_reason(job: SwfJob, keep_cancelled: bool) -> str:
    if job.status not in RUN_STATUSES:
        return f"status {job.status} (partial record)"
    if job.runtime <= 0:
        return "run time <= 0"
    if job.cores <= 0:
        return "cores <= 0"
    if job.status == CANCELLED and not keep_cancelled:
        return "cancelled (status 5)"
    return ""


def concurrency_profile(intervals: Iterable[tuple[float, float, int]]) -> Iterator[
        tuple[float, int]]:
    """(time, cores in use from then on) at each change, for (start, end, cores) intervals."""
    changes: Counter[float] = Counter()
    for start, end, cores in intervals:
        if end > start:
            changes[start] += cores
            changes[end] -= cores
    level = 0
    for moment in sorted(changes):
        level += changes[moment]
        yield moment, level
