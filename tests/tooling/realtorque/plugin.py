"""pytest plugin: one real TORQUE 6.1.3 server per test session, for tests marked `live_torque`.

`live_torque` builds TORQUE from the shared real-torque source unless the cache has it
(install.py), puts the server's address on a host bridge and its name in a block of
/etc/hosts, and starts trqauthd, pbs_server and pbs_sched; the session's end stops them by
PID, removes the bridge and puts /etc/hosts back. `clean_torque` gives a test a fresh server
database (no nodes, no jobs, queue `batch`). `mom_fleet` turns every ACTIVE server of the
real Nova harness into a real pbs_mom in its own network namespace, and removes it when the
server is gone.

`DT_LIVE_TORQUE` decides what happens when real TORQUE cannot run here: `require` (CI) fails
those tests, unset skips them with the reason, `skip` never starts it.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from dtserver.model import announces_entry
from tests.tooling.novastack.plugin import LiveNova, live_mode
from tests.tooling.realtorque.install import TorqueInstall, TorqueUnavailable, ensure_built
from tests.tooling.realtorque.moms import CloudServer, MomFleet, remove_stale_namespaces
from tests.tooling.realtorque.server import (
    JOB_USER, NETWORK, SERVER_NAME, HostBridge, HostsBlock, TorqueServer, TorqueServerError,
    ensure_job_user)

MODE_VARIABLE = "DT_LIVE_TORQUE"
_timings: dict[str, float] = {}


@dataclass
class LiveTorque:
    install: TorqueInstall
    server: TorqueServer
    workdir: Path
    job_user: str = JOB_USER
    server_name: str = SERVER_NAME
    server_address: str = str(NETWORK.ip)


@pytest.fixture(scope="session")
def live_torque(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveTorque]:
    mode = live_mode(MODE_VARIABLE)
    if mode == "skip":
        pytest.skip(f"{MODE_VARIABLE}=skip: real TORQUE is not started")
    started = time.monotonic()
    try:
        install = ensure_built()
    except TorqueUnavailable as error:
        if mode == "require":
            pytest.fail(f"{MODE_VARIABLE}=require and {error}", pytrace=False)
        pytest.skip(f"real TORQUE unavailable: {error}")
    _timings["build"] = time.monotonic() - started
    workdir = tmp_path_factory.mktemp("realtorque")
    server = TorqueServer(install, workdir)
    try:
        server.acquire()
    except TorqueUnavailable as error:
        if mode == "require":
            pytest.fail(str(error), pytrace=False)
        pytest.skip(str(error))
    bridge, hosts = HostBridge(), HostsBlock()
    try:
        remove_stale_namespaces()
        bridge.up()
        hosts.install({SERVER_NAME: str(NETWORK.ip)})
        ensure_job_user()
        started = time.monotonic()
        try:
            server.start()
        except TorqueServerError as error:
            pytest.fail(f"real TORQUE did not start: {error}", pytrace=False)
        _timings["start"] = time.monotonic() - started
        yield LiveTorque(install, server, workdir)
    finally:
        server.stop()
        bridge.down()
        hosts.restore()
        server.release()


@pytest.fixture
def clean_torque(live_torque: LiveTorque) -> Iterator[LiveTorque]:
    """A fresh server database for this test; pbs_sched running."""
    live_torque.server.start()
    yield live_torque


def nova_servers(live: LiveNova) -> list[CloudServer]:
    """Every server of the harness's project, as the fleet needs it."""
    servers = []
    for server in live.admin.servers.list(limit=-1):
        addresses = [entry["addr"] for network in (server.addresses or {}).values()
                     for entry in network if entry.get("version", 4) == 4]
        servers.append(CloudServer(
            id=server.id, name=server.name, status=server.status,
            address=addresses[0] if addresses else None, cores=int(server.flavor["vcpus"]),
            entry_announced=announces_entry(server.metadata)))
    return servers


@pytest.fixture
def mom_fleet(clean_torque: LiveTorque, clean_nova: LiveNova,
              tmp_path: Path) -> Iterator[MomFleet]:
    # pbs_mom refuses a home below a world-writable directory such as /tmp.
    workdir = clean_torque.install.prefix.parent / "moms" / f"{os.getpid()}-{tmp_path.name}"
    fleet = MomFleet(clean_torque.install, workdir, clean_torque.server_name,
                     lambda: nova_servers(clean_nova))
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "live_torque" in report.keywords and report.when == "call":
        _timings["tests"] = _timings.get("tests", 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if "start" not in _timings:
        return
    terminalreporter.write_line(
        f"live torque: build check {_timings['build']:.1f} s, start {_timings['start']:.1f} s, "
        f"live_torque tests {_timings.get('tests', 0.0):.1f} s")
