"""Progress of a long replay, drawn by tqdm on a terminal: jobs done of all, the simulated
time reached, passes per second and tqdm's ETA. Silent when the stream is not a terminal
(logs, CI, pipes), so output that is read by programs stays as it was."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from tqdm import tqdm


@dataclass(frozen=True)
class SimProgress:
    jobs_done: int
    simulated_seconds: float
    passes: int


def simulated_span(seconds: float) -> str:
    """`3d04h12m`, `5h07m`, `42m`: the simulated time reached, at a glance."""
    minutes = int(seconds // 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


class ProgressBar:
    """One replay's bar; call it with a SimProgress, close it when the replay ends."""

    def __init__(self, label: str, total_jobs: int, stream: TextIO | None = None) -> None:
        # disable=None: tqdm turns itself off when the stream is not a terminal.
        self._bar = tqdm(total=total_jobs, desc=label, unit="job", disable=None,
                         file=stream or sys.stderr, dynamic_ncols=True, mininterval=0.5)
        self._started = time.perf_counter()

    def __call__(self, progress: SimProgress) -> None:
        bar = self._bar
        if bar.disable:
            return
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        bar.set_postfix_str(f"simulated {simulated_span(progress.simulated_seconds)}, "
                            f"{progress.passes / elapsed:.0f} passes/s", refresh=False)
        bar.update(progress.jobs_done - bar.n)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.close()
