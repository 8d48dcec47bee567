"""The reports' ``index.html``: every report with its claim, the headlines, the render details.

A report's one-line claim comes from its results: the ``claim`` string of a results JSON
in its folder (the notebook computes it from its results, e.g. with
``reports.claim_from`` on its generated result, and writes it with
``reports.write_results``), so the index says what the results say; a claim is never
typed. A report whose results carry no claim shows the line ``render`` recorded (its
notebook's first heading, ``rendering.notebook_claim``).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from hybridsched.paths import repo_root
from hybridsched.reports.results import repo_commit, to_jsonable, write_atomic

HEADLINE_CSV = "headline.csv"
RENDER_JSON = "render.json"


def model_href(out: Path) -> str:
    """The link from a report in ``out`` to docs/model.md (relative, so the folder can move
    with the checkout)."""
    return Path(os.path.relpath(repo_root() / "docs" / "model.md", out)).as_posix()


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
code { background: #f4f4f4; padding: 0 0.2em; }
.failed { color: #b00; }
"""


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:,.2f}"
    return str(v)


def _csv_table(path: Path) -> str:
    """A headline CSV (one row per metric) as HTML, each row in its unit, the paper's
    missing numbers "not reported"."""
    from hybridsched.reports.display import metrics_frame

    df = pd.read_csv(path, index_col=0)
    return metrics_frame(df).to_html(index=False, border=0, na_rep="")


def _run_words(run: Mapping) -> str:
    """A render's settings in words: "full runs, default parameters" or "smoke runs,
    parameters clients=2, tp=1"."""
    kind = "smoke runs (small samples)" if run.get("smoke") else "full runs"
    params = to_jsonable(run.get("parameters") or {})
    given = ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())
    return f"{kind}, " + (f"parameters {given}" if given else "default parameters")


def _params_cell(params: Mapping) -> str:
    """A report's parameters for the index: "default", or the ones given, as code."""
    if not params:
        return "default"
    return "<code>" + html.escape(json.dumps(to_jsonable(params))) + "</code>"


def write_index(
    out_dir: str | os.PathLike,
    commit: str | None = None,
    run: Mapping | None = None,
    failures: Iterable = (),  # rendering.NotebookFailure
) -> Path:
    """``index.html``: every report in ``out_dir`` (from its ``render.json``), the headlines, the
    commit and parameters that produced them, and this run's failures."""
    out = Path(out_dir)
    metas = []
    for meta_path in sorted(out.glob(f"*/{RENDER_JSON}")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (out / meta.get("html", "")).is_file():
            metas.append(meta)
    e = html.escape
    model = model_href(out.resolve())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>hybridsched reports</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>hybridsched reports</h1>",
        "<p>Reproducing <i>Hybrid Offline-online Scheduling Method for Large Language Model Inference "
        "Optimization</i> (arXiv:2502.15763) in an iteration-level simulator. The model every "
        f"report uses is specified in <a href='{e(model)}'>docs/model.md</a>.</p>",
        f"<p>Commit <code>{e(commit or repo_commit())}</code>; this render: "
        f"{e(_run_words(run or {}))}; written "
        f"{_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}.</p>",
    ]
    parts += _claims_html(out, metas)
    headlines = [(m, out / m["notebook"] / HEADLINE_CSV) for m in metas]
    headlines = [(m, p) for m, p in headlines if p.is_file()]
    if headlines:
        parts.append("<h2>Paper vs ours</h2>")
        for m, p in headlines:
            note = (
                " (smoke run: a small sample, not comparable with the paper)"
                if m.get("smoke")
                else ""
            )
            parts.append(f"<h3>{e(m['notebook'])}{e(note)}</h3>{_csv_table(p)}")
    parts += _details_html(metas, failures)
    parts.append("</table></body></html>")
    path = out / "index.html"
    write_atomic(path, "\n".join(parts))
    return path


def results_claim(folder: Path) -> str | None:
    """The ``claim`` of the first results JSON (by name) in a report's ``folder`` that has
    one; None when none does."""
    for path in sorted(folder.glob("*.json")):
        if path.name == RENDER_JSON:
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        claim = doc.get("claim") if isinstance(doc, dict) else None
        if isinstance(claim, str) and claim.strip():
            return claim.strip()
    return None


def _claims_html(out: Path, metas: list[dict]) -> list[str]:
    """The list of reports, each with its claim (``results_claim``, else the recorded one)."""
    e = html.escape
    parts = ["<h2>Reports</h2><ul class='claims'>"]
    for m in metas:
        claim = results_claim(out / m["notebook"]) or m.get("claim", "")
        parts.append(
            f"<li><a href='{e(m['html'])}'>{e(m['notebook'])}</a>"
            + (f": {e(claim)}" if claim else "")
            + ("" if not m.get("smoke") else " <i>(smoke run)</i>")
            + "</li>"
        )
    parts.append("</ul>")
    return parts


def _details_html(metas: list[dict], failures: Iterable) -> list[str]:
    """The render details table: one row per report, then this run's failures."""
    e = html.escape
    parts = [
        "<h2>Render details</h2><table><tr><th>notebook</th><th>results</th><th>smoke</th>"
        "<th>commit</th><th>parameters</th><th>rendered</th><th>wall (s)</th></tr>"
    ]
    for m in metas:
        n = m["notebook"]
        params = {k: v for k, v in m.get("parameters", {}).items() if k not in ("smoke", "out_dir")}
        parts.append(
            f"<tr><td><a href='{e(m['html'])}'>{e(n)}</a></td><td><a href='{e(n)}/'>{e(n)}/</a></td>"
            f"<td>{e(_fmt(m.get('smoke')))}</td><td><code>{e(str(m.get('commit', ''))[:12])}</code></td>"
            f"<td>{_params_cell(params)}</td><td>{e(str(m.get('rendered_at', '')))}</td>"
            f"<td>{e(_fmt(m.get('wall_s', '')))}</td></tr>"
        )
    for f in failures:
        parts.append(
            f"<tr class='failed'><td>{e(f.notebook)}</td><td colspan='6'>FAILED: {e(str(f))}</td></tr>"
        )
    return parts
