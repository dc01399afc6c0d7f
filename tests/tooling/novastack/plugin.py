"""pytest plugin: one real Nova API per test session, for the tests marked `live_nova`.

The `live_nova` fixture installs the harness venv if needed (cached once per machine:
stack.default_home), starts Nova and placement on free loopback ports, and always stops
them by PID at the end of the session. `DT_LIVE_NOVA` decides what happens when the harness cannot be installed:
`require` (CI) fails those tests, unset skips them with the reason, `skip` never starts it.
A harness that installs but does not start is always an error.

`clean_nova` hands a test the running Nova and afterwards deletes every server in the
project and restores the quota, so each test starts from an empty project.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint
from novaclient import client as nova_client
from novaclient import exceptions as nova_exc

from dtserver.model import Flavor
from tests.tooling.novastack.stack import (
    Endpoint, HarnessError, HarnessUnavailable, HarnessVenv, NovaStack, default_home)

MODE_VARIABLE = "DT_LIVE_NOVA"
CLOUD_NAME = "dt-live"
MICROVERSION = "2.96"
# Created by the admin at session start; Nova has no flavors of its own here.
FLAVORS = (
    Flavor("dt.small", cores=1, mem_mb=128, id="dt-small"),
    Flavor("dt.medium", cores=2, mem_mb=256, id="dt-medium"),
    Flavor("dt.large", cores=4, mem_mb=512, id="dt-large"),
)
# Room for every test; a test that wants a low quota sets it and clean_nova restores this.
BASELINE_QUOTA = {"instances": 1000, "cores": 1000, "ram": 10_000_000}
CLEANUP_TIMEOUT = 60.0

_timings: dict[str, float] = {}


@dataclass
class LiveNova:
    """The running harness, with clients for a project member and the admin."""

    endpoint: Endpoint
    clouds_yaml: Path
    flavors: tuple[Flavor, ...] = FLAVORS
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, user: str = "demo") -> Any:
        """A plain novaclient Client for test set-up and inspection (not the adapter's)."""
        if user not in self._clients:
            session = ks_session.Session(auth=token_endpoint.Token(
                self.endpoint.url, self.endpoint.token(user)), timeout=30)
            self._clients[user] = nova_client.Client(MICROVERSION, session=session)
        return self._clients[user]

    @property
    def admin(self) -> Any:
        return self.client("admin")

    def set_quota(self, **limits: int) -> None:
        self.admin.quotas.update(self.endpoint.project, **limits)

    def server_ids(self) -> set[str]:
        """Every server in the project, whoever made it."""
        return {server.id for server in self.admin.servers.list(limit=-1)}

    def reset(self, *, timeout: float = CLEANUP_TIMEOUT) -> None:
        """Delete every server in the project, wait until Nova lists none, restore quota."""
        for server_id in self.server_ids():
            try:
                self.admin.servers.delete(server_id)
            except nova_exc.NotFound:
                pass
        deadline = time.monotonic() + timeout
        while self.server_ids():
            if time.monotonic() > deadline:
                raise AssertionError(f"servers still present after {timeout:.0f} s: "
                                     f"{sorted(self.server_ids())}")
            time.sleep(0.2)
        self.set_quota(**BASELINE_QUOTA)


def live_mode(variable: str) -> str:
    """What a live harness does when it cannot run here: `require` fails its tests, `auto`
    (unset) skips them with the reason, `skip` never starts it."""
    mode = os.environ.get(variable, "auto")
    if mode not in ("auto", "require", "skip"):
        raise pytest.UsageError(f"{variable} must be require, skip or unset, not {mode!r}")
    return mode


def _write_clouds_yaml(path: Path, endpoint: Endpoint) -> None:
    """A clouds.yaml entry for the adapter's own loader: the launcher's tokens are static,
    so keystoneauth1's admin_token plugin (token + endpoint) fits."""
    path.write_text(f"""\
clouds:
  {CLOUD_NAME}:
    auth_type: admin_token
    auth:
      endpoint: {endpoint.url}
      token: "{endpoint.token('demo')}"
""")


def _create_flavors(live: LiveNova) -> None:
    for flavor in live.flavors:
        live.admin.flavors.create(flavor.name, ram=flavor.mem_mb, vcpus=flavor.cores, disk=1,
                                  flavorid=flavor.id)


def prepare(endpoint: Endpoint, state: Path) -> LiveNova:
    """A started harness made ready for us: clouds.yaml, our flavors, room in the quota."""
    live = LiveNova(endpoint, state / "clouds.yaml")
    _write_clouds_yaml(live.clouds_yaml, endpoint)
    _create_flavors(live)
    live.set_quota(**BASELINE_QUOTA)
    return live


@pytest.fixture(scope="session")
def live_nova(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNova]:
    mode = live_mode(MODE_VARIABLE)
    if mode == "skip":
        pytest.skip(f"{MODE_VARIABLE}=skip: the real Nova harness is not started")
    venv = HarnessVenv(default_home())
    started = time.monotonic()
    try:
        installed = venv.ensure()
    except HarnessUnavailable as error:
        if mode == "require":
            pytest.fail(f"{MODE_VARIABLE}=require and {error}", pytrace=False)
        pytest.skip(f"real Nova harness unavailable (no package registry?): {error}")
    if installed:
        _timings["install"] = time.monotonic() - started
    state = tmp_path_factory.mktemp("novastack")
    stack = NovaStack(venv, state)
    started = time.monotonic()
    try:
        endpoint = stack.start()
    except HarnessError as error:
        pytest.fail(f"the real Nova harness did not start: {error}", pytrace=False)
    _timings["start"] = time.monotonic() - started
    try:
        yield prepare(endpoint, state)
    finally:
        stack.stop()


@pytest.fixture
def clean_nova(live_nova: LiveNova, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveNova]:
    """The live Nova, with our clouds.yaml visible to the adapter's loader, emptied after."""
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(live_nova.clouds_yaml))
    try:
        yield live_nova
    finally:
        live_nova.reset()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "live_nova" in report.keywords:
        _timings["tests"] = _timings.get("tests", 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if "start" not in _timings:
        return
    install = _timings.get("install")
    # The first live test's set-up duration holds the install and the start.
    tests = _timings.get("tests", 0.0) - (install or 0.0) - _timings["start"]
    terminalreporter.write_line(
        f"live nova: {'install cached' if install is None else f'install {install:.1f} s'}, "
        f"start {_timings['start']:.1f} s, live_nova tests {tests:.1f} s")
