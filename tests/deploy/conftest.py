"""System tools the deploy tests run (systemd-analyze, cloud-init, logrotate).

A missing tool is installed once per session with apt-get when we are root, within a time
bound; otherwise the tests that need it are skipped with the reason. .ci/run installs the
same packages up front.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest

INSTALL_SECONDS = 300


def _apt_get(apt: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([apt, *args], capture_output=True, text=True, check=False,
                          timeout=INSTALL_SECONDS,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


@functools.cache
def _installed(command: str, package: str) -> tuple[str | None, str]:
    """(path of `command`, "") or (None, why not). Cached: apt-get runs at most once."""
    found = shutil.which(command)
    if found:
        return found, ""
    apt = shutil.which("apt-get")
    if os.geteuid() != 0 or apt is None:
        return None, f"{command} is missing; installing package {package} needs root and apt-get"
    install = ("install", "-y", "--no-install-recommends", package)
    try:
        result = _apt_get(apt, *install)
        if result.returncode != 0:
            # A fresh machine may have no package lists yet.
            _apt_get(apt, "update")
            result = _apt_get(apt, *install)
    except subprocess.TimeoutExpired:
        return None, f"apt-get install {package} took longer than {INSTALL_SECONDS} s"
    found = shutil.which(command)
    if found is None:
        return None, f"apt-get install {package} failed: {result.stderr.strip()[-300:]}"
    return found, ""


def require_tool(command: str, package: str) -> str:
    path, reason = _installed(command, package)
    if path is None:
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def systemd_analyze() -> str:
    return require_tool("systemd-analyze", "systemd")


@pytest.fixture(scope="session")
def cloud_init() -> str:
    return require_tool("cloud-init", "cloud-init")


@pytest.fixture(scope="session")
def logrotate() -> str:
    return require_tool("logrotate", "logrotate")
