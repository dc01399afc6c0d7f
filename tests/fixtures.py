"""Fixtures for every test folder: a FakeClock at the API tests' T0, a real SqliteStore in
tmp_path and a self-signed certificate for 127.0.0.1. A test module or conftest that needs
another kind defines its own."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from dtserver.clock import FakeClock
from dtserver.store.sqlite import SqliteStore
from tests.api.builders import T0
from tests.hooks.support import Certificate, self_signed_certificate


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "dt.db") as opened:
        yield opened


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))
