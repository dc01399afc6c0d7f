"""The OpenPBS queuejob hook, run under a stand-in `pbs` module: it always accepts the job."""
from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dtserver.api import create_app
from dtserver.api.devserver import serve_in_thread
from dtserver.api.settings import ApiSettings
from dtserver.store.sqlite import SqliteStore
from tests.hooks import fake_pbs
from tests.hooks.fake_pbs import Event, Job, ResourceList
from tests.hooks.support import (CUT_SHORT_SECONDS, PBS_HOOK, Certificate, HungServer,
                                 ProxyTrap, RecordingServer, closed_port_url,
                                 proxy_environment, write_config)


def run_hook(monkeypatch: pytest.MonkeyPatch, event: Event,
             config: Path | None) -> list[tuple[int, str]]:
    """Run the hook file as PBS does; return what it logged."""
    module, logged = fake_pbs.pbs_module(event, config)
    monkeypatch.setitem(sys.modules, "pbs", module)
    with pytest.raises(SystemExit) as ended:
        runpy.run_path(str(PBS_HOOK))
    assert ended.value.code == "0"
    assert event.outcome == "accept"
    return logged


def warnings(logged: list[tuple[int, str]]) -> list[str]:
    return [text for level, text in logged if level == fake_pbs.LOG_WARNING]


def job(**fields: Any) -> Job:
    values: dict[str, Any] = {
        "Resource_List": ResourceList(select="2:ncpus=4:mem=8gb", walltime="01:00:00"),
        "queue": "workq", "Job_Name": "sim", "Job_Owner": "alice@login1"}
    values.update(fields)
    return Job(**values)


def test_queued_job_is_announced_with_its_raw_resources(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: RecordingServer) -> None:
    token = tmp_path / "hint.token"
    token.write_text("hint-token-123\n", encoding="utf-8")
    config = write_config(tmp_path, url=service.url, token_file=token)
    event = Event(job(Account_Name="physics", array_indices_submitted="1-10%2"))

    run_hook(monkeypatch, event, config)

    [request] = service.received
    assert request.path == "/v1/hints"
    assert request.headers["Authorization"] == "Bearer hint-token-123"
    assert request.body == {
        "user": "alice",
        "resources": ["select=2:ncpus=4:mem=8gb", "walltime=01:00:00"],
        "queue": "workq",
        "account": "physics",
        "job_name": "sim",
        "submit_host": "login1.example.org",
        "array": "1-10%2",
    }


def test_proxy_variables_never_carry_the_hint_or_its_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: RecordingServer,
        proxy_trap: ProxyTrap) -> None:
    token = tmp_path / "hint.token"
    token.write_text("hint-token-123\n", encoding="utf-8")
    config = write_config(tmp_path, url=service.url, token_file=token)
    for name, value in proxy_environment(proxy_trap.url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)

    run_hook(monkeypatch, Event(job()), config)

    assert service.received[0].headers["Authorization"] == "Bearer hint-token-123"
    assert proxy_trap.requests() == []


def test_https_url_is_posted_over_tls_trusting_the_configured_ca(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls_service: RecordingServer,
        certificate: Certificate) -> None:
    config = write_config(tmp_path, url=tls_service.url, ca_file=certificate.cert)

    logged = run_hook(monkeypatch, Event(job()), config)

    assert warnings(logged) == []
    assert tls_service.received[0].body["queue"] == "workq"


@pytest.mark.parametrize("indices, array", [
    ("1-10:2%3", "1,3,5,7,9%3"),
    ("0-99998:2", "0-49999"),
    ("5-7", "5-7"),
])
def test_pbs_array_steps_become_torque_index_lists_of_the_same_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: RecordingServer,
        indices: str, array: str) -> None:
    config = write_config(tmp_path, url=service.url)

    run_hook(monkeypatch, Event(job(array_indices_submitted=indices)), config)

    assert service.received[0].body["array"] == array


def test_queue_at_server_and_unset_values_are_left_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: RecordingServer) -> None:
    config = write_config(tmp_path, url=service.url)
    event = Event(job(queue="workq@pbs1", Job_Name=None,
                      Resource_List=ResourceList(ncpus="4", mem=None)))

    run_hook(monkeypatch, event, config)

    body = service.received[0].body
    assert (body["queue"], body["resources"]) == ("workq", ["ncpus=4"])
    assert "job_name" not in body


@pytest.mark.parametrize("fields", [
    {"Hold_Types": "u"},
    {"depend": "afterok:12.pbs1"},
    {"Execution_Time": 1_800_000_000},
], ids=["held", "dependency", "deferred"])
def test_jobs_that_will_not_wait_for_nodes_are_accepted_without_a_hint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: RecordingServer,
        fields: dict[str, Any]) -> None:
    config = write_config(tmp_path, url=service.url)

    run_hook(monkeypatch, Event(job(**fields)), config)

    assert service.received == []


def test_service_down_is_logged_and_the_job_accepted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, url=closed_port_url())

    logged = run_hook(monkeypatch, Event(job()), config)

    assert any("hint not sent" in text and "ConnectionRefused" in text
               for text in warnings(logged))


def test_hung_service_delays_the_job_by_the_timeout_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hung_service: HungServer) -> None:
    config = write_config(tmp_path, url=hung_service.url, timeout_seconds=0.3)

    started = time.monotonic()
    logged = run_hook(monkeypatch, Event(job()), config)

    assert time.monotonic() - started < CUT_SHORT_SECONDS
    assert any("timed out" in text for text in warnings(logged))


def test_service_error_is_logged_and_the_job_accepted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: RecordingServer) -> None:
    service.status = 500
    config = write_config(tmp_path, url=service.url)

    logged = run_hook(monkeypatch, Event(job()), config)

    assert any("hint refused status=500" in text for text in warnings(logged))


def test_broken_config_is_logged_and_the_job_accepted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: RecordingServer) -> None:
    config = tmp_path / "filter.conf"
    config.write_text(f"url = {service.url}\ncolour = blue\n", encoding="utf-8")

    logged = run_hook(monkeypatch, Event(job()), config)

    assert service.received == []
    assert any("unknown key 'colour'" in text for text in warnings(logged))


def test_hook_hint_is_accepted_by_the_real_api(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: SqliteStore) -> None:
    app = create_app(ApiSettings(db_path=tmp_path / "dt.db"), store=store)
    server = serve_in_thread(app, "127.0.0.1", 0)
    try:
        config = write_config(tmp_path, url=f"http://127.0.0.1:{server.port}")
        event = Event(job(array_indices_submitted="1-10:2%3", Account_Name="physics"))
        logged = run_hook(monkeypatch, event, config)
    finally:
        server.shutdown()

    assert warnings(logged) == []
    [stored] = store.hints()
    assert stored.payload["resources"] == ["select=2:ncpus=4:mem=8gb", "walltime=01:00:00"]
    assert stored.payload["array"] == "1,3,5,7,9%3"
