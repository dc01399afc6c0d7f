"""Fixtures of the end-to-end tests: a site (TORQUE emulator, store, FakeNova, reconciler)
and the API under real gunicorn, each torn down by PID."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.support import Gunicorn, Site
from tests.hooks.support import current_user
from tests.sim.scenario import scenario_policy


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    opened = Site(tmp_path, scenario_policy(), current_user())
    yield opened
    opened.close()


@pytest.fixture
def api(site: Site) -> Iterator[Gunicorn]:
    server = Gunicorn(site.directory, site.api_environment())
    site.point_filter_at(server.url)
    yield server
    server.stop()
