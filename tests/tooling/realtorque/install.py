"""The real TORQUE 6.1.3 build the live tests run: built once per machine, cached.

The source, its gcc 12 patch and `build.sh` come from the shared real-torque directory
(next to the project). The build compiles its server home in, so the home lives inside the
cached prefix: `PREFIX/spool`. One build takes about 6 minutes on 2 cores; later sessions
find `PREFIX/.built` and skip it. The prefix is /var/cache/dynamictorque-tests/ (not below
root's home: jobs run as an unprivileged user and must reach pbsdsh, and pbs_mom refuses a
home below a group- or world-writable directory); `DT_TORQUE_PREFIX` moves it.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared" / "real-torque"
BUILD_SCRIPT = SHARED / "build.sh"
BUILD_TIMEOUT = 1800.0           # a cold build is ~6 min on 2 cores; apt may add a few
PREFIX_VARIABLE = "DT_TORQUE_PREFIX"


class TorqueUnavailable(Exception):
    """Real TORQUE cannot run here: no source, not root, no network namespaces, build failed."""


@dataclass(frozen=True)
class TorqueInstall:
    prefix: Path

    @property
    def home(self) -> Path:
        """The compiled-in server home (torque.cfg, server_name, server_priv ...)."""
        return self.prefix / "spool"

    @property
    def bin(self) -> Path:
        return self.prefix / "bin"

    @property
    def sbin(self) -> Path:
        return self.prefix / "sbin"

    def command(self, name: str) -> Path:
        for directory in (self.bin, self.sbin):
            if (directory / name).exists():
                return directory / name
        raise TorqueUnavailable(f"{name} is not in {self.prefix}")

    def is_built(self) -> bool:
        return (self.prefix / ".built").is_file() and (self.sbin / "pbs_server").is_file()


def default_prefix() -> Path:
    return Path(os.environ.get(PREFIX_VARIABLE)
                or "/var/cache/dynamictorque-tests/torque-6.1.3.h5")


def ensure_built(prefix: Path | None = None, *, timeout: float = BUILD_TIMEOUT) -> TorqueInstall:
    """Build unless the cache holds this build; sessions wait for each other's build."""
    install = TorqueInstall(prefix or default_prefix())
    if os.geteuid() != 0:
        raise TorqueUnavailable("real TORQUE needs root (daemons, network namespaces)")
    for tool in ("ip", "unshare", "runuser"):
        if shutil.which(tool) is None:
            raise TorqueUnavailable(f"{tool} is not installed")
    if not BUILD_SCRIPT.is_file():
        raise TorqueUnavailable(f"no TORQUE source: {BUILD_SCRIPT} is missing")
    install.prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(install.prefix.parent / f"{install.prefix.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        log_path = install.prefix.parent / f"{install.prefix.name}.build.log"
        with open(log_path, "w") as output:
            try:
                status = subprocess.run(
                    ["bash", str(BUILD_SCRIPT), str(install.prefix)], stdout=output,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout,
                    env={**os.environ, "SERVER_HOME": str(install.home)},
                    check=False).returncode
            except subprocess.TimeoutExpired:
                status = None
        if status != 0 or not install.is_built():
            tail = log_path.read_text(errors="replace")[-2000:]
            why = "timed out" if status is None else f"exit {status}"
            raise TorqueUnavailable(f"building TORQUE failed ({why}); {log_path}:\n{tail}")
    return install
