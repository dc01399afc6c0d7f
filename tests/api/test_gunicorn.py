"""The real thing: gunicorn with deploy/gunicorn.conf.py serving a hint on loopback, listening
where dynamic_torque.conf says, and logging what requests carry one line per record."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from dtserver.store.sqlite import SqliteStore
from tests.api.builders import hint
from tests.api.conftest import ADMIN_TOKEN, write_token

CONF = Path(__file__).resolve().parents[2] / "deploy" / "gunicorn.conf.py"
START_SECONDS = 30
STOP_SECONDS = 15


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(process: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited early with {process.returncode}")
        try:
            requests.get(f"{base}/healthz", timeout=1)
            return
        except (requests.ConnectionError, requests.Timeout):
            # Listening already, the workers still importing the app: not yet.
            time.sleep(0.1)
    pytest.fail(f"gunicorn did not answer within {START_SECONDS} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_SECONDS)


def test_gunicorn_with_the_deploy_config_accepts_a_hint(tmp_path: Path) -> None:
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    db_path = tmp_path / "dt.db"
    environment = {**os.environ, "DT_DB_PATH": str(db_path),
                   "DT_TOKEN_FILE": str(write_token(tmp_path / "admin.token", ADMIN_TOKEN, 0o600))}
    stdout_path, stderr_path = tmp_path / "gunicorn.out", tmp_path / "gunicorn.err"
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(CONF), "-b", f"127.0.0.1:{port}"],
            env=environment, cwd=tmp_path, stdout=stdout, stderr=stderr)
        try:
            wait_until_serving(process, base)

            response = requests.post(f"{base}/v1/hints", json=hint(), timeout=5)
            sleep = requests.post(f"{base}/v1/sleep", timeout=5,
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        finally:
            stop(process)

    assert response.status_code == 202, response.text
    assert sleep.json() == {"sleeping": True}
    with SqliteStore(db_path) as store:
        assert [stored.id for stored in store.hints()] == [response.json()["id"]]
        assert store.is_sleeping() is True
    # Everything is logged to stdout: gunicorn's start, the access log and our loggers.
    output = stdout_path.read_text(encoding="utf-8", errors="replace")
    assert f"Listening at: http://127.0.0.1:{port}" in output
    assert '"POST /v1/hints HTTP/1.1" 202' in output
    assert "dtserver.api.control: sleep mode changed sleeping=True" in output
    assert stderr_path.read_text(encoding="utf-8", errors="replace") == ""


def test_gunicorn_listens_where_the_config_says_and_escapes_request_values_in_its_log(
        tmp_path: Path) -> None:
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    token = write_token(tmp_path / "admin.token", ADMIN_TOKEN, 0o600)
    config = tmp_path / "dynamic_torque.conf"
    config.write_text(f"[global]\nstate_dir: {tmp_path}\n[cloud]\ncloud_image_uuid: img-1\n"
                      f"[api]\nbind: 127.0.0.1:{port}\ntoken_file: {token}\n", encoding="utf-8")
    environment = {**{key: value for key, value in os.environ.items()
                      if not key.startswith("DT_")}, "DT_CONFIG": str(config)}
    stdout_path, stderr_path = tmp_path / "gunicorn.out", tmp_path / "gunicorn.err"
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        # No -b: the listen address comes from [api] bind alone.
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(CONF)],
                                   env=environment, cwd=tmp_path, stdout=stdout, stderr=stderr)
        try:
            wait_until_serving(process, base)

            forged = requests.post(f"{base}/v1/nodes/x%0aFORGED%20line%0d/kill", timeout=5)
            sleep = requests.post(f"{base}/v1/sleep", timeout=5,
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        finally:
            stop(process)

    assert forged.status_code == 401
    assert sleep.json() == {"sleeping": True}
    output = stdout_path.read_text(encoding="utf-8", errors="replace")
    assert f"Listening at: {base}" in output
    assert "Control socket" not in output          # no command socket in the user's home
    # The unauthenticated path reaches the log escaped, inside its own line.
    assert "auth refused path=/v1/nodes/x\\nFORGED line\\r/kill" in output
    assert not [line for line in output.splitlines() if line.startswith("FORGED")]
    assert stderr_path.read_text(encoding="utf-8", errors="replace") == ""


def test_the_config_file_leaves_the_arbiter_without_our_code(tmp_path: Path) -> None:
    """Workers are forked from the arbiter and run the modules it has imported: code it
    imported would survive `systemctl reload` (HUP), which is meant to bring new code."""
    code = ("import runpy, sys; runpy.run_path(sys.argv[1]); "
            "print(sorted(name for name in sys.modules "
            "if name.split('.')[0] in ('dtserver', 'flask')))")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DT_")}
    result = subprocess.run([sys.executable, "-c", code, str(CONF)], cwd=tmp_path,
                            env={**environment, "DT_BIND": "127.0.0.1:9999"},
                            capture_output=True, text=True, timeout=60, check=True)

    assert result.stdout.strip() == "[]"


def test_a_broken_configuration_stops_gunicorn_with_its_error(tmp_path: Path) -> None:
    config = tmp_path / "dynamic_torque.conf"
    config.write_text("[api]\nbind: nowhere\n", encoding="utf-8")
    environment = {**{key: value for key, value in os.environ.items()
                      if not key.startswith("DT_")}, "DT_CONFIG": str(config)}

    result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", str(CONF)], cwd=tmp_path,
                            env=environment, capture_output=True, text=True,
                            timeout=START_SECONDS, check=False)

    assert result.returncode != 0
    assert "dtserver-api:" in result.stderr and "expected HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr
