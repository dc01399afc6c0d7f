"""The /status page in real headless Chromium: it renders, shows the nodes, refreshes.

The screenshot goes to build/screenshots/status-page.png (build/ is gitignored).
"""
from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import pytest

from dtserver.actions import JobVerdict, LaunchInstance, Plan, VerdictStatus
from dtserver.api import create_app
from dtserver.api.settings import ApiSettings
from dtserver.clock import FakeClock
from dtserver.model import ErrorKind, IntentKind, NodeState, PoolHealth
from dtserver.store import PassReport
from dtserver.store.sqlite import SqliteStore
from tests.admin.conftest import serve_app
from tests.api.builders import T0, record
from tests.browser.conftest import Browser

SCREENSHOT = Path(__file__).resolve().parents[2] / "build" / "screenshots" / "status-page.png"
REFRESH_WAIT_SECONDS = 15
HOSTNAMES = "return Array.from(document.querySelectorAll('tr.node'), row => row.dataset.hostname)"


def fill(store: SqliteStore) -> None:
    """A cluster in mid-afternoon: nodes in most states, a backoff, jobs waiting, failures."""
    minute = timedelta(minutes=1)
    store.insert_record(record("cloud-001", state=NodeState.BUSY, address="10.0.0.11",
                               since=T0 - 42 * minute, reason="mom reports jobs"))
    store.insert_record(record("cloud-002", state=NodeState.IDLE, address="10.0.0.12",
                               since=T0 - 7 * minute, reason="no jobs"))
    store.insert_record(record("cloud-003", state=NodeState.BOOTING, since=T0 - minute,
                               reason="demand: 31.vm"))
    store.insert_record(record("cloud-004", state=NodeState.OFFLINE, address="10.0.0.14",
                               since=T0 - 3 * minute, reason="idle for 600 s"))
    store.insert_record(record("gpu-001", pool="gpu", state=NodeState.FAILED, cores=16,
                               since=T0 - 2 * minute, reason="boot timeout after 1200 s"))
    store.save_pool_health(PoolHealth("gpu", consecutive_failures=3,
                                      backoff_until=T0 + 4 * minute, last_error=ErrorKind.BOOT,
                                      last_message="instance ERROR: no valid host"))
    store.save_pass(PassReport(time=T0 - timedelta(seconds=4), duration_seconds=0.31, ok=True,
                               summary={}))
    store.save_plan(T0 - timedelta(seconds=4), Plan(
        actions=(LaunchInstance("cloud-005", "cloud", "m1.large", 8, "demand: 32.vm"),),
        verdicts=(JobVerdict("31.vm", VerdictStatus.WAITING_BOOT,
                             "waiting for cloud-003 to join", "cloud"),
                  JobVerdict("32.vm", VerdictStatus.LAUNCHING, "launching cloud-005", "cloud"),
                  JobVerdict("33.vm", VerdictStatus.WAITING_CAPACITY, "pool gpu backing off until "
                             "03:08:05Z after boot: instance ERROR", "gpu"),
                  JobVerdict("34.vm", VerdictStatus.NOT_ELIGIBLE, "held (Hold_Types=u)")),
        notes=("pool gpu backing off",)))
    store.add_event(T0 - 2 * minute, "failure", "gpu-001: boot timeout after 1200 s",
                    hostname="gpu-001", pool="gpu")
    store.add_event(T0 - minute, "launch", "cloud-003 launching (m1.large): demand: 31.vm",
                    hostname="cloud-003", pool="cloud")
    store.add_intent(IntentKind.KILL, "cloud-002", T0)


@pytest.fixture
def page_service(tmp_path: Path) -> Iterator[tuple[str, SqliteStore, FakeClock]]:
    clock = FakeClock(T0)
    with SqliteStore(tmp_path / "dt.db") as store:
        fill(store)
        app = create_app(ApiSettings(db_path=store.path), store=store, clock=clock)
        with serve_app(app) as url:
            yield url, store, clock


def test_status_page_renders_the_nodes_and_refreshes_itself(
        browser: Browser, page_service: tuple[str, SqliteStore, FakeClock]) -> None:
    url, store, clock = page_service
    browser.open(f"{url}/status?refresh=1")

    assert browser.run("return document.title") == "dynamictorque status"
    assert browser.run(HOSTNAMES) == ["cloud-003", "cloud-002", "cloud-001", "cloud-004",
                                      "gpu-001"]
    body = browser.run("return document.body.innerText")
    assert "waiting for cloud-003 to join" in body
    assert "3 failures (boot)" in body
    assert "gpu-001: boot timeout after 1200 s" in body
    assert browser.run("return document.getElementById('generated').textContent") == \
        "2026-01-02T03:04:05Z"
    shot = browser.screenshot(SCREENSHOT)
    assert shot.read_bytes().startswith(b"\x89PNG")

    # The page reloads itself: a mark set in this document vanishes, new data appears.
    browser.run("window.dtMark = 'before reload'; return null")
    store.insert_record(record("cloud-006", state=NodeState.LAUNCHING, reason="demand: 35.vm"))
    clock.advance(30)
    deadline = time.monotonic() + REFRESH_WAIT_SECONDS
    while time.monotonic() < deadline:
        if "cloud-006" in (browser.run(HOSTNAMES) or ()):
            break
        time.sleep(0.2)
    assert "cloud-006" in browser.run(HOSTNAMES)
    assert browser.run("return window.dtMark === undefined") is True
    assert browser.run("return document.getElementById('generated').textContent") == \
        "2026-01-02T03:04:35Z"
