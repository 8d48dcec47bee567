"""Tests of hybridsched.report: rendering (papermill + nbconvert), the index and the result helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from hybridsched import reports
from hybridsched.bounds.lower_bound import LowerBound
from hybridsched.paths import repo_root
from hybridsched.studies.paper import PAPER


def _notebook(path: Path, body: str) -> Path:
    """A tiny notebook: a title, a `parameters` cell (smoke, out_dir, factor) and ``body``."""
    params = new_code_cell('smoke = False\nout_dir = "unused"\nfactor = 2')
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell("# tiny"), params, new_code_cell(body)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


GOOD = """
import json, pathlib
import pandas as pd
df = pd.DataFrame({"x": [1, 2], "y": [factor, 2 * factor]})
pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)
(pathlib.Path(out_dir) / "result.json").write_text(json.dumps({"smoke": smoke, "factor": factor}))
df
"""


@pytest.fixture
def nb_dir(tmp_path) -> Path:
    """A notebooks folder with 01_good (writes result.json, shows a table) and 02_bad (raises)."""
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "01_good.ipynb", GOOD)
    _notebook(d / "02_bad.ipynb", "x = 1\nraise ValueError('boom in the tiny notebook')")
    return d


@pytest.mark.slow
def test_good_notebook_renders_html_results_and_index(nb_dir, tmp_path):
    """Tests that a good notebook renders to HTML with its table, its result file moves into
    out_dir/<name>/ with the smoke and extra parameters applied, and index.html links it."""
    out = tmp_path / "out"
    written = reports.render(
        out,
        smoke=True,
        notebooks=["01_good"],
        notebooks_dir=nb_dir,
        parameters={"factor": 7},
        progress=False,
    )
    assert written == [out / "01_good.html", out / "index.html"]
    html = (out / "01_good.html").read_text()
    assert "<table" in html and "boom" not in html
    assert json.loads((out / "01_good" / "result.json").read_text()) == {"smoke": True, "factor": 7}
    meta = json.loads((out / "01_good" / reports.RENDER_JSON).read_text())
    assert meta["smoke"] is True and meta["parameters"]["factor"] == 7
    index = (out / "index.html").read_text()
    assert "href='01_good.html'" in index and reports.repo_commit()[:12] in index
    assert not [
        p for p in out.iterdir() if p.name.startswith(".render-")
    ]  # temporary folders removed


@pytest.mark.slow
def test_failing_notebook_raises_render_error_and_leaves_no_report(nb_dir, tmp_path, capsys):
    """Tests that a failing notebook raises RenderError naming it and the failing cell, leaves no
    HTML or results for it (removing a stale one), and does not stop the other notebooks."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "02_bad.html").write_text("stale report from an earlier run")
    (out / "02_bad").mkdir()
    with pytest.raises(reports.RenderError) as info:
        reports.render(out, notebooks_dir=nb_dir)
    err = info.value
    assert err.notebook == "02_bad"
    assert (
        "02_bad" in str(err)
        and "ValueError" in str(err)
        and "boom in the tiny notebook" in str(err)
    )
    assert "cell" in str(err) and err.failures[0].cell_index is not None
    assert not (out / "02_bad.html").exists() and not (out / "02_bad").exists()
    assert (out / "01_good.html").exists()  # the good one still rendered
    assert "FAILED" in (out / "index.html").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".render-")]
    printed = capsys.readouterr().out
    assert "01_good" in printed and "02_bad" in printed and "FAILED" in printed


def test_unknown_notebook_and_undeclared_parameter_are_rejected(nb_dir, tmp_path):
    """Tests that render rejects an unknown notebook name and a parameter no notebook declares, before running anything."""
    with pytest.raises(ValueError, match="unknown notebook 'nope'"):
        reports.render(tmp_path / "out", notebooks=["nope"], notebooks_dir=nb_dir)
    with pytest.raises(ValueError, match="not_a_param"):
        reports.render(tmp_path / "out", notebooks_dir=nb_dir, parameters={"not_a_param": 1})
    assert not (tmp_path / "out" / "01_good.html").exists()


def test_find_notebooks_sorted(nb_dir):
    """Tests that find_notebooks lists the NN_*.ipynb notebooks in sorted order and accepts stems and file names."""
    assert [p.name for p in reports.find_notebooks(notebooks_dir=nb_dir)] == [
        "01_good.ipynb",
        "02_bad.ipynb",
    ]
    assert [p.name for p in reports.find_notebooks(["02_bad.ipynb", "01_good"], nb_dir)] == [
        "02_bad.ipynb",
        "01_good.ipynb",
    ]


def test_repo_commit_is_a_hash_or_unknown(tmp_path):
    """Tests that repo_commit gives a 40-hex commit for the checkout and "unknown" outside any git checkout."""
    c = reports.repo_commit()
    assert c == "unknown" or (len(c) == 40 and all(ch in "0123456789abcdef" for ch in c))
    assert reports.repo_commit(tmp_path) == "unknown"


def test_results_dir_resolves_relative_paths_from_repo_root(tmp_path, monkeypatch):
    """Tests that results_dir takes a relative path from the repository root, whatever the working directory."""
    from hybridsched.paths import repo_root

    monkeypatch.chdir(tmp_path)
    assert reports.results_dir(tmp_path / "abs") == tmp_path / "abs"
    p = reports.results_dir("reports")
    assert p == repo_root() / "reports"


