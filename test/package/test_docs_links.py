"""No dead links in README.md and docs/*.md.

Every relative markdown link ``[text](path)`` or ``[text](path#anchor)`` must
name a file or folder of the repository, and an anchor a heading of the target
file (GitHub's slug: lower case, punctuation other than ``-`` and ``_``
dropped, spaces to ``-``; a repeated heading gets ``-1``, ``-2``, ...).
External links (http, https, mailto) are not fetched: the tests run without a
network.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
# [text](target) with no nested brackets in the target; images too.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = ("http://", "https://", "mailto:", "ftp://")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """Lines outside fenced code blocks, with their line numbers (1-based)."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    out = []
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", lambda m: " " * len(m.group(0)) if "](" not in m.group(0) else m.group(0), line)
        out.extend((number, m.group(1)) for m in LINK.finditer(line))
    return out


def dead_links(page: Path) -> list[str]:
    problems = []
    for number, target in links(page):
        if target.lower().startswith(EXTERNAL):
            continue
        file_part, _, anchor = target.partition("#")
        dest = page if not file_part else (page.parent / file_part).resolve()
        where = f"{page.relative_to(ROOT)}:{number}: ({target})"
        if not dest.exists():
            problems.append(f"{where}: {file_part} does not exist")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return problems


def test_slug_is_githubs():
    assert slug("Calibrate on your rig: `topreward eval`") == "calibrate-on-your-rig-topreward-eval"
    assert slug("`topreward bag IN... -o OUT_DIR`") == "topreward-bag-in--o-out_dir"
    assert slug("The managed (lifecycle) scorer") == "the-managed-lifecycle-scorer"


def test_pages_found():
    names = {p.name for p in PAGES}
    assert {"README.md", "node.md", "install.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_dead_links(page):
    assert links(page) or page.name != "README.md", "README.md has no links at all?"
    problems = dead_links(page)
    assert not problems, "dead links:\n" + "\n".join(problems)


def test_a_dead_link_is_found(tmp_path, monkeypatch):
    """The checker itself: a missing file and a missing anchor are both reported."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Some part\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/a.md) [ok](docs/a.md#some-part) [web](https://example.org/x)\n"
        "[gone](docs/missing.md) [bad anchor](docs/a.md#no-such-part)\n"
        "```\n[in code](docs/ignored.md)\n```\n",
        encoding="utf-8",
    )
    problems = dead_links(page)
    assert len(problems) == 2, problems
    assert "docs/missing.md does not exist" in problems[0]
    assert "no heading #no-such-part" in problems[1]
