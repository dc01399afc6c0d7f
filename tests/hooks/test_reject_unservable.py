"""reject_unservable: the hooks refuse a job only on the service's definite "no pool can
ever run it", within the usual deadline; every other outcome lets the job through."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Iterator

import pytest

from dtserver.api import create_app
from dtserver.api.devserver import ThreadServer, serve_in_thread
from dtserver.api.settings import ApiSettings
from dtserver.model import Flavor
from dtserver.store import CataloguePool, PoolCatalogue
from dtserver.store.sqlite import SqliteStore
from tests.builders import T0
from tests.hooks import fake_pbs
from tests.hooks.fake_pbs import Event, Job, ResourceList
from tests.hooks.test_filter_functions import submitfilter
from tests.hooks.support import (CUT_SHORT_SECONDS, FJOB, PBS_HOOK, HungServer,
                                 RecordingServer, closed_port_url, filter_log, run_filter,
                                 write_config)
from tests.sim.scenario import Cluster, scenario_policy

CATALOGUE = PoolCatalogue(
    pools=(CataloguePool("cloud", (Flavor("m1.small", 2, 4096), Flavor("m1.large", 8, 16384)),
                         max_nodes=4, properties=frozenset({"CLOUD"})),),
    queues=frozenset({"batch", "workq"}))
TOO_BIG = "a node of 16 cores/0 MiB/0 GPUs is larger than any flavor " \
          "(largest m1.large: 8 cores/16384 MiB/0 GPUs)"
FALSE = b'{"id": null, "servable": false, "reason": "no pool has node properties fat"}'


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "dt.db") as opened:
        opened.save_pool_catalogue(T0, CATALOGUE)
        yield opened


def serve(tmp_path: Path, store: SqliteStore) -> ThreadServer:
    return serve_in_thread(create_app(ApiSettings(db_path=tmp_path / "dt.db"), store=store),
                           "127.0.0.1", 0)


@pytest.fixture
def api(tmp_path: Path, store: SqliteStore) -> Iterator[ThreadServer]:
    server = serve(tmp_path, store)
    yield server
    server.shutdown()


def api_url(api: ThreadServer) -> str:
    return f"http://127.0.0.1:{api.port}"


# --- the TORQUE submit filter against the real API ------------------------------------------

def test_a_job_no_pool_can_run_is_rejected_with_exit_255_and_one_clear_line(
        tmp_path: Path, api: ThreadServer, store: SqliteStore) -> None:
    config = write_config(tmp_path, url=api_url(api), reject_unservable="yes")

    run = run_filter(["-q", "batch", "-l", "nodes=1:ppn=16", "job.sh"], FJOB, config=config,
                     cwd=tmp_path)

    assert run.status == 255                       # qsub: "administratively rejected"
    assert run.stderr == f"qsub: rejected by dynamictorque: {TOO_BIG}\n".encode()
    assert run.stdout == FJOB                      # still never less than it read
    assert run.elapsed < CUT_SHORT_SECONDS
    assert store.hints() == ()
    assert "job rejected reason=unservable" in filter_log(tmp_path)


def test_without_the_setting_the_same_job_goes_through(
        tmp_path: Path, api: ThreadServer, store: SqliteStore) -> None:
    config = write_config(tmp_path, url=api_url(api))

    run = run_filter(["-q", "batch", "-l", "nodes=1:ppn=16", "job.sh"], FJOB, config=config,
                     cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
    assert store.hints() == ()                     # the API still keeps it out of demand


@pytest.mark.parametrize("args", [
    ["-q", "batch", "-l", "nodes=2:ppn=8", "job.sh"],        # servable
    ["-q", "static", "-l", "nodes=1:ppn=64", "job.sh"],      # a queue no pool serves: unknown
    ["-l", "nodes=1:ppn=64", "job.sh"],                      # the server's default queue
    ["-q", "batch", "-l", "nodes=node17:ppn=64", "job.sh"],  # pinned to a host
], ids=["servable", "other-queue", "default-queue", "pinned"])
def test_servable_or_unknown_jobs_go_through_and_are_announced(
        tmp_path: Path, api: ThreadServer, store: SqliteStore, args: list[str]) -> None:
    config = write_config(tmp_path, url=api_url(api), reject_unservable="yes")

    run = run_filter(args, FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
    assert len(store.hints()) == 1


def test_without_a_published_catalogue_nothing_is_rejected(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "empty.db") as empty:
        server = serve_in_thread(create_app(ApiSettings(db_path=tmp_path / "empty.db"),
                                            store=empty), "127.0.0.1", 0)
        try:
            config = write_config(tmp_path, url=api_url(server), reject_unservable="yes")
            run = run_filter(["-l", "nodes=1:ppn=512", "job.sh"], FJOB, config=config,
                             cwd=tmp_path)
        finally:
            server.shutdown()

        assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
        assert len(empty.hints()) == 1


def test_the_catalogue_the_reconciler_published_rejects_through_the_filter(
        tmp_path: Path) -> None:
    # The whole path: a reconciler pass publishes its pools, the API judges, qsub is refused.
    cluster = Cluster(tmp_path, scenario_policy(max_cores=32))
    server = serve(tmp_path, cluster.store)
    try:
        config = write_config(tmp_path, url=api_url(server), reject_unservable="yes")
        refused = run_filter(["-l", "nodes=5:ppn=8", "job.sh"], FJOB, config=config,
                             cwd=tmp_path)
        accepted = run_filter(["-l", "nodes=4:ppn=8", "job.sh"], FJOB, config=config,
                              cwd=tmp_path)
    finally:
        server.shutdown()

    assert refused.status == 255
    assert refused.stderr == (b"qsub: rejected by dynamictorque: "
                              b"needs 40 cores; the cluster has max_cores=32\n")
    assert (accepted.status, accepted.stdout, accepted.stderr) == (0, FJOB, b"")


# --- every other outcome fails open ---------------------------------------------------------

@pytest.mark.parametrize("answer", [
    b'{"id": 1, "servable": true}',
    b'{"id": 1, "servable": null}',
    b'{"id": 1}',
    b'{"id": null, "servable": "false", "reason": "quoted"}',
    b'{"id": null, "servable": 0, "reason": "zero"}',
    b'[false]',
    b'{"id": null, "servable": false, "reason": "cut',
    b"servable: false",
    b"\xff\xfe not utf-8",
], ids=["true", "null", "no-verdict", "string", "zero", "list", "truncated", "not-json",
        "binary"])
def test_anything_but_a_definite_false_lets_the_job_through(
        tmp_path: Path, service: RecordingServer, answer: bytes) -> None:
    service.answer = answer
    config = write_config(tmp_path, url=service.url, reject_unservable="yes")

    run = run_filter(["-l", "nodes=1", "job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
    assert len(service.received) == 1


@pytest.mark.parametrize("queue", ["batch@other-cluster", "@other-cluster"])
def test_a_job_for_a_named_server_is_never_rejected(
        tmp_path: Path, service: RecordingServer, queue: str) -> None:
    # The verdict is about this cluster's pools; the named server may be another cluster.
    service.answer = FALSE
    config = write_config(tmp_path, url=service.url, reject_unservable="yes")

    run = run_filter(["-q", queue, "job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
    assert len(service.received) == 1


@pytest.mark.parametrize("status", [200, 400, 401, 500, 503])
def test_a_false_verdict_counts_only_in_a_202_answer(
        tmp_path: Path, service: RecordingServer, status: int) -> None:
    service.status, service.answer = status, FALSE
    config = write_config(tmp_path, url=service.url, reject_unservable="yes")

    run = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")


def test_a_false_verdict_after_the_deadline_lets_the_job_through(
        tmp_path: Path, service: RecordingServer) -> None:
    service.answer, service.delay = FALSE, 0.6
    config = write_config(tmp_path, url=service.url, reject_unservable="yes",
                          timeout_seconds=0.2)

    run = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
    assert run.elapsed < CUT_SHORT_SECONDS
    assert "timed out" in filter_log(tmp_path)


def test_a_hung_or_absent_service_lets_the_job_through(tmp_path: Path,
                                                      hung_service: HungServer) -> None:
    for url in (hung_service.url, closed_port_url()):
        config = write_config(tmp_path, url=url, reject_unservable="yes")

        run = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)

        assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
        assert run.elapsed < CUT_SHORT_SECONDS


def test_a_false_verdict_without_a_usable_reason_still_rejects_in_one_clean_line(
        tmp_path: Path, service: RecordingServer) -> None:
    config = write_config(tmp_path, url=service.url, reject_unservable="yes")
    service.answer = b'{"id": null, "servable": false}'
    plain = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)
    service.answer = ('{"id": null, "servable": false, "reason": "two\\nlines \\u001b[31m'
                      + "x" * 2000 + '"}').encode()
    hostile = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)
    service.answer = b'{"id": null, "servable": false, "reason": "half \\ud800 a pair"}'
    surrogate = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (plain.status, plain.stdout) == (255, FJOB)
    assert plain.stderr == b"qsub: rejected by dynamictorque: no pool can ever run this job\n"
    assert (hostile.status, hostile.stdout) == (255, FJOB)
    assert hostile.stderr.count(b"\n") == 1 and b"\x1b" not in hostile.stderr
    assert hostile.stderr.startswith(b"qsub: rejected by dynamictorque: two\xef\xbf\xbdlines")
    assert len(hostile.stderr) < 600
    assert (surrogate.status, surrogate.stdout) == (255, FJOB)
    assert surrogate.stderr == b"qsub: rejected by dynamictorque: half ? a pair\n"


@pytest.mark.parametrize("value, rejects", [
    ("yes", True), ("YES", True), ("true", True), ("on", True), ("1", True),
    ("no", False), ("off", False), ("false", False), ("0", False),
])
def test_reject_unservable_takes_yes_or_no_words(
        tmp_path: Path, service: RecordingServer, value: str, rejects: bool) -> None:
    service.answer = FALSE
    config = write_config(tmp_path, url=service.url, reject_unservable=value)

    run = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)

    assert run.status == (255 if rejects else 0)
    assert run.stdout == FJOB


@pytest.mark.parametrize("value", ["perhaps", "", "2"])
def test_a_bad_reject_unservable_value_is_a_config_error_and_nothing_is_rejected(
        tmp_path: Path, service: RecordingServer, value: str) -> None:
    service.answer = FALSE
    config = write_config(tmp_path, url=service.url, reject_unservable=value)
    config.with_name("bad.conf").write_text(config.read_text(), encoding="utf-8")

    run = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
    assert service.received == []
    config.write_text(f"url = {service.url}\nreject_unservable = yes\n", encoding="utf-8")
    assert run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path).status == 255
    with pytest.raises(submitfilter.ConfigError, match="reject_unservable must be yes or no"):
        submitfilter.read_settings(str(config.with_name("bad.conf")), required=True)


# --- the OpenPBS queuejob hook --------------------------------------------------------------

def run_hook(monkeypatch: pytest.MonkeyPatch, event: Event,
             config: Path) -> list[tuple[int, str]]:
    module, logged = fake_pbs.pbs_module(event, config)
    monkeypatch.setitem(sys.modules, "pbs", module)
    with pytest.raises(SystemExit):
        runpy.run_path(str(PBS_HOOK))
    return logged


def pbs_job(select: str = "1:ncpus=16") -> Job:
    return Job(Resource_List=ResourceList(select=select), queue="workq", Job_Owner="alice@l1")


def test_pbs_hook_rejects_a_job_no_pool_can_run_through_the_real_api(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: ThreadServer,
        store: SqliteStore) -> None:
    config = write_config(tmp_path, url=api_url(api), reject_unservable="yes")
    refused, accepted = Event(pbs_job()), Event(pbs_job("2:ncpus=8"))

    run_hook(monkeypatch, refused, config)
    run_hook(monkeypatch, accepted, config)

    assert (refused.outcome, refused.message) == ("reject",
                                                  f"rejected by dynamictorque: {TOO_BIG}")
    assert accepted.outcome == "accept"
    assert len(store.hints()) == 1


@pytest.mark.parametrize("status, answer, setting", [
    (202, FALSE, "no"),
    (202, b'{"id": 1, "servable": null}', "yes"),
    (202, b'{"id": 1, "servable": true}', "yes"),
    (202, b"not json", "yes"),
    (202, b'{"servable": "false"}', "yes"),
    (500, FALSE, "yes"),
], ids=["not-configured", "unknown", "servable", "not-json", "string", "server-error"])
def test_pbs_hook_accepts_on_anything_but_a_definite_false(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: RecordingServer,
        status: int, answer: bytes, setting: str) -> None:
    service.status, service.answer = status, answer
    config = write_config(tmp_path, url=service.url, reject_unservable=setting)
    event = Event(pbs_job())

    run_hook(monkeypatch, event, config)

    assert event.outcome == "accept"
    assert len(service.received) == 1


def test_pbs_hook_rejects_with_one_printable_line_whatever_the_reason_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: RecordingServer) -> None:
    service.answer = ('{"id": null, "servable": false, "reason": "two\\nlines \\ud800 '
                      + "x" * 2000 + '"}').encode()
    event = Event(pbs_job())

    run_hook(monkeypatch, event, write_config(tmp_path, url=service.url,
                                              reject_unservable="yes"))

    assert event.outcome == "reject" and event.message is not None
    assert event.message.startswith("rejected by dynamictorque: two\ufffdlines ? xxx")
    assert event.message.isprintable() and len(event.message) < 400


def test_pbs_hook_accepts_when_the_service_is_down_or_the_setting_is_bad(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: RecordingServer) -> None:
    service.answer = FALSE
    down, bad = Event(pbs_job()), Event(pbs_job())

    run_hook(monkeypatch, down, write_config(tmp_path, url=closed_port_url(),
                                             reject_unservable="yes"))
    logged = run_hook(monkeypatch, bad, write_config(tmp_path, url=service.url,
                                                     reject_unservable="maybe"))

    assert (down.outcome, bad.outcome) == ("accept", "accept")
    assert service.received == []
    assert any("reject_unservable must be yes or no" in text for _, text in logged)
