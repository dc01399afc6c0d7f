"""dtadmin -> API -> intent -> a real Reconciler pass -> outcome, on the emulated cluster.

The reconciler runs in a background thread in simulated time (a pass per 10 simulated
seconds, every ~10 ms of wall time) over the TORQUE emulator and FakeNova, and the
scenario's safety invariants (no running job killed, limits held) are checked after
every pass. dtadmin talks to the API on loopback only.
"""
from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from dtserver.api import create_app
from dtserver.api.settings import ApiSettings
from dtserver.model import NodeState
from tests.admin.conftest import Service, serve_app, write_token
from tests.sim.scenario import Cluster, scenario_policy

FAST_WAIT = ["--poll", "0.05", "--wait-timeout", "60"]
MAX_SETUP_PASSES = 60


class ReconcilerThread:
    """The reconciler loop, as its systemd unit would run it, in simulated time."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.cluster.step(10)
            except BaseException as error:   # re-raised in the test thread by stop()
                self.error = error
                return
            self._stop.wait(0.01)

    def __enter__(self) -> ReconcilerThread:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.error is not None:
            raise self.error


def run_until(cluster: Cluster, done: Callable[[], bool], what: str) -> None:
    for _ in range(MAX_SETUP_PASSES):
        cluster.step(10)
        if done():
            return
    raise AssertionError(f"not reached after {MAX_SETUP_PASSES} passes: {what}")


def cluster_running(tmp_path: Path, runtimes: list[float]) -> tuple[Cluster, list[str]]:
    """A cluster whose jobs (one 8-core node each) are running."""
    cluster = Cluster(tmp_path, scenario_policy())
    cluster.step(10)    # registers the node slots, so qsub accepts the jobs
    job_ids = [cluster.submit({"nodes": "1:ppn=8"}, runtime=runtime) for runtime in runtimes]
    run_until(cluster, lambda: all(job.state == "R" for job in cluster.jobs()
                                   if job.id in job_ids), "every job running")
    return cluster, job_ids


@pytest.fixture
def serve_cluster(tmp_path: Path) -> Iterator[Callable[[Cluster], Service]]:
    """Serve the API on a cluster's store and clock; stopped at the end of the test."""
    token_file = write_token(tmp_path / "admin.token")
    with ExitStack() as servers:
        def start(cluster: Cluster) -> Service:
            app = create_app(ApiSettings(db_path=cluster.store.path, token_file=token_file),
                             store=cluster.store, clock=cluster.clock)
            url = servers.enter_context(serve_app(app))
            return Service(url, cluster.store, cluster.clock, token_file)

        yield start


def host_of(cluster: Cluster, job_id: str) -> str:
    job = next(job for job in cluster.jobs() if job.id == job_id)
    return job.exec_host.split("/")[0]


@pytest.mark.parametrize("argv", [["kill", "{host}", "--wait", *FAST_WAIT], ["-k", "{host}"]])
def test_kill_of_a_busy_node_is_refused_with_the_job_named(tmp_path: Path, serve_cluster,
                                                           capsys, argv) -> None:
    cluster, (job_id,) = cluster_running(tmp_path, [100_000])
    host = host_of(cluster, job_id)
    service = serve_cluster(cluster)

    with ReconcilerThread(cluster):
        code = service.dtadmin(*[word.format(host=host) for word in argv])

    assert code == 1
    assert f"refused: {host} runs job {job_id}; use drain-all" in capsys.readouterr().err
    (record,) = [record for record in cluster.store.records() if record.hostname == host]
    assert record.state is NodeState.BUSY
    assert next(job for job in cluster.jobs() if job.id == job_id).state == "R"


def test_kill_of_an_idle_node_deletes_it(tmp_path: Path, serve_cluster, capsys) -> None:
    cluster, (job_id,) = cluster_running(tmp_path, [30])
    host = host_of(cluster, job_id)
    run_until(cluster, lambda: any(record.state is NodeState.IDLE
                                   for record in cluster.store.records()), "node idle")
    service = serve_cluster(cluster)

    with ReconcilerThread(cluster):
        code = service.dtadmin("-k", host, *FAST_WAIT)

    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"(kill {host}): done: {host} offlined" in out
    assert out.rstrip().endswith(f"{host} deleted")
    cluster.assert_nothing_leaked()


@pytest.mark.parametrize("argv", [["-f", *FAST_WAIT], ["drain-all", "--wait", *FAST_WAIT]])
def test_drain_all_completes_with_no_job_killed(tmp_path: Path, serve_cluster, capsys,
                                                argv) -> None:
    cluster, job_ids = cluster_running(tmp_path, [300, 600])
    service = serve_cluster(cluster)

    # ReconcilerThread checks after every pass that no running job was killed or requeued.
    with ReconcilerThread(cluster):
        code = service.dtadmin(*argv)

    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "(drain-all): done: 2 nodes draining; sleep mode on" in out
    assert "waiting for 2 nodes: offline 2" in out
    assert "all nodes drained and deleted" in out
    finished = {job.id: job for job in cluster.jobs() if job.id in job_ids}
    assert {job.state for job in finished.values()} == {"C"}
    assert {job.exit_status for job in finished.values()} == {0}
    cluster.assert_nothing_leaked()
    assert cluster.store.is_sleeping() is True
    # The metrics of that history: two nodes came up, two were drained and deleted.
    families = {family.name: family for family in text_string_to_metric_families(
        requests.get(service.url + "/metrics", timeout=10).text)}
    counts = {sample.name: sample.value
              for family in ("dynamictorque_time_to_ready_seconds",
                             "dynamictorque_time_to_drain_seconds")
              for sample in families[family].samples if sample.name.endswith("_count")}
    assert counts == {"dynamictorque_time_to_ready_seconds_count": 2.0,
                      "dynamictorque_time_to_drain_seconds_count": 2.0}


def test_why_explains_a_job_waiting_in_sleep_mode(tmp_path: Path, serve_cluster,
                                                  capsys) -> None:
    cluster = Cluster(tmp_path, scenario_policy())
    cluster.step(10)
    service = serve_cluster(cluster)
    assert service.dtadmin("sleep") == 0
    job_id = cluster.submit({"nodes": "1:ppn=2"}, runtime=60)
    cluster.step(10)

    assert service.dtadmin("why", job_id.split(".")[0]) == 0

    assert f"{job_id}: waiting-capacity (pool cloud): sleep mode: no new launches" in \
        capsys.readouterr().out


def test_reset_pool_is_carried_out_or_refused_by_the_reconciler(tmp_path: Path, serve_cluster,
                                                                capsys) -> None:
    cluster = Cluster(tmp_path, scenario_policy())
    service = serve_cluster(cluster)

    with ReconcilerThread(cluster):
        known = service.dtadmin("reset-pool", "cloud", "--wait", *FAST_WAIT)
        unknown = service.dtadmin("reset-pool", "nope", "--wait", *FAST_WAIT)

    assert (known, unknown) == (0, 1)
    captured = capsys.readouterr()
    assert "(reset-pool cloud): done: pool cloud resumed" in captured.out
    assert "reset-pool nope refused: no pool named nope" in captured.err
