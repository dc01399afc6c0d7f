"""Replay results as a text table and as JSON-ready data."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from dtserver.serialize import to_jsonable
from dtserver.sim.metrics import Metrics, Timeline
from dtserver.sim.runner import SimSettings
from dtserver.sim.swf import SwfTrace
from dtserver.sim.workload import TooBig

Row = tuple[str, Callable[[Metrics], str]]


def _hours(value: float) -> str:
    return f"{value:,.0f}"


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.3f}" if whole else "-"


ROWS: tuple[Row, ...] = (
    ("jobs run / rejected / unfinished", lambda m: f"{m.jobs} / {m.rejected} / {m.unfinished}"),
    ("used core-hours", lambda m: _hours(m.used_core_hours)),
    ("billed core-hours", lambda m: _hours(m.billed_core_hours)),
    ("cost (billed x flavor price)", lambda m: f"{m.cost:,.0f}"),
    ("waste ratio (1 - used/billed)", lambda m: f"{m.waste_ratio:.3f}"),
    ("  boot share of billed", lambda m: _share(m.boot_waste_core_hours, m.billed_core_hours)),
    ("  idle share of billed", lambda m: _share(m.idle_waste_core_hours, m.billed_core_hours)),
    ("  packing share of billed",
     lambda m: _share(m.packing_waste_core_hours, m.billed_core_hours)),
    ("wait mean / p95 / max (s)",
     lambda m: f"{m.wait.mean:.0f} / {m.wait.p95:.0f} / {m.wait.max:.0f}"),
    ("wait - boot delay mean / p95 (s)",
     lambda m: f"{m.wait_vs_boot_oracle.mean:.0f} / {m.wait_vs_boot_oracle.p95:.0f}"),
    ("bounded slowdown (tau 10 s): run / boot oracle",
     lambda m: f"{m.wait.slowdown:.2f} / {m.boot_oracle_slowdown:.2f}"),
    ("launches per 1,000 jobs", lambda m: f"{m.launches_per_1000_jobs:.0f}"),
    ("peak instances / billed cores", lambda m: f"{m.peak_instances} / {m.peak_billed_cores}"),
    ("static peak: cores / core-hours",
     lambda m: f"{m.static_peak.cores} / {_hours(m.static_peak.core_hours)}"),
    ("saving vs static peak", lambda m: f"{m.saving_vs_static_peak:.1%}"),
    ("static p95: cores / core-hours / FCFS mean wait (s)",
     lambda m: f"{m.static_p95.cores} / {_hours(m.static_p95.core_hours)} / "
               f"{m.static_p95.wait.mean:.0f}"),
    ("saving vs static p95", lambda m: f"{m.saving_vs_static_p95:.1%}"),
    ("reconciler passes / wall seconds", lambda m: f"{m.passes} / {m.wall_seconds:.1f}"),
)


def format_table(runs: Sequence[Metrics], *, title: str = "") -> str:
    """One column per engine configuration, one row per measure."""
    header = ["", *(metrics.name + ("" if metrics.finished else " (stopped early)")
                    for metrics in runs)]
    lines = [[label, *(render(metrics) for metrics in runs)] for label, render in ROWS]
    widths = [max(len(row[column]) for row in [header, *lines])
              for column in range(len(header))]
    text = [title] if title else []
    for row in [header, *lines]:
        text.append("  ".join(cell.ljust(widths[0]) if column == 0 else cell.rjust(
            widths[column]) for column, cell in enumerate(row)).rstrip())
    return "\n".join(text)


def describe_shape(trace: SwfTrace, shape: str) -> str:
    """How the trace's jobs ask for nodes, in words."""
    if shape != "native":
        return f"job shape {shape}"
    if trace.cores_per_node is None:
        return "job shape native: the header gives no MaxProcs/MaxNodes, so as fill"
    cores = trace.cores_per_node
    return (f"job shape native: the traced machine had {cores} core{'s' * (cores != 1)} "
            f"per node; larger jobs span nodes of the flavors' sizes")


def format_trace(trace: SwfTrace, too_big: Sequence[TooBig], replayed: int,
                 shape: str = "native") -> str:
    """What was read, skipped and why, and how jobs ask for nodes."""
    lines = [f"trace {trace.name}: {replayed} jobs replayed over "
             f"{trace.span_seconds / 86400:.1f} days; {describe_shape(trace, shape)}"]
    for reason, count in sorted(trace.skipped.items()):
        lines.append(f"  skipped {count}: {reason}")
    if trace.bad_lines:
        lines.append(f"  bad lines skipped: {trace.bad_lines}")
        lines += [f"    line {problem.line}: {problem.reason}" for problem in trace.problems[:10]]
    if too_big:
        lines.append(f"  skipped {len(too_big)} jobs larger than the pool can hold")
        lines += [f"    job {job.number} (line {job.line}, {job.cores} cores): {job.reason}"
                  for job in too_big[:10]]
    return "\n".join(lines)


def as_data(trace: SwfTrace, too_big: Sequence[TooBig],
            runs: Sequence[tuple[SimSettings, Metrics]],
            timelines: Sequence[Timeline] = (), shape: str = "native") -> dict[str, Any]:
    return {
        "trace": {
            "name": trace.name, "header": dict(trace.header), "jobs": len(trace.jobs),
            "shape": shape, "cores_per_node": trace.cores_per_node,
            "skipped": dict(trace.skipped), "bad_lines": trace.bad_lines,
            "problems": to_jsonable(trace.problems),
            "too_big": to_jsonable(too_big),
        },
        "runs": [{"settings": to_jsonable(settings), "metrics": to_jsonable(metrics)}
                 for settings, metrics in runs],
        "timelines": [to_jsonable(line) for line in timelines],
    }
