"""A TORQUE CLI emulator home on a simulated clock, and its executables in a bin dir."""
from __future__ import annotations

from pathlib import Path

import pytest

from dtserver.batch.torque_cli import EmulatorHome, init_home, install_bin
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
