"""ApiSettings from the environment (what dtserver/wsgi.py uses) and its own checks."""
from __future__ import annotations

from pathlib import Path

import pytest

from dtserver.api.settings import DEFAULT_DB_PATH, ApiSettings


def test_settings_come_from_dt_environment_variables() -> None:
    settings = ApiSettings.from_environ({
        "DT_DB_PATH": "/srv/dt.db", "DT_TOKEN_FILE": "/etc/dt/token",
        "DT_HINT_TOKEN_FILE": "/etc/dt/hint-token", "DT_WAKEUP_PATH": "/run/dt/wakeup"})

    assert settings.db_path == Path("/srv/dt.db")
    assert settings.token_file == Path("/etc/dt/token")
    assert settings.hint_token_file == Path("/etc/dt/hint-token")
    assert settings.wakeup_path == Path("/run/dt/wakeup")


def test_unset_or_empty_variables_keep_the_defaults() -> None:
    settings = ApiSettings.from_environ({"DT_TOKEN_FILE": ""})

    assert settings == ApiSettings()
    assert settings.db_path == DEFAULT_DB_PATH
    assert settings.token_file is None
    assert settings.max_body_bytes == 64 * 1024
    assert settings.healthz_stale_seconds == 60


@pytest.mark.parametrize("field, value", [
    ("max_body_bytes", 0), ("healthz_stale_seconds", -1), ("status_events", -1)])
def test_nonsense_settings_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ApiSettings(**{field: value})