def test_write_results_json_is_plain_and_tables_are_csv(tmp_path):
    """Tests that write_results writes valid JSON (numpy values converted, NaN as null) with the
    parameters and commit, and one CSV per table."""
    paths = reports.write_results(
        tmp_path,
        "run",
        {"x": np.float64(1.5), "n": np.int64(3), "bad": math.nan, "arr": np.arange(3)},
        tables={"t": pd.DataFrame({"a": [1, 2]})},
        parameters={"smoke": True},
    )
    assert [p.name for p in paths] == ["run.json", "t.csv"]
    doc = json.loads(paths[0].read_text())
    assert doc["x"] == 1.5 and doc["n"] == 3 and doc["bad"] is None and doc["arr"] == [0, 1, 2]
    assert doc["notebook_parameters"] == {"smoke": True} and "commit" in doc
    assert pd.read_csv(paths[1])["a"].tolist() == [1, 2]


def _single(base_t, hyb_t, base_u, hyb_u, lb):
    return pd.DataFrame(
        {
            "policy": ["baseline", "hybrid"],
            "makespan_s": [base_t, hyb_t],
            "utilization": [base_u, hyb_u],
            "mean_batch": [30.0, 31.0],
            "lower_bound_s": [lb, lb],
        }
    )


def test_paper_vs_ours_reproduces_the_paper_arithmetic():
    """Tests that paper_vs_ours gives the paper's column from experiments.PAPER (half the gap
    closed) and ours by hand arithmetic on a two-policy table."""
    t = reports.paper_vs_ours({"ours": _single(110.0, 100.0, 0.8, 0.9, 90.0)})
    paper = t["paper"]
    assert paper["U gain (pp)"] == pytest.approx(
        100 * (PAPER["hybrid_utilization"] - PAPER["baseline_utilization"])
    )
    assert paper["share of the baseline's gap closed (%)"] == pytest.approx(100 * 10.42 / 21.0)
    ours = t["ours"]
    assert ours["U gain (pp)"] == pytest.approx(10.0)
    assert ours["makespan reduction (%)"] == pytest.approx(100 * 10 / 110)
    assert ours["share of the baseline's gap closed (%)"] == pytest.approx(50.0)
    assert ours["gap to T_LB, hybrid (%)"] == pytest.approx(100 * 10 / 90)


def test_exact_table_certifies_bound_and_optimum():
    """Tests that exact_table marks a row certified only when T_LB <= T* <= T."""
    lb = LowerBound(1.0, 1.0, 0.5, 0.5, 0.2, 0.0, "volume_memory", True)
    t = reports.exact_table(
        {
            "exact MIP": {"makespan_s": 2.0, "utilization": 0.5},
            "p": {"makespan_s": 2.5, "utilization": 0.4},
            "bad": {"makespan_s": 1.9, "utilization": 0.6},
        },
        lb,
    )
    assert t["certified"].tolist() == [True, True, False]
    assert t.loc[t["policy"] == "p", "gap_to_optimum"].item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="exact MIP"):
        reports.exact_table({"p": {"makespan_s": 2.0, "utilization": 0.5}}, lb)


@pytest.mark.slow
def test_render_log_is_clean_and_pages_read_as_reports(nb_dir, tmp_path, capfd):
    """Tests that a successful render prints only its progress lines (no kernel warning, no
    KeyboardInterrupt), that the page hides the injected parameters (no temporary path) and
    links the index and docs/model.md, and that the index lists the report with its claim."""
    import os

    out = tmp_path / "out"
    reports.render(out, notebooks=["01_good"], notebooks_dir=nb_dir, parameters={"factor": 3})
    captured = capfd.readouterr()
    assert "WARNING" not in captured.err and "KeyboardInterrupt" not in captured.err
    assert "IPKernelApp" not in captured.err + captured.out
    assert [ln.split(":")[0] for ln in captured.out.splitlines()] == ["[1/1] 01_good"] * 2
    page = (out / "01_good.html").read_text()
    assert ".render-" not in page and str(tmp_path) not in page
    model = os.path.relpath(repo_root() / "docs" / "model.md", out)
    assert 'href="index.html"' in page and f'href="{model}"' in page
    index = (out / "index.html").read_text()
    assert f"href='{model}'" in index
    assert "<li><a href='01_good.html'>01_good</a>: tiny</li>" in index


def test_notebook_claim_is_the_heading_never_typed_metadata(tmp_path):
    """Tests that the line render records for a notebook is its first heading (without its
    number), and that a typed hybridsched.claim in its metadata is not read."""
    path = _notebook(tmp_path / "01_x.ipynb", "x = 1")
    assert reports.notebook_claim(path) == "tiny"
    nb = nbformat.read(path, as_version=4)
    nb.metadata["hybridsched"] = {"claim": "The hybrid wins."}
    nbformat.write(nb, path)
    assert reports.notebook_claim(path) == "tiny"
    nb.cells[0].source = "# 05 · A latency model\n\ntext"
    nbformat.write(nb, path)
    assert reports.notebook_claim(path) == "A latency model"
