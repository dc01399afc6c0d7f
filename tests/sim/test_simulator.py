"""Trace replay on the emulated cluster with the real reconciler: known answers for simple
cases, the invariants at every pass, and skipped ticks that change nothing."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from dtserver.model import Flavor
from dtserver.sim.cli import main as simulate_main
from dtserver.sim.metrics import fcfs_waits, measure, timeline
from dtserver.sim.replay import replay
from dtserver.sim.report import describe_shape
from dtserver.sim.runner import (
    BootDelay, Simulation, SimSettings, SimulationError, dynamic_torque_settings, simulate)
from dtserver.sim.swf import parse_swf
from dtserver.sim.workload import SimJob, map_jobs, node_parts
from tests.sim.test_swf import line

FLAVORS = (Flavor("c2", 2, 4096, id="c2"), Flavor("c4", 4, 8192, id="c4"),
           Flavor("c8", 8, 16384, id="c8"))
BOOT = 60.0
# From create: the boot, then the join, the mom's first report (15 s after the node entry
# is made) and the pass that sees it on a 10 s tick.
READY_WITHIN = BOOT + 40


def settings(**overrides) -> SimSettings:
    values = dict(flavors=FLAVORS, boot_delay=BootDelay("fixed", BOOT), max_nodes=8,
                  idle_timeout=300.0, check_invariants=True)
    values.update(overrides)
    return SimSettings(**values)


def jobs_of(*lines: str, shape: str = "fill", max_nodes: int = 8) -> list[SimJob]:
    mapped, too_big = map_jobs(parse_swf(lines).jobs, FLAVORS, max_nodes=max_nodes,
                               shape=shape)
    assert not too_big
    return mapped


def test_one_job_gets_one_instance_of_its_size_and_waits_one_boot():
    result = simulate(jobs_of(line(1, 0, 600, 4)), settings())
    [run] = result.jobs
    [life] = result.instances
    assert result.finished
    assert (life.flavor, life.cores) == ("c4", 4)
    assert BOOT <= run.start <= READY_WITHIN
    assert run.end == run.start + 600
    assert run.hosts == (life.hostname,)
    # deleted after the idle timeout, within a few ticks of draining
    assert 300 <= life.deleted - run.end <= 300 + 40
    metrics = measure(result)
    assert metrics.used_core_hours == pytest.approx(4 * 600 / 3600)
    assert metrics.billed_core_hours == pytest.approx(4 * (life.deleted - life.launched) / 3600)
    assert metrics.boot_waste_core_hours == pytest.approx(4 * run.start / 3600, abs=1e-9)
    assert metrics.idle_waste_core_hours == pytest.approx(4 * (life.deleted - run.end) / 3600)
    assert metrics.packing_waste_core_hours == pytest.approx(0, abs=1e-9)
    assert metrics.launches == 1 and metrics.peak_instances == 1


def test_a_burst_of_serial_jobs_is_packed_onto_one_instance():
    burst = [line(n, 0, 900, 1) for n in range(1, 9)]
    result = simulate(jobs_of(*burst), settings())
    assert [life.flavor for life in result.instances] == ["c8"]
    assert all(BOOT <= run.start <= READY_WITHIN for run in result.jobs)
    assert len({run.hosts for run in result.jobs}) == 1
    assert measure(result).packing_waste_core_hours == pytest.approx(0, abs=1e-9)


def test_a_multi_node_job_gets_all_its_nodes_at_once():
    [job] = jobs_of(line(1, 0, 600, 20))
    assert job.resources["nodes"] == "2:ppn=8+1:ppn=4"
    result = simulate([job], settings())
    [run] = result.jobs
    assert sorted(life.flavor for life in result.instances) == ["c4", "c8", "c8"]
    assert len({life.launched for life in result.instances}) == 1
    assert sorted(run.hosts) == sorted(life.hostname for life in result.instances)
    assert BOOT <= run.start <= READY_WITHIN


def test_an_even_shape_spreads_the_cores_and_shows_as_packing_waste():
    [job] = jobs_of(line(1, 0, 600, 20), shape="even")
    assert job.resources["nodes"] == "3:ppn=7"
    result = simulate([job], settings())
    assert [life.flavor for life in result.instances] == ["c8", "c8", "c8"]
    metrics = measure(result)
    # 3 nodes x 1 spare core for the whole run
    assert metrics.packing_waste_core_hours == pytest.approx(4 * 600 / 3600)


def test_an_idle_gap_longer_than_the_idle_timeout_costs_a_second_launch():
    long_gap = simulate(jobs_of(line(1, 0, 60, 2), line(2, 60 + 300 + 900, 60, 2)), settings())
    assert len(long_gap.instances) == 2
    first, second = long_gap.instances
    assert first.deleted < second.launched
    assert all(BOOT <= run.start - run.job.arrival <= READY_WITHIN for run in long_gap.jobs)


def test_an_idle_gap_shorter_than_the_idle_timeout_reuses_the_warm_instance():
    short_gap = simulate(jobs_of(line(1, 0, 60, 2), line(2, 60 + 200, 60, 2)), settings())
    assert len(short_gap.instances) == 1
    second = short_gap.jobs[1]
    assert second.start - second.job.arrival <= 1


def test_a_finished_gang_that_nothing_arrives_for_goes_long_before_the_idle_timeout():
    # An hour of history (one serial job every 10 min), then a 3-node gang and a lull.
    lines = [line(n, (n - 1) * 600, 60, 1) for n in range(1, 8)]
    lines.append(line(8, 3700, 600, 24))
    jobs = jobs_of(*lines)
    gang = len(jobs) - 1
    engine = settings(idle_timeout=1200.0)
    result = simulate(jobs, engine)
    end = result.jobs[gang].end
    hosts = set(result.jobs[gang].hosts)
    freed = sorted(life.deleted - end for life in result.instances if life.hostname in hosts)
    # Two nodes more than the arrivals want go at the first check (60 s); the one they
    # want waits out a few of the gaps seen, far short of max_idle_time.
    assert len(freed) == 3
    assert all(60 <= gone <= 60 + 40 for gone in freed[:2]), freed
    assert freed[2] <= 480 + 40, freed
    every_tick = simulate(jobs, replace(engine, every_tick=True))
    assert (every_tick.jobs, every_tick.instances) == (result.jobs, result.instances)
    fixed = simulate(jobs, replace(engine, early_idle_release=False))
    hosts = set(fixed.jobs[gang].hosts)
    assert all(life.deleted - fixed.jobs[gang].end >= 1200
               for life in fixed.instances if life.hostname in hosts)
    assert [run.start for run in fixed.jobs] == [run.start for run in result.jobs]


def test_hours_of_mixed_work_keep_every_invariant_at_every_pass():
    shapes = [1, 1, 2, 4, 6, 12, 1, 3]
    lines = [line(n, n * 97 % 14400, 300 + n * 37 % 2400, shapes[n % len(shapes)])
             for n in range(1, 121)]
    result = simulate(jobs_of(*lines), settings(max_booting=3))
    assert result.finished
    assert result.invariant_checks == result.passes > 100
    assert result.end > 4 * 3600
    assert all(run.end is not None for run in result.jobs)


def test_skipping_quiet_ticks_changes_nothing():
    lines = [line(n, n * 53 % 7200, 120 + n * 71 % 1800, [1, 2, 4, 12][n % 4])
             for n in range(1, 41)]
    jobs = jobs_of(*lines)
    for engine in (settings(check_invariants=False),
                   dynamic_torque_settings(settings(check_invariants=False))):
        skipping = simulate(jobs, engine)
        every_tick = simulate(jobs, replace(engine, every_tick=True))
        assert every_tick.passes > 3 * skipping.passes
        assert skipping.jobs == every_tick.jobs
        assert skipping.instances == every_tick.instances


def test_skipping_quiet_ticks_changes_nothing_while_idle_time_follows_demand():
    # Five hours of mixed work: after the first hour, idle nodes are weighed against the
    # arrivals and against each other (a node turning idle changes what the others wait).
    shapes = [1, 2, 4, 12, 24, 1, 1, 3]
    lines = [line(n, n * 159 % 18000, 120 + n * 213 % 1800, shapes[(n + 3) % len(shapes)])
             for n in range(1, 150)]
    jobs = jobs_of(*lines)
    engine = settings(check_invariants=False)
    skipping = simulate(jobs, engine)
    every_tick = simulate(jobs, replace(engine, every_tick=True))
    assert (skipping.jobs, skipping.instances) == (every_tick.jobs, every_tick.instances)


def test_direct_reads_give_the_same_replay_as_qstat_and_pbsnodes_xml():
    lines = [line(n, n * 113 % 3600, 200 + n * 31 % 900, [1, 4, 10][n % 3])
             for n in range(1, 16)]
    jobs = jobs_of(*lines)
    direct = simulate(jobs, settings(check_invariants=False))
    faithful = simulate(jobs, settings(check_invariants=False, faithful=True))
    assert direct.jobs == faithful.jobs
    assert direct.instances == faithful.instances


def test_the_old_dynamic_torque_boots_at_most_five_and_packs_no_multi_core_job():
    old = dynamic_torque_settings(settings(max_nodes=12))
    assert (old.flavors, old.max_booting, old.hook, old.pack_multicore) == (
        (FLAVORS[-1],), 5, False, False)
    burst = [line(n, 0, 600, 2) for n in range(1, 9)]
    result = simulate(jobs_of(*burst, max_nodes=12), old)
    assert len(result.instances) == 8              # each 2-core job gets its own node
    first_wave = sorted(life.launched for life in result.instances)[:6]
    assert first_wave[4] < first_wave[5]           # the sixth waits for a boot to finish
    packed = simulate(jobs_of(*burst, max_nodes=12), replace(old, pack_multicore=True))
    assert len(packed.instances) == 2


def test_polling_without_the_submit_filter_waits_for_the_next_tick():
    two = jobs_of(line(1, 0, 600, 8), line(2, 3, 600, 8))
    hooked = simulate(two, settings())
    polled = simulate(two, settings(hook=False))
    assert [life.launched for life in hooked.instances] == [0, 3]
    assert [life.launched for life in polled.instances] == [0, 10]


def test_sampled_boot_delays_vary_per_instance():
    delay = BootDelay.parse("uniform:30:90")
    assert delay.mean == 60
    lines = [line(n, n * 2000, 60, 2) for n in range(1, 6)]
    result = simulate(jobs_of(*lines), settings(boot_delay=delay))
    waits = {round(run.start - run.job.arrival) for run in result.jobs}
    assert len(waits) > 1 and all(30 <= wait <= 90 + 40 for wait in waits)


def test_bad_boot_delays_and_zero_slots_are_refused():
    with pytest.raises(SimulationError):
        BootDelay.parse("uniform:90:30")
    with pytest.raises(SimulationError):
        simulate(jobs_of(line(1, 0, 60, 1)), settings(max_nodes=0))


def test_jobs_larger_than_the_pool_are_reported_and_skipped():
    trace = parse_swf([line(1, 0, 60, 4), line(2, 10, 60, 40)])
    result = replay(trace, [settings(max_nodes=3)])
    [too_big] = result.too_big
    assert (too_big.number, too_big.line, too_big.cores) == (2, 2, 40)
    assert "at most 3 nodes and 24 cores" in too_big.reason
    assert [run.job.number for run in result.runs[0].result.jobs] == [1]


def test_waste_splits_add_up_and_static_clusters_come_from_the_oracle():
    lines = [line(1, 0, 1000, 4), line(2, 0, 1000, 4), line(3, 500, 1000, 6),
             line(4, 4000, 300, 1)]
    result = replay(parse_swf(lines), [settings()])
    metrics = result.runs[0].metrics
    split = (metrics.boot_waste_core_hours + metrics.idle_waste_core_hours
             + metrics.packing_waste_core_hours)
    assert split == pytest.approx(metrics.billed_core_hours - metrics.used_core_hours)
    assert metrics.static_peak.cores == 14
    assert metrics.static_peak.core_hours == pytest.approx(14 * 4300 / 3600)
    assert metrics.static_peak.wait.mean == 0
    assert 0 < metrics.saving_vs_static_peak < 1
    line_ = timeline(result.runs[0].result, points=50)
    assert max(line_.running_cores) == 14 and line_.queued_cores[-1] == 0


def test_first_come_first_served_waits_on_a_small_static_cluster():
    jobs = [SimJob(n, n, n, 0.0, 100.0, cores, ((1, cores),), 100, "u")
            for n, cores in enumerate([4, 4, 2])]
    assert fcfs_waits(jobs, 8) == [0, 0, 100]
    assert fcfs_waits(jobs, 4) == [0, 100, 200]


def test_node_parts_for_each_shape():
    assert node_parts(6, 16) == ((1, 6),)
    assert node_parts(36, 16, "fill") == ((2, 16), (1, 4))
    assert node_parts(32, 16, "fill") == ((2, 16),)
    assert node_parts(36, 16, "even") == ((3, 12),)


def test_the_command_line_prints_a_table_and_writes_json_and_a_plot(tmp_path: Path, capsys):
    trace = tmp_path / "small.swf"
    trace.write_text("; UnixStartTime: 0\n" + "\n".join(
        [line(1, 0, 600, 4), "not a job", line(2, 100, 300, 1), line(3, 200, 0, 2)]) + "\n")
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    code = simulate_main([str(trace), "--flavor", "c2:2", "--flavor", "c4:4:8192:0.5",
                          "--boot-delay", "60", "--json", str(out_json), "--plot", str(out_png)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "bad lines skipped: 1" in printed and "line 3: 3 fields, expected 18" in printed
    assert "skipped 1: run time <= 0" in printed
    assert "old-dynamic-torque" in printed and "waste ratio" in printed
    data = json.loads(out_json.read_text())
    assert [run["settings"]["name"] for run in data["runs"]] == ["dynamictorque",
                                                                  "old-dynamic-torque"]
    assert data["runs"][0]["metrics"]["jobs"] == 2
    # No MaxProcs/MaxNodes in the header: the native shape falls back to fill.
    assert "job shape native: the header gives no MaxProcs/MaxNodes" in printed
    assert (data["trace"]["shape"], data["trace"]["cores_per_node"]) == ("native", None)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_split_shape_asks_for_nodes_of_the_flavor_sizes():
    assert node_parts(9, 16, "split", [1, 2, 4, 8, 16]) == ((1, 8), (1, 1))
    assert node_parts(36, 16, "split", [4, 16]) == ((2, 16), (1, 4))
    assert node_parts(7, 8, "split", [4, 8]) == ((1, 4), (1, 3))
    assert node_parts(9, 16, "split", [16]) == node_parts(9, 16, "fill") == ((1, 9),)


def test_native_shape_keeps_a_job_on_one_node_only_where_its_machine_did():
    sizes = [1, 2, 4, 8, 16]
    # Nodes of 8 cores on the traced machine: a job up to 8 cores may share memory.
    assert node_parts(6, 16, "native", sizes, node_cores=8) == ((1, 6),)
    # 12 cores spanned two nodes there, so it is message-passing: nodes of flavor sizes.
    assert node_parts(12, 16, "native", sizes, node_cores=8) == ((1, 8), (1, 4))
    # A single-processor-node machine (an SP2): every parallel job spans nodes.
    assert node_parts(9, 16, "native", sizes, node_cores=1) == ((1, 8), (1, 1))
    assert node_parts(1, 16, "native", sizes, node_cores=1) == ((1, 1),)
    # A job one node held there but no flavor holds here: the fewest nodes.
    assert node_parts(24, 16, "native", sizes, node_cores=32) == ((1, 16), (1, 8))
    # The header did not say: as "fill".
    assert node_parts(9, 16, "native", sizes) == node_parts(9, 16, "fill") == ((1, 9),)


def test_replay_reads_the_machine_node_size_from_the_trace_header():
    header = ["; MaxNodes: 16", "; MaxProcs: 16"]
    trace = parse_swf([*header, line(1, 0, 600, 6)])
    [run] = replay(trace, [settings(check_invariants=False)]).runs
    [job] = run.result.jobs
    assert job.job.parts == ((1, 4), (1, 2))
    assert sorted(life.cores for life in run.result.instances) == [2, 4]
    assert replay(trace, [settings(check_invariants=False)], shape="fill"
                  ).runs[0].result.jobs[0].job.parts == ((1, 6),)


def test_a_quiet_week_between_jobs_is_no_stall():
    result = simulate(jobs_of(line(1, 0, 60, 1), line(2, 10 * 86400, 60, 1)),
                      settings(check_invariants=False))
    assert result.finished and all(run.end is not None for run in result.jobs)


def test_a_job_running_longer_than_the_stall_limit_is_no_stall():
    result = simulate(jobs_of(line(1, 0, 10 * 86400, 1)), settings(check_invariants=False))
    [run] = result.jobs
    assert result.finished and run.end == run.start + 10 * 86400


def test_a_job_that_can_never_start_stops_the_replay_as_stalled():
    # Every instance goes to ERROR: the pool backs off, then stops; the job waits on.
    simulation = Simulation(jobs_of(line(1, 0, 60, 1)),
                            settings(check_invariants=False, stall_limit=6 * 3600))
    simulation.world.nova.error_on_boot("sim-")
    result = simulation.run()
    assert not result.finished and result.jobs[0].start is None


def test_the_report_names_the_shape_and_the_traced_machine_node_size():
    sp2 = parse_swf(["; MaxNodes: 100", "; MaxProcs: 100", line(1, 0, 60, 1)])
    gaia = parse_swf(["; MaxNodes: 151", "; MaxProcs: 2004", line(1, 0, 60, 1)])
    assert "had 1 core per node" in describe_shape(sp2, "native")
    assert "had 13 cores per node" in describe_shape(gaia, "native")
    assert describe_shape(gaia, "split") == "job shape split"
