"""Tests of hybridsched.htmlexport: report pages show results, not code or reprs, and load nothing remote."""

from __future__ import annotations

import re

import pytest
from nbformat.v4 import (
    new_code_cell,
    new_markdown_cell,
    new_notebook,
    new_output,
)

from hybridsched.reports import html as htmlexport


def _result(text: str, **data):
    return new_output("execute_result", data={"text/plain": text, **data}, execution_count=1)


@pytest.mark.parametrize(
    "text",
    [
        "Text(0.5, 1.0, 'exact MIP, policies and T_LB')",
        "<Axes: title={'center': 'x'}, xlabel='time (s)'>",
        "[<matplotlib.lines.Line2D at 0x7f00>]",
        "<matplotlib.legend.Legend at 0x7f1>",
        "[Text(0, 0, 'a'), Text(1, 0, 'b')]",
        "<Figure size 640x480 with 1 Axes>",
    ],
)
def test_matplotlib_reprs_are_recognised(text):
    """Tests that the text reprs matplotlib calls return are recognised as noise."""
    assert htmlexport.is_artist_repr(_result(text))


@pytest.mark.parametrize(
    "output",
    [
        _result("{'2x tp4': 1319}"),
        _result("Text(0.5, 1.0, 'x')", **{"text/html": "<b>x</b>"}),
        new_output("stream", name="stdout", text="Text(0.5, 1.0, 'printed on purpose')"),
        _result("0    Text\ndtype: object"),
    ],
)
def test_results_are_kept(output):
    """Tests that real results (dicts, HTML, printed text, a Series holding the word Text) are kept."""
    assert not htmlexport.is_artist_repr(output)


def _executed_notebook():
    injected = new_code_cell(
        '# Parameters\nsmoke = True\nout_dir = "/tmp/.render-01-abc/01"\nfactor = 7\n',
        execution_count=1,
    )
    injected.metadata["tags"] = ["injected-parameters"]
    plot = new_code_cell("ax.set_title('t')", execution_count=2)
    plot.outputs = [_result("Text(0.5, 1.0, 't')")]
    table = new_code_cell("secret_source_line = 1", execution_count=3)
    table.outputs = [_result("42", **{"text/html": "<table><tr><td>42</td></tr></table>"})]
    nb = new_notebook(cells=[new_markdown_cell("# Title"), injected, plot, table])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def test_clean_notebook_drops_the_temporary_path_and_reprs_only():
    """Tests that cleaning removes the injected cell's out_dir line (keeping the other values),
    and the repr output, keeps the rest, and leaves the input notebook untouched."""
    nb = _executed_notebook()
    clean = htmlexport.clean_notebook(nb)
    assert len(clean.cells) == 4
    assert clean.cells[1].source == "# Parameters\nsmoke = True\nfactor = 7\n"
    assert "out_dir" in nb.cells[1].source
    assert clean.cells[2].outputs == [] and len(nb.cells[2].outputs) == 1
    assert clean.cells[3].outputs[0]["data"]["text/plain"] == "42"


def test_report_page_hides_code_links_back_and_loads_nothing_remote():
    """Tests that the page has no injected path, no prompts, the code toggle, the navigation
    links, and no script or stylesheet from the network."""
    page = htmlexport.notebook_html(
        _executed_notebook(), index_href="index.html", model_href="../docs/model.md"
    )
    assert "/tmp/.render-01-abc" not in page
    assert "Text(0.5" not in page
    assert 'class="jp-OutputPrompt' not in page and 'class="jp-InputPrompt' not in page
    assert "<td>42</td>" in page
    assert 'href="index.html"' in page and 'href="../docs/model.md"' in page
    assert 'id="hs-toggle-code"' in page
    # the code is in the page (shown by the toggle) but hidden by default
    assert "secret_source_line" in page
    assert "body:not(.hs-show-code) .jp-CodeCell .jp-Cell-inputWrapper" in page
    remote = re.findall(r"<(?:script|link)[^>]*(?:src|href)=[\"']https?://[^\"']*", page)
    assert remote == []
    assert "import mermaid" not in page
