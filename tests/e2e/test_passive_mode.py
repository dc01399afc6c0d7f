"""Passive mode end to end, with real processes: the emulator's qsub runs hooks/torque_submitfilter
(torque.cfg SUBMITFILTER), the filter posts to gunicorn on loopback, gunicorn stores the hint
and writes the wakeup FIFO, and the reconciler in this process launches on FakeNova.

The service being down or hung costs the user nothing: qsub still succeeds within the
filter's deadline, the job is queued, and the ordinary poll launches for it.
"""
from __future__ import annotations

import threading
import time

from dtserver.actions import LaunchInstance
from dtserver.model import NodeState
from tests.cli_emulator.support import xml_jobs
from tests.e2e.support import Gunicorn, Site
from tests.hooks.support import HungServer, closed_port_url

# Bounds that hold on a machine whose cores are busy elsewhere; a healthy run takes a
# fraction of each (bench/ measures the speeds). The filter's own hard deadline is about
# 0.9 s: a qsub that waited for a hung service would never return.
QSUB_WITH_DEAD_SERVICE_SECONDS = 30.0
# Far longer than any pass here: a launch sooner than WOKEN_PASS_SECONDS was the wakeup's.
POLL_SECONDS = 600.0
WAIT_SECONDS = 180.0
WOKEN_PASS_SECONDS = 120.0


def launched_cores(site: Site) -> int:
    cores = {flavor.name: flavor.cores for flavor in site.cloud.flavors()}
    return sum(cores[spec.flavor] for _, spec in site.cloud.creates)


def queued_job_ids(site: Site) -> list[str]:
    return [job.id for job in site.batch.jobs() if job.state == "Q"]


def test_a_qsub_hint_wakes_the_reconciler_and_its_next_pass_creates_the_instance(
        site: Site, api: Gunicorn) -> None:
    site.reconciler.run_once()     # registers the node slots qsub checks nodes= against
    stop = threading.Event()

    run = site.qsub("-l", "nodes=1:ppn=2")

    assert run.status == 0, run.stderr
    assert run.stdout.strip().endswith(".vm"), run.stdout
    assert "hint sent status=202" in site.filter_log.read_text()
    assert site.wakeup.wait(5.0, stop) is True
    [stored] = site.store.hints()
    assert stored.payload["resources"] == ["walltime=00:10:00", "nodes=1:ppn=2"]
    report = site.reconciler.run_once()
    assert sum(isinstance(action, LaunchInstance) for action in report.plan.actions) == 1
    assert [spec.pool for _, spec in site.cloud.creates] == ["cloud"]
    assert launched_cores(site) == 2


def test_with_the_loop_running_the_create_follows_qsub_at_once_not_at_the_next_poll(
        site: Site, api: Gunicorn) -> None:
    stop = threading.Event()
    loop = threading.Thread(target=site.reconciler.run_forever, args=(stop,),
                            kwargs={"interval": POLL_SECONDS, "wakeup": site.wakeup})
    loop.start()
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while site.store.last_pass() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert site.store.last_pass() is not None, "the first pass did not finish"

        submitted = time.monotonic()
        run = site.qsub("-l", "nodes=1:ppn=4")
        while not site.cloud.creates and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(timeout=WAIT_SECONDS)

    assert not loop.is_alive()
    assert run.status == 0, run.stderr
    assert site.cloud.creates, "no instance was created"
    assert site.cloud.creates[0][0] - submitted < WOKEN_PASS_SECONDS
    assert launched_cores(site) == 4


def test_with_the_service_down_qsub_succeeds_fast_and_the_poll_launches_for_the_job(
        site: Site) -> None:
    site.point_filter_at(closed_port_url())
    site.reconciler.run_once()

    run = site.qsub("-l", "nodes=1:ppn=2")

    assert run.status == 0, run.stderr
    assert run.seconds < QSUB_WITH_DEAD_SERVICE_SECONDS
    assert queued_job_ids(site) == [run.stdout.strip()]
    assert "hint not sent" in site.filter_log.read_text()
    assert site.store.hints() == ()
    site.reconciler.run_once()
    assert launched_cores(site) == 2


def test_with_the_service_hung_qsub_returns_within_the_filter_deadline(site: Site) -> None:
    hung = HungServer()
    try:
        site.point_filter_at(hung.url)
        site.reconciler.run_once()

        run = site.qsub("-l", "nodes=1:ppn=2")
    finally:
        hung.close()

    assert run.status == 0, run.stderr
    assert run.seconds < QSUB_WITH_DEAD_SERVICE_SECONDS
    assert queued_job_ids(site) == [run.stdout.strip()]
    assert "hint not sent" in site.filter_log.read_text() \
        or "hint abandoned reason=deadline" in site.filter_log.read_text()
    site.reconciler.run_once()
    assert launched_cores(site) == 2


def test_an_array_hint_stands_for_all_its_subjobs(site: Site, api: Gunicorn) -> None:
    site.reconciler.run_once()

    run = site.qsub("-t", "1-4", "-l", "nodes=1:ppn=2")

    assert run.status == 0, run.stderr
    [stored] = site.store.hints()
    assert stored.payload["array"] == "1-4"
    site.reconciler.run_once()
    assert launched_cores(site) == 8


def test_arguments_with_quotes_and_spaces_reach_torque_and_the_api_intact(
        site: Site, api: Gunicorn) -> None:
    site.reconciler.run_once()

    run = site.qsub("-v", 'GREETING=say "hi" twice,PLACE=two words', "-N", "quoted",
                    "-l", "nodes=1:ppn=2")

    assert run.status == 0, run.stderr
    [stored] = site.store.hints()
    assert stored.payload["job_name"] == "quoted"
    assert stored.payload["resources"] == ["walltime=00:10:00", "nodes=1:ppn=2"]
    job = xml_jobs(site.bin_dir)[run.stdout.strip()]
    # As real TORQUE prints it: Variable_List puts a backslash before a quote
    # (tests/data/torque/51_qsub_control_bytes.txt).
    assert 'GREETING=say \\"hi\\" twice' in (job.findtext("Variable_List") or "")


def test_an_argument_with_a_single_quote_fails_in_qsub_as_on_real_torque(
        site: Site, api: Gunicorn) -> None:
    """qsub's own `sh -c` line breaks before our filter runs (hooks/README.md)."""
    site.reconciler.run_once()

    run = site.qsub("-N", "it's", "-l", "nodes=1:ppn=2")

    assert run.status == 1
    assert "submit filter returned an error code" in run.stderr
    assert site.store.hints() == ()
    assert queued_job_ids(site) == []


def test_the_announced_job_runs_on_the_instance_its_hint_launched(
        site: Site, api: Gunicorn) -> None:
    site.reconciler.run_once()
    job_id = site.qsub("-l", "nodes=1:ppn=2").stdout.strip()

    # Launch, boot, join, mom report, scheduler poke: a few passes on real time.
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        site.reconciler.run_once()
        job = {job.id: job for job in site.batch.jobs()}[job_id]
        records = site.store.records()
        if job.state == "R" and [record.state for record in records] == [NodeState.BUSY]:
            break
        time.sleep(0.2)

    assert job.state == "R"
    [record] = records
    assert record.state is NodeState.BUSY
    assert job.exec_hosts == (record.hostname,)
    assert len(site.cloud.creates) == 1
