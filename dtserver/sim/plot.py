"""A PNG of a replay over time: cores queued, running and billed; instances by state."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dtserver.sim.metrics import Timeline


def plot_timelines(timelines: Sequence[tuple[str, Timeline]], path: Path, *,
                   title: str = "") -> Path:
    """One row of two panels per run: cores (queued, running, billed) and instances
    (booting, idle, busy, stacked). Needs matplotlib (the `sim` extra)."""
    import matplotlib
    matplotlib.use("Agg")   # files only: no display on a server or in CI
    from matplotlib import pyplot

    rows = max(len(timelines), 1)
    figure, axes = pyplot.subplots(rows, 2, figsize=(14, 3.6 * rows), squeeze=False)
    for row, (name, line) in enumerate(timelines):
        cores, instances = axes[row]
        cores.step(line.hours, line.billed_cores, where="post", label="billed cores",
                   color="tab:gray", linewidth=0.8)
        cores.step(line.hours, line.running_cores, where="post", label="running cores",
                   color="tab:green", linewidth=0.8)
        cores.step(line.hours, line.queued_cores, where="post", label="queued cores",
                   color="tab:red", linewidth=0.8)
        cores.set_title(f"{name}: cores")
        cores.set_xlabel("hours after the first arrival")
        cores.legend(loc="upper right", fontsize="small")
        instances.stackplot(line.hours, line.busy, line.idle, line.booting,
                            labels=["busy", "idle or draining", "booting"],
                            colors=["tab:green", "tab:orange", "tab:blue"], step="post")
        instances.set_title(f"{name}: instances by state")
        instances.set_xlabel("hours after the first arrival")
        instances.legend(loc="upper right", fontsize="small")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path
