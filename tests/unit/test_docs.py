"""The documents a user reads: the project's own, in Keep a Changelog form, short where they
must be short, and about the product rather than the history of its making."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
USER_DOCS = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
KINDS = ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security", "Upgrading")


def _tracked() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.split()
    return [REPO / name for name in listed]


def test_nothing_refers_to_a_file_outside_the_repository() -> None:
    outside = re.compile(r"\.\./shared|\b(DOMAIN|CONTRACT|DESIGN)\.md\b")
    offenders = [str(path.relative_to(REPO)) for path in _tracked()
                 if path.suffix in {".md", ".py", ".java", ".json", ".toml", ".yml", ".sh"}
                 and path.is_file() and outside.search(path.read_text(errors="replace"))]
    assert offenders == []


def test_the_changelog_keeps_one_section_of_each_kind_per_release() -> None:
    for release in re.split(r"^## ", (REPO / "CHANGELOG.md").read_text(), flags=re.M)[1:]:
        kinds = re.findall(r"^### (.+)$", release, flags=re.M)
        assert len(kinds) == len(set(kinds)), f"a kind twice in {release.splitlines()[0]}"
        assert set(kinds) <= set(KINDS), f"not a Keep a Changelog kind: {set(kinds) - set(KINDS)}"


def test_performance_md_is_read_in_minutes() -> None:
    assert len((REPO / "docs" / "performance.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("path", USER_DOCS, ids=[p.name for p in USER_DOCS])
def test_a_user_document_tells_no_history_of_the_work(path: Path) -> None:
    history = re.compile(r"\b[Ii]ssue #?\d+\b|\b[Rr]un [A-H]\b|\b[Aa]ttempt (?:#\s?)?\d+\b|"
                         r"\b[Tt]his session\b")
    found = [line for line in path.read_text().splitlines() if history.search(line)
             and "faust #" not in line and "aiokafka" not in line]
    assert found == []
