"""Fixtures of the hook tests: loopback services in the states the filter must survive."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.hooks.support import Certificate, HungServer, ProxyTrap, RecordingServer


@pytest.fixture
def service() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


@pytest.fixture
def hung_service() -> Iterator[HungServer]:
    server = HungServer()
    yield server
    server.close()


@pytest.fixture
def tls_service(certificate: Certificate) -> Iterator[RecordingServer]:
    server = RecordingServer(tls=certificate)
    yield server
    server.close()


@pytest.fixture
def proxy_trap() -> Iterator[ProxyTrap]:
    trap = ProxyTrap()
    yield trap
    trap.close()
