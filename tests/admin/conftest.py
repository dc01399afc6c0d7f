"""A live dynamictorque API on 127.0.0.1 for dtadmin: SqliteStore in tmp_path, FakeClock,
an admin token file 0600. dtadmin never sees the machine's or the user's configuration."""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from flask import Flask
from werkzeug.serving import make_server

from admin.cli import main
from dtserver.api import create_app
from dtserver.api.settings import ApiSettings
from dtserver.clock import FakeClock
from dtserver.store.sqlite import SqliteStore

ADMIN_TOKEN = "dtadmin-test-token-0123456789abcdef0123456789"


@dataclass
class Service:
    url: str
    store: SqliteStore
    clock: FakeClock
    token_file: Path

    def dtadmin(self, *argv: str) -> int:
        """dtadmin.main with this service's URL and token file."""
        return main(["--url", self.url, "--token-file", str(self.token_file), *argv])


def write_token(path: Path, token: str = ADMIN_TOKEN) -> Path:
    path.write_text(token + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture(autouse=True)
def isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("DTADMIN_CONFIG", str(tmp_path / "absent-dtadmin.conf"))
    monkeypatch.delenv("DTADMIN_URL", raising=False)
    monkeypatch.delenv("DTADMIN_TOKEN_FILE", raising=False)
    # The dev server logs every request at INFO on stderr, which the tests read.
    server_log = logging.getLogger("werkzeug")
    level = server_log.level
    server_log.setLevel(logging.ERROR)
    yield
    server_log.setLevel(level)


@contextmanager
def serve_app(app: Flask) -> Iterator[str]:
    """The werkzeug server of dtserver.api.devserver, polling for shutdown every 20 ms
    rather than every 500 ms: these tests start one per test."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name="api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def serve(store: SqliteStore, clock: FakeClock, tmp_path: Path) -> Iterator[Service]:
    token_file = write_token(tmp_path / "admin.token")
    app = create_app(ApiSettings(db_path=store.path, token_file=token_file),
                     store=store, clock=clock)
    with serve_app(app) as url:
        yield Service(url, store, clock, token_file)


@pytest.fixture
def service(store: SqliteStore, clock: FakeClock, tmp_path: Path) -> Iterator[Service]:
    yield from serve(store, clock, tmp_path)
