"""A TORQUE CLI emulator home on a simulated clock, and its executables in a bin dir."""
from __future__ import annotations

from pathlib import Path

import pytest

from dtserver.fakes.torque.cli import install_bin
from dtserver.fakes.torque.persistence import EmulatorHome, init_home
from tests.builders import T0


@pytest.fixture
def home(tmp_path: Path) -> EmulatorHome:
    emulator_home = EmulatorHome(tmp_path / "torque")
    init_home(emulator_home, simulated_start=T0, scheduler_iteration=60.0)
    return emulator_home


@pytest.fixture
def bin_dir(tmp_path: Path, home: EmulatorHome) -> Path:
    directory = tmp_path / "bin"
    install_bin(directory, home=home)
    return directory
