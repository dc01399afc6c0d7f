"""The dependency rules of docs/architecture.md hold: import-linter contracts in setup.cfg;
and no source file grows past what a reader takes in (issue #14: no file over 800 lines)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 800
SOURCE_DIRS = ("dtserver", "admin", "hooks", "bench", "tests")


def test_import_contracts_hold(tmp_path):
    # In a child process: import-linter reconfigures logging, which would disable the
    # loggers other tests capture.
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys; from importlinter.cli import lint_imports; "
         f"sys.exit(lint_imports(config_filename='setup.cfg', cache_dir={str(tmp_path)!r}, "
         "no_logo=True))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_composition_root_loads_no_fake_until_asked():
    # A real deployment's reconciler imports bootstrap; the fakes must stay out of it.
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys, dtserver.bootstrap; "
         "print(sorted(m for m in sys.modules if m.startswith(('dtserver.fakes', "
         "'dtserver.sim'))))"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_no_python_file_is_over_800_lines():
    too_long = {}
    for directory in SOURCE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            with open(path, "rb") as stream:
                lines = sum(1 for _ in stream)
            if lines > MAX_LINES:
                too_long[str(path.relative_to(ROOT))] = lines
    assert not too_long, f"over {MAX_LINES} lines, split them by job: {too_long}"
