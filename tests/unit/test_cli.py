"""Console scripts: check-config, and the API reading dynamic_torque.conf through DT_CONFIG."""
from __future__ import annotations

import importlib
import logging
import sys

import pytest

from dtserver import cli

CONFIG = """\
[global]
state_dir: {state}
[cloud]
cloud_image_uuid: 155d900f-4e14-4e4c-a73d-069cbf4541e6
cloud_auth_url: https://keystone.example.org:5000/v3
cloud_username: scaler
cloud_password: s3cr3t-value
cloud_tenant_name: hpc
[api]
token_file: {state}/admin.token
"""
TOKEN = "t0ken-0123456789abcdef0123456789abcdef"


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "dynamic_torque.conf"
    path.write_text(CONFIG.format(state=tmp_path))
    return path


def test_check_config_prints_the_effective_config_with_secrets_masked(config, capsys):
    assert cli.check_config_main(["-c", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "s3cr3t-value" not in out + err
    assert "cloud_password: ****" in out
    assert "image: 155d900f-4e14-4e4c-a73d-069cbf4541e6" in out
    assert "plaintext" in err.lower() or "cloud_password" in err


def test_check_config_fails_with_the_line_and_a_suggestion(tmp_path, capsys):
    path = tmp_path / "bad.conf"
    path.write_text("[global]\nmax_idle_tme: 600\n")
    assert cli.check_config_main(["-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.conf:2:" in err and "did you mean max_idle_time" in err


def test_the_wsgi_app_reads_its_settings_from_dt_config(config, tmp_path, monkeypatch):
    token = tmp_path / "admin.token"
    token.write_text(f"{TOKEN}\n")
    token.chmod(0o600)
    monkeypatch.setenv("DT_CONFIG", str(config))
    sys.modules.pop("dtserver.wsgi", None)
    wsgi = importlib.import_module("dtserver.wsgi")
    client = wsgi.app.test_client()
    assert client.post("/v1/sleep").status_code == 401
    assert client.post("/v1/sleep",
                       headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert (tmp_path / "dt.db").exists()
    sys.modules.pop("dtserver.wsgi", None)


def test_check_config_masks_url_userinfo_and_command_tokens_and_warns_on_a_readable_file(
        tmp_path, capsys):
    path = tmp_path / "dynamic_torque.conf"
    path.write_text(CONFIG.format(state=tmp_path).replace(
        "https://keystone", "https://scaler:urlpass@keystone").replace(
        "[global]\n", "[global]\npost_add_node_command: notify --token abc123 {0}\n"
        "post_remove_node_command: curl https://hook/x?token=qwe789\n"), encoding="utf-8")
    path.chmod(0o640)

    assert cli.check_config_main(["-c", str(path)]) == 0

    out, err = capsys.readouterr()
    for secret in ("urlpass", "abc123", "qwe789", "s3cr3t-value"):
        assert secret not in out + err
    assert "cloud_auth_url: https://scaler:****@keystone.example.org:5000/v3" in out
    assert "post_add_node_command: notify --token '****' '{0}'" in out
    assert "warning:" in err and "readable by group/others" in err


def test_the_services_log_one_line_per_record(tmp_path):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    log_file = tmp_path / "dt.log"
    try:
        cli._setup_logging("INFO", log_file)
        logging.getLogger("dtserver.tests").warning("hint user=%s", "alice\nERROR forged")
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)

    (line,) = log_file.read_text().splitlines()
    assert line.endswith("hint user=alice\\nERROR forged")
