"""Live tests on real TORQUE 6.1.3 (tests/tooling/realtorque) and the real Nova API
(tests/tooling/novastack): dynamictorque deployed by its documented steps (site.py)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from tests.live_torque.site import Site
from tests.tooling.novastack.plugin import LiveNova
from tests.tooling.realtorque.moms import MomFleet
from tests.tooling.realtorque.plugin import LiveTorque


@pytest.fixture
def site(clean_torque: LiveTorque, clean_nova: LiveNova, mom_fleet: MomFleet,
         tmp_path: Path) -> Iterator[Site]:
    # The submitting user reads the filter's settings: not below root's private tmp.
    shared = clean_torque.install.prefix.parent / "sites" / f"{os.getpid()}-{tmp_path.name}"
    deployed = Site(clean_torque, clean_nova, tmp_path, shared, mom_fleet)
    try:
        yield deployed
    finally:
        deployed.close()
