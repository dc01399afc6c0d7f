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


def test_the_listen_address_is_loopback_unless_configured() -> None:
    assert ApiSettings().bind == "127.0.0.1:8080"
    assert ApiSettings.from_environ({}).bind == "127.0.0.1:8080"
    assert ApiSettings.from_environ({"DT_BIND": "10.0.0.5:9090"}).bind == "10.0.0.5:9090"


def test_a_listen_address_without_a_port_is_refused() -> None:
    with pytest.raises(ValueError, match="bind"):
        ApiSettings(bind="127.0.0.1")


def test_dt_config_wins_and_brings_the_api_section_with_its_warnings(tmp_path: Path) -> None:
    config = tmp_path / "dynamic_torque.conf"
    config.write_text(f"[global]\nstate_dir: {tmp_path}\n[cloud]\ncloud_image_uuid: img-1\n"
                      "cloud_password: pw\n[api]\nbind: 127.0.0.1:9191\n", encoding="utf-8")
    config.chmod(0o640)

    settings = ApiSettings.from_process_environ(
        {"DT_CONFIG": str(config), "DT_BIND": "0.0.0.0:1", "DT_DB_PATH": "/elsewhere.db"})

    assert settings.bind == "127.0.0.1:9191"
    assert settings.db_path == tmp_path / "dt.db"
    assert settings.wakeup_path == tmp_path / "wakeup"
    assert any("readable by group/others" in warning for warning in settings.warnings)


def test_without_dt_config_the_dt_variables_are_read() -> None:
    settings = ApiSettings.from_process_environ({"DT_DB_PATH": "/srv/dt.db",
                                                 "DT_BIND": "127.0.0.1:9292"})

    assert (settings.db_path, settings.bind) == (Path("/srv/dt.db"), "127.0.0.1:9292")
