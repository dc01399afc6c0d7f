"""The real thing: gunicorn with deploy/gunicorn.conf.py serving a hint on loopback."""
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
        except requests.ConnectionError:
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
