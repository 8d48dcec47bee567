"""The reports' index: each report's one-line claim comes from its results JSON."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd

from hybridsched import reports
from hybridsched.reports.index import results_claim, write_index
from hybridsched.studies import deployment

CELL = {
    "model": "llama-3.1-8b",
    "hardware": "h100-sxm-vllm",
    "clients": 4,
    "tp": 1,
    "workload": "azure-code",
    "window": "0:300",
    "rate_scale": 2.0,
    "slo_ttft": 2.0,
    "slo_tpot": 0.1,
}
STALE = "hybrid-chunked wins with 2% more goodput than vllm at 2.7x its TTFT p99"


def _runs() -> pd.DataFrame:
    """Three seeds: hybrid-chunked 0.015% more goodput than vllm, its TTFT p99 37% worse."""
    rows = []
    for seed, (g, t) in enumerate([(5.0, 0.66), (6.0, 0.70), (7.0, 0.62)]):
        for pol, gain, slower in (("vllm", 1.0, 1.0), ("hybrid-chunked", 1.00015, 1.37)):
            rows.append(
                {
                    "policy": pol,
                    "seed": seed,
                    "goodput_rps": g * gain,
                    "ttft_p99_s": t * slower,
                    "makespan_s": 300.0,
                    "status": "ok",
                    "error": None,
                }
            )
    return pd.DataFrame(rows)


def _report(out: Path, name: str, recorded_claim: str) -> Path:
    """A rendered report's traces: its HTML page and render.json with the claim render
    recorded (the notebook's metadata)."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.html").write_text("<html></html>")
    meta = {"notebook": name, "html": f"{name}.html", "claim": recorded_claim, "smoke": False}
    (folder / reports.RENDER_JSON).write_text(json.dumps(meta))
    return folder


def _index_line(index: str, name: str) -> str:
    m = re.search(rf"<li><a href='{name}.html'>{name}</a>: (.*?)</li>", index)
    assert m, f"no line for {name}"
    return html.unescape(m.group(1))


def test_index_line_is_the_claim_the_results_say(tmp_path):
    """Tests that the index shows the claim computed from the results JSON a notebook writes
    (recomputed here from that JSON's verdict, loads and capacity), not the typed one."""
    runs = _runs()
    v = deployment.verdict(runs)
    loads = pd.DataFrame([{"policy": "vllm", "max_rate_scale": 3.375, "capped": False}])
    need = {"overloaded": False}
    folder = _report(tmp_path, "07_my_deployment", STALE)
    payload = {"claim": deployment.claim(v, loads, need, CELL), "cell": CELL, "verdict": v}
    reports.write_results(
        folder, "my_deployment", {**payload, "capacity": need}, tables={"max_load": loads}
    )
    index = write_index(tmp_path, commit="abc").read_text()
    doc = json.loads((folder / "my_deployment.json").read_text())
    saved_loads = pd.read_csv(folder / "max_load.csv")
    expected = deployment.claim(doc["verdict"], saved_loads, doc["capacity"], doc["cell"])
    assert _index_line(index, "07_my_deployment") == expected
    assert STALE not in index
    assert "no policy beats vllm beyond the seeds' spread, so vllm is kept" in expected
    assert "hybrid-chunked: goodput +0.015%, TTFT p99 +37.0%" in expected
    assert "vllm holds the SLO up to 3.38x the trace's rate" in expected


def test_index_falls_back_on_the_recorded_claim_without_a_results_claim(tmp_path):
    """Tests that a report whose results carry no claim keeps the claim render recorded,
    and that results_claim skips render.json and JSON without a claim."""
    folder = _report(tmp_path, "01_x", "From the heading.")
    (folder / "result.json").write_text(json.dumps({"factor": 2}))
    (folder / "broken.json").write_text("{not json")
    assert results_claim(folder) is None
    assert _index_line(write_index(tmp_path, commit="abc").read_text(), "01_x") == (
        "From the heading."
    )
    (folder / "result.json").write_text(json.dumps({"claim": "  From the results. "}))
    assert _index_line(write_index(tmp_path, commit="abc").read_text(), "01_x") == (
        "From the results."
    )


def test_my_deployment_notebook_types_no_claim():
    """Tests that notebook 07 carries no typed claim: its index line comes from its results."""
    import nbformat

    from hybridsched.paths import repo_root

    nb = nbformat.read(repo_root() / "notebooks" / "07_my_deployment.ipynb", as_version=4)
    assert "claim" not in nb.metadata.get("hybridsched", {})
