"""Real headless Chromium (Debian's chromium and chromium-driver) driven over WebDriver.

The W3C WebDriver protocol is plain HTTP JSON, so `requests` drives chromedriver and no
browser-automation package is needed. When the browser is absent the fixture installs it
with apt-get (root only; .ci/run does the same up front) and skips, saying why, when that
is impossible. DT_BROWSER_INSTALL=0 forbids the install attempt.
"""
from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

PACKAGES = ("chromium", "chromium-driver")
INSTALL_TIMEOUT_SECONDS = 900
START_TIMEOUT_SECONDS = 30
WINDOW = "1280,1500"


def _binaries() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def _install() -> str | None:
    """apt-get install the browser; None when done, else why it could not be."""
    if os.environ.get("DT_BROWSER_INSTALL") == "0":
        return "DT_BROWSER_INSTALL=0 forbids installing it"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "installing it needs root and apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        try:
            result = subprocess.run(argv, capture_output=True, text=True, env=env,
                                    timeout=INSTALL_TIMEOUT_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"{' '.join(argv)} failed: {error}"
        if result.returncode != 0:
            return f"{' '.join(argv)} exited {result.returncode}: {result.stderr[-300:]}"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Browser:
    """One WebDriver session: open a page, run a script, take a screenshot."""

    def __init__(self, driver_url: str, chromium: str) -> None:
        self.driver_url = driver_url
        options = {"binary": chromium,
                   "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", f"--window-size={WINDOW}"]}
        body = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options}}})
        self.session = f"/session/{body['sessionId']}"

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        response = requests.request(method, self.driver_url + path, json=payload, timeout=60)
        value = response.json()["value"]
        if response.status_code != 200:
            raise RuntimeError(f"webdriver {method} {path}: {value}")
        return value

    def open(self, url: str) -> None:
        self._call("POST", f"{self.session}/url", {"url": url})

    def run(self, script: str) -> Any:
        return self._call("POST", f"{self.session}/execute/sync", {"script": script, "args": []})

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self._call("GET", f"{self.session}/screenshot")))
        return path

    def close(self) -> None:
        self._call("DELETE", self.session)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    found = _binaries()
    if found is None:
        problem = _install()
        found = _binaries()
        if found is None:
            pytest.skip(f"headless Chromium test needs Debian's {' and '.join(PACKAGES)}, "
                        f"which are not installed; {problem or 'the install did not provide them'}")
    chromium, chromedriver = found
    port = _free_port()
    driver_url = f"http://127.0.0.1:{port}"
    with subprocess.Popen([chromedriver, f"--port={port}"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as driver:
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while True:
                try:
                    if requests.get(driver_url + "/status", timeout=2).json()["value"]["ready"]:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline or driver.poll() is not None:
                    pytest.fail(f"chromedriver did not start on port {port}")
                time.sleep(0.1)
            session = Browser(driver_url, chromium)
            try:
                yield session
            finally:
                session.close()
        finally:
            driver.terminate()
            driver.wait(timeout=10)
