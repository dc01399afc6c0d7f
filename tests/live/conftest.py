"""Live tests: the real Nova of tests/tooling/novastack (the session fixture `live_nova`,
registered by tests/conftest.py) under the reconciler and the TORQUE emulator."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.live.world import LiveWorld, live_policy
from tests.tooling.novastack.plugin import LiveNova


@pytest.fixture
def world(clean_nova: LiveNova, tmp_path) -> Iterator[LiveWorld]:
    live_world = LiveWorld(clean_nova, tmp_path / "dt.db", live_policy(clean_nova))
    try:
        yield live_world
    finally:
        live_world.close()
