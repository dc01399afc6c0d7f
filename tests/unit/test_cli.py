"""Console scripts: check-config, and the API reading dynamic_torque.conf through DT_CONFIG."""
from __future__ import annotations

import importlib
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
    token.write_text("t0ken\n")
    token.chmod(0o600)
    monkeypatch.setenv("DT_CONFIG", str(config))
    sys.modules.pop("dtserver.wsgi", None)
    wsgi = importlib.import_module("dtserver.wsgi")
    client = wsgi.app.test_client()
    assert client.post("/v1/sleep").status_code == 401
    assert client.post("/v1/sleep", headers={"Authorization": "Bearer t0ken"}).status_code == 200
    assert (tmp_path / "dt.db").exists()
    sys.modules.pop("dtserver.wsgi", None)
