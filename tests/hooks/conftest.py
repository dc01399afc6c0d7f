"""Fixtures of the hook tests: loopback services in the states the filter must survive."""
from __future__ import annotations

import shutil
from typing import Iterator

import pytest

from tests.hooks.support import (Certificate, HungServer, ProxyTrap, RecordingServer,
                                 self_signed_certificate)


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


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


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
