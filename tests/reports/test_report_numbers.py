"""Numbers a rendered report states in its generated reading come from its tables: every
number in the reading of the committed pages below is in a table the page shows, in a
table it writes beside it (``reports/<page>/*.csv``) or in its parameters cell."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from bs4 import BeautifulSoup

from hybridsched.paths import repo_root

NUM = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?")
# The page and the heading of the section whose generated prose is checked.
PAGES = {
    "02_case_study": "Reading",
    "07_my_deployment": "The answer",
    "08_capacity_planning": "Reading",
}
QUOTED = "How far to trust"  # quotes notebook 10's tables (tests/reports/test_validation_text.py)


def _values(text: str) -> set[float]:
    return {float(m.replace(",", "")) for m in NUM.findall(text)}


def reading_and_tables(html: str, heading: str) -> tuple[str, str]:
    """The generated Markdown under ``heading`` (up to the next heading) and the text of
    every table the page shows."""
    soup = BeautifulSoup(html, "html.parser")
    tables = " ".join(t.get_text(" ") for t in soup.select(".jp-OutputArea table"))
    parts, on = [], False
    for cell in soup.select(".jp-Cell"):
        if "jp-MarkdownCell" in cell["class"]:
            h = cell.find("h2")
            on = bool(h and h.get_text().strip().startswith(heading)) if h else on
            continue
        if on:
            for md in cell.select(".jp-OutputArea .jp-RenderedMarkdown"):
                text = md.get_text(" ")
                parts.extend(p for p in text.split("\n") if not p.strip().startswith(QUOTED))
    return " ".join(parts), tables


def allowed(page: str, tables: str) -> set[float]:
    root = repo_root()
    vals = _values(tables)
    for csv in (root / "reports" / page).glob("*.csv"):
        cells = pd.read_csv(csv, dtype=str).fillna("").to_numpy().ravel()
        vals |= _values(" ".join(cells))  # cell by cell: a CSV comma is no digit group
    nb = json.loads((root / "notebooks" / f"{page}.ipynb").read_text())
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    return vals | _values(re.sub(r"#.*", "", "".join(params["source"])))


def missing(text: str, vals: set[float]) -> list[str]:
    """The numbers of ``text`` that no value of ``vals`` gives at the precision quoted (as
    is, or times 100 for a share quoted in %)."""
    out = []
    for m in NUM.findall(text):
        v = float(m.replace(",", ""))
        dec = len(m.split(".")[1]) if "." in m else 0
        if not any(round(t, dec) == round(v, dec) or round(100 * t, dec) == round(v, dec)
                   for t in vals):  # fmt: skip
            out.append(m)
    return out


@pytest.mark.parametrize("page", sorted(PAGES))
def test_reading_numbers_are_in_the_reports_tables(page):
    """Tests that the committed page's reading states no number its tables do not hold."""
    html = (repo_root() / "reports" / f"{page}.html").read_text(encoding="utf-8")
    text, tables = reading_and_tables(html, PAGES[page])
    assert len(NUM.findall(text)) >= 3, f"{page}: no reading found under {PAGES[page]!r}"
    assert missing(text, allowed(page, tables)) == []


def test_the_check_catches_a_number_no_table_holds():
    """Tests the checker on a reading that states one number absent from the tables."""
    assert missing("sustains 28.8 req/s at 3 GPUs", {28.75, 3.0}) == []
    assert missing("sustains 31.2 req/s at 3 GPUs, 86% of it", {28.75, 3.0, 0.861}) == ["31.2"]


MACHINE = ("/work/", "/tmp/", "/home/", "/root/", "/Users/", "C:\\")
REPRS = ("object at 0x", "&lt;Figure size", "&lt;Axes", "&lt;matplotlib")


@pytest.mark.parametrize("page", sorted(p.stem for p in (repo_root() / "reports").glob("*.html")))
def test_committed_page_has_no_machine_path_repr_or_stderr(page):
    """Tests that a committed report shows no path of the machine that rendered it, no raw
    Python repr and no stderr output block (warnings, tracebacks)."""
    html = (repo_root() / "reports" / f"{page}.html").read_text(encoding="utf-8")
    assert [m for m in MACHINE if m in html] == []
    assert [r for r in REPRS if r in html] == []
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in html
