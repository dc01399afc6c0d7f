"""Fixtures for every test folder: a FakeClock at the API tests' T0 and a real SqliteStore
in tmp_path. A test module or conftest that needs another kind defines its own."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from dtserver.clock import FakeClock
from dtserver.store.sqlite import SqliteStore
from tests.api.builders import T0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "dt.db") as opened:
        yield opened
