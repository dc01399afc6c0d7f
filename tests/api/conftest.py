"""Fixtures of the API tests: settings, token files, the app and its test client (the clock
and the SqliteStore come from tests/fixtures.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dtserver.api import create_app
from dtserver.api.settings import ApiSettings
from dtserver.clock import FakeClock
from dtserver.store.sqlite import SqliteStore

ADMIN_TOKEN = "admin-token-0123456789abcdef0123456789abcdef"
HINT_TOKEN = "hint-token-fedcba9876543210"


def write_token(path: Path, token: str, mode: int) -> Path:
    path.write_text(token + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture
def settings(tmp_path: Path) -> ApiSettings:
    return ApiSettings(
        db_path=tmp_path / "dt.db",
        token_file=write_token(tmp_path / "admin.token", ADMIN_TOKEN, 0o600),
        max_body_bytes=4096,
    )


@pytest.fixture
def app(settings: ApiSettings, store: SqliteStore, clock: FakeClock) -> Flask:
    return create_app(settings, store=store, clock=clock)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
