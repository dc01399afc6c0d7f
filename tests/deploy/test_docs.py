"""The operator docs stay true to the files and code they describe."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from dtserver.config import OBSOLETE_KEYS

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", ROOT / "deploy" / "torque" / "README.md", *DOCS]
OLD_SAMPLE = ROOT / "tests" / "data" / "config" / "dynamic_torque_dt.conf"
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_OLD_KEY = re.compile(r"^#?([a-z_]+):", re.MULTILINE)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in page.read_text(encoding="utf-8").splitlines()
            if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_heading(page: Path) -> None:
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: {target}"


def test_readme_links_the_operator_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for section in ("Install", "Configure", "Operate", "Troubleshoot",
                    "Migrate from Dynamic Torque"):
        assert f"\n## {section}\n" in readme
    for page in ("operations", "migration", "architecture", "lifecycle", "api", "metrics"):
        assert f"(docs/{page}.md" in readme


def test_migration_guide_covers_every_key_of_the_old_sample_config() -> None:
    guide = (ROOT / "docs" / "migration.md").read_text(encoding="utf-8")
    old_keys = set(_OLD_KEY.findall(OLD_SAMPLE.read_text(encoding="utf-8")))
    assert len(old_keys) > 40
    missing = sorted(key for key in old_keys | set(OBSOLETE_KEYS) if f"`{key}`" not in guide)
    assert missing == []


def test_metrics_page_names_only_metrics_the_api_exports() -> None:
    page = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    source = (ROOT / "dtserver" / "api" / "metrics.py").read_text(encoding="utf-8")
    names = set(re.findall(r"`dynamictorque_(\w+)`", page))
    assert names
    for name in names:
        assert f'_{name.removesuffix("_total")}"' in source, name


# What the code and docs cite must be in a clone: the team's workspace documents are not.
_OUTSIDE = re.compile(r"DESIGN\.md|STYLE\.md|nova-harness|torque-reference|team workspace")
_REPO_PATH = re.compile(r"(?<![\w./-])((?:docs|tests|dtserver|deploy|hooks|admin|bench)/[\w./-]*\w)")
# Where the benches write their results: made by a run, ignored by git.
_OUTPUTS = ("bench/results",)
_CITING = [*PAGES, ROOT / "hooks" / "README.md",
           *(path for folder in ("dtserver", "admin", "hooks", "bench", "deploy")
             for path in sorted((ROOT / folder).rglob("*.py")))]


@pytest.mark.parametrize("source", _CITING, ids=lambda source: str(source.relative_to(ROOT)))
def test_citations_are_files_of_the_repository(source: Path) -> None:
    text = source.read_text(encoding="utf-8")
    assert _OUTSIDE.findall(text) == []
    missing = sorted({cited for cited in _REPO_PATH.findall(text)
                      if not (ROOT / cited).exists() and not cited.startswith(_OUTPUTS)})
    assert missing == []
