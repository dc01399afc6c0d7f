"""deploy/logrotate: the file logrotate reads for the reconciler's log files."""
from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path

from tests.deploy.test_systemd_units import directives

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "logrotate" / "dynamictorque"
LOG_DIR = "/var/log/dynamictorque"


def test_rotation_covers_the_reconcilers_logs_directory() -> None:
    (logs,) = directives("dtserver-reconciler.service")["LogsDirectory"]
    assert f"/var/log/{logs}" == LOG_DIR
    assert f"{LOG_DIR}/*.log {{" in CONFIG.read_text(encoding="utf-8").splitlines()


def test_logrotate_reads_the_file_and_would_rotate_a_log(logrotate: str,
                                                         tmp_path: Path) -> None:
    """logrotate -d (nothing changes) on the file, pointed at a log in tmp_path and run as
    whoever runs the tests instead of the service user."""
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (log_dir / "reconciler.log").write_text("a line\n" * 10, encoding="utf-8")
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    config = tmp_path / "dynamictorque"
    config.write_text(CONFIG.read_text(encoding="utf-8")
                      .replace(LOG_DIR, str(log_dir))
                      .replace("su dynamictorque dynamictorque", f"su {user} {group}"),
                      encoding="utf-8")
    result = subprocess.run([logrotate, "--debug", "--force", "--state",
                             str(tmp_path / "state"), str(config)],
                            capture_output=True, text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "error" not in output.lower()
    assert f"rotating log {log_dir}/reconciler.log" in output
    assert "copying" in output and "truncating" in output
