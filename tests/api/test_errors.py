"""Every failure, expected or not, answers with the one JSON error shape."""
from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from dtserver.api import create_app
from dtserver.api.settings import ApiSettings
from dtserver.store import PassReport, StoreError
from tests.api.test_hints import assert_error


class BrokenStore:
    """Only what /healthz reads, failing the way `error` says."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def check(self) -> None:
        """Passes: the failure comes from the read itself."""

    def last_pass(self) -> PassReport | None:
        raise self.error


def broken_client(tmp_path: Path, error: Exception) -> FlaskClient:
    app = create_app(ApiSettings(db_path=tmp_path / "unused.db"), store=BrokenStore(error))
    return app.test_client()


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/nope", "/status/extra"])
def test_unknown_path_is_a_json_404(client: FlaskClient, path: str) -> None:
    assert_error(client.get(path), 404, "not_found")


@pytest.mark.parametrize("method, path", [
    ("post", "/status"), ("delete", "/v1/nodes"), ("get", "/v1/sleep"), ("put", "/v1/hints"),
])
def test_wrong_method_is_a_json_405_with_allow(client: FlaskClient, method: str,
                                               path: str) -> None:
    response = getattr(client, method)(path)

    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"]


def test_unexpected_exception_is_a_json_500_without_details(tmp_path: Path) -> None:
    response = broken_client(tmp_path, RuntimeError("secret detail")).get("/healthz")

    error = assert_error(response, 500, "internal_error")
    assert "secret" not in error["message"]


def test_store_failure_is_a_json_503(tmp_path: Path) -> None:
    response = broken_client(tmp_path, StoreError("database is locked")).get("/healthz")

    assert_error(response, 503, "store_unavailable")
