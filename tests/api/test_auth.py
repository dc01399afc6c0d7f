"""The admin token: Bearer header on every mutation, and a token file only root can read."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from dtserver.api import create_app
from dtserver.api.settings import ApiConfigError, ApiSettings
from dtserver.store.sqlite import SqliteStore
from tests.api.builders import T0
from tests.api.conftest import ADMIN_TOKEN, HINT_TOKEN, write_token
from tests.api.test_hints import assert_error

MUTATIONS = ["/v1/sleep", "/v1/wake"]


@pytest.mark.parametrize("path", MUTATIONS)
@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
    {"Authorization": ADMIN_TOKEN},
    {"Authorization": "Bearer t\u00e9st"},
], ids=["missing", "empty", "wrong", "longer", "shorter", "no-scheme", "non-ascii"])
def test_mutation_without_the_admin_token_is_a_401_and_changes_nothing(
        client: FlaskClient, store: SqliteStore, path: str, headers: dict[str, str]) -> None:
    store.set_sleeping(True, T0)

    response = client.post(path, headers=headers)

    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert store.is_sleeping() is True


@pytest.mark.parametrize("path", MUTATIONS)
def test_hint_token_does_not_open_admin_mutations(
        tmp_path: Path, settings: ApiSettings, store: SqliteStore, path: str) -> None:
    hint_file = write_token(tmp_path / "hint.token", HINT_TOKEN, 0o644)
    app = create_app(ApiSettings(db_path=settings.db_path, token_file=settings.token_file,
                                 hint_token_file=hint_file), store=store)

    response = app.test_client().post(path, headers={"Authorization": f"Bearer {HINT_TOKEN}"})

    assert_error(response, 401, "unauthorized")


def test_mutation_with_the_admin_token_is_carried_out(
        client: FlaskClient, store: SqliteStore, admin_headers: dict[str, str]) -> None:
    response = client.post("/v1/sleep", headers=admin_headers)

    assert response.status_code == 200
    assert store.is_sleeping() is True


@pytest.mark.parametrize("path", MUTATIONS)
def test_mutations_are_refused_when_no_admin_token_is_configured(
        settings: ApiSettings, store: SqliteStore, path: str) -> None:
    app = create_app(ApiSettings(db_path=settings.db_path), store=store)

    response = app.test_client().post(path, headers={"Authorization": "Bearer anything"})

    assert_error(response, 403, "admin_disabled")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o602, 0o610])
def test_api_refuses_to_start_with_an_admin_token_file_others_can_reach(
        tmp_path: Path, store: SqliteStore, mode: int) -> None:
    token_file = write_token(tmp_path / "admin.token", ADMIN_TOKEN, mode)

    with pytest.raises(ApiConfigError, match=f"{mode:04o}"):
        create_app(ApiSettings(token_file=token_file), store=store)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_api_starts_with_a_private_admin_token_file(
        tmp_path: Path, store: SqliteStore, mode: int) -> None:
    token_file = write_token(tmp_path / "admin.token", ADMIN_TOKEN, mode)

    app = create_app(ApiSettings(token_file=token_file), store=store)

    response = app.test_client().post("/v1/sleep",
                                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200


def test_api_refuses_to_start_with_a_missing_token_file(
        tmp_path: Path, store: SqliteStore) -> None:
    with pytest.raises(ApiConfigError, match="cannot read token file"):
        create_app(ApiSettings(token_file=tmp_path / "absent.token"), store=store)


def test_api_refuses_to_start_with_an_empty_token_file(
        tmp_path: Path, store: SqliteStore) -> None:
    token_file = write_token(tmp_path / "admin.token", "  ", 0o600)

    with pytest.raises(ApiConfigError, match="empty"):
        create_app(ApiSettings(token_file=token_file), store=store)


@pytest.mark.parametrize("mode", [0o664, 0o646])
def test_api_refuses_a_hint_token_file_users_can_write(
        tmp_path: Path, store: SqliteStore, mode: int) -> None:
    hint_file = write_token(tmp_path / "hint.token", HINT_TOKEN, mode)

    with pytest.raises(ApiConfigError, match="writable"):
        create_app(ApiSettings(hint_token_file=hint_file), store=store)


def test_api_refuses_a_hint_token_equal_to_the_admin_token(
        tmp_path: Path, store: SqliteStore) -> None:
    admin_file = write_token(tmp_path / "admin.token", ADMIN_TOKEN, 0o600)
    hint_file = write_token(tmp_path / "hint.token", ADMIN_TOKEN, 0o644)

    with pytest.raises(ApiConfigError, match="admin token"):
        create_app(ApiSettings(token_file=admin_file, hint_token_file=hint_file), store=store)


@pytest.mark.parametrize("token", ["#", "0123456789abcdef0123456789abcde"], ids=["1", "31"])
def test_api_refuses_to_start_with_a_short_admin_token_naming_the_file(
        tmp_path: Path, store: SqliteStore, token: str) -> None:
    token_file = write_token(tmp_path / "admin.token", token, 0o600)

    with pytest.raises(ApiConfigError) as caught:
        create_app(ApiSettings(token_file=token_file), store=store)

    message = str(caught.value)
    assert str(token_file) in message and "at least 32" in message
    assert "openssl rand -hex 32" in message
    assert token not in message                  # the error never shows the token


def test_an_admin_token_of_32_characters_is_enough(tmp_path: Path, store: SqliteStore) -> None:
    token = "0123456789abcdef0123456789abcdef"
    token_file = write_token(tmp_path / "admin.token", token, 0o600)

    app = create_app(ApiSettings(token_file=token_file), store=store)

    assert app.test_client().post(
        "/v1/sleep", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_the_token_the_install_steps_generate_is_accepted(
        tmp_path: Path, store: SqliteStore) -> None:
    """docs/operations.md generates the admin token with a python3 one-liner: run it."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    (code,) = re.findall(r"python3 -c '([^']+)' > /etc/dynamictorque/admin.token", docs)
    generated = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True, timeout=30).stdout
    token_file = write_token(tmp_path / "admin.token", generated.strip(), 0o600)

    app = create_app(ApiSettings(token_file=token_file), store=store)

    assert app.test_client().post(
        "/v1/sleep", headers={"Authorization": f"Bearer {generated.strip()}"}).status_code == 200
