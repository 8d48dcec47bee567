"""The reports' index: each report's one-line claim comes from its results JSON."""

from __future__ import annotations

import ast
import html
import json
import re
from pathlib import Path

import pandas as pd
import pytest

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


def test_results_claim_is_preferred_over_the_recorded_one(tmp_path):
    """Tests that the index line is the claim of the results JSON, not the claim render
    recorded in render.json (which results_claim never reads), and that a results JSON
    without a claim gives way to one that has it."""
    folder = _report(tmp_path, "03_x", "Recorded by render.")
    (folder / "a_table.json").write_text(json.dumps({"rows": [1, 2]}))
    (folder / "b_result.json").write_text(json.dumps({"claim": "Computed from the results."}))
    assert results_claim(folder) == "Computed from the results."
    index = write_index(tmp_path, commit="abc").read_text()
    assert _index_line(index, "03_x") == "Computed from the results."
    assert "Recorded by render." not in index


@pytest.mark.parametrize(
    ("markdown", "claim"),
    [
        (
            "**Result.** On `2x tp4` the hybrid raises `U` from 70.1% to 78.0%, a gain of "
            "+7.9 pp. It cuts the makespan by 5.0%.\n\n**The paper's numbers** +8.0 pp.",
            "On 2x tp4 the hybrid raises U from 70.1% to 78.0%, a gain of +7.9 pp.",
        ),
        (  # decimals, versions and predictor names do not end a sentence; a digit starts one
            "**Result.** On 24 requests `llama-3.1-8b` at 0.25x beats `vllm` with\n"
            "`noisy:0.5` and `bucket`. 0 of 8 runs failed.",
            "On 24 requests llama-3.1-8b at 0.25x beats vllm with noisy:0.5 and bucket.",
        ),
        ("No label, one sentence with *emphasis*", "No label, one sentence with *emphasis*"),
    ],
)
def test_claim_from_is_the_first_sentence_in_plain_text(markdown, claim):
    """Tests that claim_from keeps the first sentence of a generated result, without its
    bold label, code marks or line breaks."""
    assert reports.claim_from(markdown) == claim


def test_claim_from_refuses_an_empty_result():
    """Tests that a result with no sentence gives no claim (an error, not an empty line)."""
    with pytest.raises(ValueError, match="no sentence"):
        reports.claim_from("**Result.**  \n")


def _notebooks() -> list[Path]:
    return reports.find_notebooks()


def _typed_claim(path: Path) -> str | None:
    """The claim typed in a notebook's metadata (``hybridsched.claim``), if any."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return nb.metadata.get("hybridsched", {}).get("claim")


def _results_payloads(path: Path) -> list[ast.expr | None]:
    """The payload argument (the third, or ``payload=``) of every ``write_results`` call in
    a notebook's code cells."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    payloads = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name == "write_results":
                kw = {k.arg: k.value for k in node.keywords}
                payloads.append(node.args[2] if len(node.args) > 2 else kw.get("payload"))
    return payloads


def _claim_problem(path: Path) -> str | None:
    """What is wrong with the claim a notebook writes into its results JSON: none written,
    or a typed one (a string literal, not a value computed from the results); None if fine."""
    payloads = _results_payloads(path)
    if len(payloads) != 1:
        return f"{len(payloads)} write_results calls, expected one"
    value = None
    if isinstance(payloads[0], ast.Dict):
        for key, v in zip(payloads[0].keys, payloads[0].values, strict=True):
            if isinstance(key, ast.Constant) and key.value == "claim":
                value = v
    if value is None:
        return "its results JSON has no 'claim' key"
    if not isinstance(value, (ast.Name, ast.Call)):
        return "its claim is typed, not a value computed from the results (a name or a call)"
    return None


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_notebook_types_no_claim(path):
    """Tests that no notebook carries a typed claim in its metadata: its index line comes
    from its results."""
    assert _typed_claim(path) is None


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_notebook_writes_a_computed_claim_into_its_results(path):
    """Tests that every notebook writes its results JSON (one ``write_results`` call) with a
    "claim" key whose value is computed (a name or a call), never a typed string."""
    assert _claim_problem(path) is None


def test_the_notebook_checks_see_a_missing_or_typed_claim(tmp_path):
    """Tests that the two checks above catch a notebook whose results carry no claim or a
    typed one, and typed claim metadata, and pass a computed claim."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    def notebook(payload: str, **metadata) -> Path:
        call = f'reports.write_results(out_dir, "x", {payload}, tables={{}})'
        nb = new_notebook(cells=[new_code_cell("claim = 'x'"), new_code_cell(call)])
        nb.metadata.update(metadata)
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.ipynb"
        nbformat.write(nb, path)
        return path

    assert "no 'claim'" in _claim_problem(notebook('{"factor": 2}'))
    assert "typed" in _claim_problem(notebook('{"claim": "The hybrid wins."}'))
    assert "typed" in _claim_problem(notebook('{"claim": f"wins by {x}"}'))
    good = notebook('{"claim": claim, "factor": 2}')
    assert _claim_problem(good) is None and _typed_claim(good) is None
    typed = notebook('{"claim": claim}', hybridsched={"claim": "The hybrid wins."})
    assert _typed_claim(typed) == "The hybrid wins."
