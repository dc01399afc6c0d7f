"""Progress of long replays: drawn on a terminal, silent on anything else."""
from __future__ import annotations

import io

from dtserver.sim.progress import ProgressBar, SimProgress, simulated_span
from dtserver.sim import runner
from dtserver.sim.runner import simulate
from tests.sim.test_simulator import jobs_of, settings
from tests.sim.test_swf import line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_shows_jobs_simulated_time_and_pass_rate_on_a_terminal():
    terminal = Terminal()
    with ProgressBar("dynamictorque", 40, stream=terminal) as bar:
        bar(SimProgress(jobs_done=10, simulated_seconds=3 * 86400 + 4 * 3600, passes=900))
    shown = terminal.getvalue()
    assert "dynamictorque" in shown and "10/40" in shown
    assert "simulated 3d04h00m" in shown and "passes/s" in shown


def test_the_bar_is_silent_when_the_stream_is_not_a_terminal():
    piped = io.StringIO()
    with ProgressBar("dynamictorque", 40, stream=piped) as bar:
        bar(SimProgress(jobs_done=40, simulated_seconds=60, passes=3))
    assert piped.getvalue() == ""


def test_a_replay_reports_its_progress_as_it_goes_and_at_the_end(monkeypatch):
    monkeypatch.setattr(runner, "PROGRESS_STOPS", 10)
    lines = [line(n, n * 30, 60, 1) for n in range(1, 60)]
    heard: list[SimProgress] = []
    result = simulate(jobs_of(*lines), settings(check_invariants=False), progress=heard.append)
    assert result.stops > 50
    assert len(heard) == 1 + result.stops // 10
    assert [report.jobs_done for report in heard] == sorted(report.jobs_done
                                                            for report in heard)
    assert heard[-1] == SimProgress(59, result.end, result.passes)


def test_simulated_time_reads_at_a_glance():
    assert [simulated_span(seconds) for seconds in (59, 42 * 60, 5 * 3600 + 7 * 60,
                                                    86400 + 60)] == [
        "0m", "42m", "5h07m", "1d00h01m"]
