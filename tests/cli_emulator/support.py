"""Running the TORQUE CLI emulator's executables as real child processes, with timeouts."""
from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Mapping

# Every command is a fresh Python process; this only bounds a hung one.
TIMEOUT = 30.0


def run(bin_dir: Path, *argv: str, stdin: bytes = b"", cwd: Path | None = None,
        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """One emulator executable (qsub, qstat, ..., dt-torque-emulator) from `bin_dir`."""
    return subprocess.run([str(bin_dir / argv[0]), *argv[1:]], input=stdin,
                          capture_output=True, cwd=cwd, env=env, timeout=TIMEOUT, check=False)


def ok(bin_dir: Path, *argv: str, stdin: bytes = b"", cwd: Path | None = None) -> str:
    done = run(bin_dir, *argv, stdin=stdin, cwd=cwd)
    assert done.returncode == 0, (argv, done.returncode, done.stderr.decode())
    return done.stdout.decode()


def shell(bin_dir: Path, line: str, *, cwd: Path, extra_env: Mapping[str, str] | None = None,
          ) -> subprocess.CompletedProcess[bytes]:
    """A shell command line with `bin_dir` first on PATH, in the small environment the
    reference captures were taken with (HOME, USER, LOGNAME, SHELL, LANG, PATH)."""
    env = {"HOME": str(cwd), "USER": "tuser", "LOGNAME": "tuser", "SHELL": "/bin/bash",
           "LANG": "C.UTF-8", "PATH": f"{bin_dir}:{os.defpath}", **(extra_env or {})}
    return subprocess.run(["sh", "-c", line], capture_output=True, cwd=cwd, env=env,
                          timeout=TIMEOUT, check=False)


def node_states(bin_dir: Path) -> dict[str, str]:
    data = ET.fromstring(ok(bin_dir, "pbsnodes", "-x"))
    return {node.findtext("name", ""): node.findtext("state", "") for node in data}


def xml_jobs(bin_dir: Path) -> dict[str, ET.Element]:
    data = ET.fromstring(ok(bin_dir, "qstat", "-x", "-t").split("\n", 1)[1])
    return {job.findtext("Job_Id", ""): job for job in data}
