"""The dependency rules of STYLE.md §8 hold: import-linter contracts in setup.cfg."""
from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "setup.cfg"), cache_dir=str(tmp_path),
                        no_logo=True) == 0
