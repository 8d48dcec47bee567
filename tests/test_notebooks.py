"""The repository's notebooks: committed clean, and each renders with smoke parameters.

The smoke renders run once per session (about 20-40 s on 2 cores, kernel starts
included) through ``reports.render``, i.e. papermill then nbconvert, into a temporary
folder; the per-notebook tests then read what it wrote.
"""

from __future__ import annotations

import nbformat
import pytest

from hybridsched import reports
from hybridsched.paths import repo_root

NOTEBOOKS = [
    "01_single_case",
    "02_case_study",
    "03_exact_mip",
    "04_sensitivity",
    "05_latency_model",
    "06_online_serving",
    "07_my_deployment",
    "08_capacity_planning",
    "09_uncertainty",
    "10_validation",
]

# A column header or row label of each notebook's main results table.
TABLE_MARKERS = {
    "01_single_case": "gap to T_LB, hybrid (%)",
    "02_case_study": "mean U gain (pp)",
    "03_exact_mip": "gap to the optimum T*",
    "04_sensitivity": "gap to T_LB",
    "05_latency_model": "overhead_per_extra_gpu_s",
    "06_online_serving": "sustained rate within the SLO (req/s)",
    "07_my_deployment": "highest load within the SLO",
    "08_capacity_planning": "max_rate",
    "09_uncertainty": "best offline vs vllm (%)",
    "10_validation": "held-out E2E mean error",
}


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(repo_root() / "notebooks" / f"{name}.ipynb", as_version=4)


def test_all_notebooks_present():
    """Tests that notebooks/ holds exactly the workbook notebooks render() picks up."""
    assert [p.stem for p in reports.find_notebooks()] == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_committed_without_outputs(name):
    """Tests that a committed notebook carries no outputs and no execution counts."""
    nb = _read(name)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: cell {i} has outputs"
            assert cell.execution_count is None, f"{name}: cell {i} has an execution count"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_one_parameters_cell_of_literals(name):
    """Tests that a notebook has exactly one `parameters` cell, it declares smoke=False and an
    out_dir under scratch/ (a notebook opened in the lab never writes over the rendered
    reports/), and it holds only literal assignments."""
    import ast

    nb = _read(name)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    tree = ast.parse(tagged[0].source)
    values = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"{name}: the parameters cell may only assign"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    assert values["smoke"] is False
    assert values["out_dir"] == f"scratch/{name}"


@pytest.fixture(scope="session")
def smoke_reports(tmp_path_factory):
    """All the notebooks rendered with smoke=True into a temporary folder (executed notebooks kept)."""
    out = tmp_path_factory.mktemp("reports")
    reports.render(out, smoke=True, keep_ipynb=True, progress=False)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_smoke_render_has_no_error_and_writes_results(smoke_reports, name):
    """Tests that a notebook runs with smoke=True through papermill without an error cell and
    writes its results JSON, with parameters, versions and the claim computed from its
    results (one line of plain text), into its own results folder."""
    import json

    executed = nbformat.read(smoke_reports / name / f"{name}.ipynb", as_version=4)
    errors = [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert errors == []
    jsons = [p for p in (smoke_reports / name).glob("*.json") if p.name != reports.RENDER_JSON]
    assert len(jsons) == 1
    doc = json.loads(jsons[0].read_text())
    assert doc["notebook_parameters"]["smoke"] is True
    assert "versions" in json.dumps(doc)
    claim = doc.get("claim")
    assert isinstance(claim, str) and len(claim) > 40, f"{name}: no claim in {jsons[0].name}"
    assert "\n" not in claim and "`" not in claim and "**" not in claim


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_html_has_results_table_and_figure(smoke_reports, name):
    """Tests that a notebook's HTML report contains its results table and at least one PNG figure."""
    import re

    html = (smoke_reports / f"{name}.html").read_text()
    tables = re.findall(r"<table.*?</table>", html, flags=re.S)
    assert any(TABLE_MARKERS[name] in t for t in tables)
    assert "data:image/png" in html


@pytest.mark.slow
def test_index_links_every_report_with_headline(smoke_reports):
    """Tests that index.html links each report with the claim of its results JSON and shows
    the paper-vs-ours headline of the single case."""
    import html

    from hybridsched.reports.index import results_claim

    index = (smoke_reports / "index.html").read_text()
    for name in NOTEBOOKS:
        claim = results_claim(smoke_reports / name)
        assert claim, f"{name}: its results carry no claim"
        assert f"<li><a href='{name}.html'>{name}</a>: {html.escape(claim)}" in index
    assert "Paper vs ours" in index and "U gain (pp)" in index


@pytest.mark.slow
def test_my_deployment_renders_from_the_command_line_with_a_parameter(tmp_path, capsys):
    """Tests that `render --notebooks 07_my_deployment -p clients=2 --smoke` runs the notebook
    with the override: the render record and the notebook's own results carry clients=2."""
    import json

    from hybridsched.cli import main

    out = tmp_path / "r"
    argv = ["render", "--smoke", "--notebooks", "07_my_deployment", "-p", "clients=2"]
    assert main([*argv, "--out", str(out)]) == 0
    meta = json.loads((out / "07_my_deployment" / reports.RENDER_JSON).read_text())
    assert meta["parameters"]["clients"] == 2
    doc = json.loads((out / "07_my_deployment" / "my_deployment.json").read_text())
    assert doc["cell"]["clients"] == 2 and doc["verdict"]["winner"] in doc["policies"]


def test_render_refuses_an_unknown_parameter_listing_the_known_ones(tmp_path, capsys):
    """Tests that `render -p NAME=VALUE` with a name the notebook does not declare exits 2
    with one line that lists the notebook's parameters, and renders nothing."""
    from hybridsched.cli import main

    out = tmp_path / "r"
    argv = ["render", "--notebooks", "07_my_deployment", "-p", "gpus=3", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown parameter(s) gpus" in err and "known:" in err and "clients" in err
    assert not (out / "07_my_deployment.html").exists()
