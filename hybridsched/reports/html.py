"""An executed notebook as a report page: results first, code on request.

``notebook_html(nb, ...)`` converts an executed notebook (papermill's output) with
nbconvert's lab template and:

- hides every code cell's input (a "show code" button in the page shows them again),
  and leaves out the ``In [n]`` / ``Out [n]`` prompts;
- keeps papermill's ``injected-parameters`` cell (shown with the code: the values this
  render used) without its ``out_dir`` line, which names the render's temporary folder
  (``render.json`` records the parameters);
- drops outputs that are only a matplotlib object's repr (``Text(0.5, 1.0, '...')``,
  ``<Axes: ...>``, ``[<matplotlib.lines.Line2D ...>]``): the figure itself is shown;
- loads nothing from the network (no require.js, MathJax or Mermaid from a CDN: the
  reports use none of them, and a page must open offline without a console error);
- puts a navigation bar at the top: back to the index and to the model specification.
"""

from __future__ import annotations

import copy
import re
from typing import Any

INJECTED_TAG = "injected-parameters"
TEMPLATE_NAME = "hybridsched_report.html.j2"

# text/plain reprs of matplotlib return values, which say nothing to a reader.
_ARTIST_REPR = re.compile(
    r"^\s*(\[?\s*<matplotlib\.[^>]*>[\s,\]]*|\[?\s*<[A-Za-z]*Axes[^>]*>[\s,\]]*"
    r"|(Text|Legend|Annotation)\(.*\)|\[(Text\(.*\)[,\s]*)+\]|<Figure size [^>]*>)\s*$",
    flags=re.S,
)

_CSS = """
body:not(.hs-show-code) .jp-CodeCell .jp-Cell-inputWrapper { display: none; }
body:not(.hs-show-code) .jp-CodeCell:not(:has(.jp-OutputArea-child)) { display: none; }
.hs-nav { font-family: system-ui, sans-serif; font-size: 0.9em; padding: 0.4em 1em;
  border-bottom: 1px solid #ddd; margin-bottom: 0.5em; display: flex; gap: 1.5em;
  align-items: center; }
.hs-nav button { font: inherit; cursor: pointer; }
.jp-OutputArea-output table { font-variant-numeric: tabular-nums; }
.jp-OutputArea-output caption { caption-side: bottom; text-align: left; color: #444;
  font-size: 0.95em; padding-top: 0.3em; }
.hs-caption { color: #444; font-size: 0.95em; margin: 0.2em 0 1.2em; max-width: 60em; }
.jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { white-space: normal; }
"""

_TEMPLATE = (
    """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}{{ super() }}<style type="text/css">"""
    + _CSS
    + """</style>{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
<nav class="hs-nav">
<a href="{{ resources.hs_nav.index }}">&larr; all reports</a>
<a href="{{ resources.hs_nav.model }}">the model (docs/model.md)</a>
<button type="button" id="hs-toggle-code">show code</button>
</nav>
{%- endblock body_header -%}
{%- block body_footer -%}
<script>
document.getElementById("hs-toggle-code").addEventListener("click", function (ev) {
  var on = document.body.classList.toggle("hs-show-code");
  ev.target.textContent = on ? "hide code" : "show code";
});
</script>
{{ super() }}
{%- endblock body_footer -%}
"""
)


def is_artist_repr(output: Any) -> bool:
    """Whether an ``execute_result`` output is only a matplotlib object's text repr."""
    if output.get("output_type") != "execute_result":
        return False
    data = output.get("data", {})
    if set(data) != {"text/plain"}:
        return False
    text = data["text/plain"]
    text = "".join(text) if isinstance(text, list) else text
    return bool(_ARTIST_REPR.match(text))


_OUT_DIR_LINE = re.compile(r"^out_dir\s*=.*$\n?", flags=re.M)


def clean_notebook(nb: Any) -> Any:
    """A copy of an executed notebook whose injected-parameters cell has no ``out_dir`` line
    (and no outputs), and without outputs that are only matplotlib reprs."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if INJECTED_TAG in cell.get("metadata", {}).get("tags", []):
            cell.source = _OUT_DIR_LINE.sub("", cell.source)
            cell.outputs = []
        elif cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not is_artist_repr(o)]
    return nb


def _exporter():
    import jinja2
    from nbconvert import HTMLExporter

    return HTMLExporter(
        extra_loaders=[jinja2.DictLoader({TEMPLATE_NAME: _TEMPLATE})],
        template_file=TEMPLATE_NAME,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        exclude_anchor_links=True,
    )


def notebook_html(nb: Any, index_href: str = "index.html", model_href: str = "") -> str:
    """The report page of an executed notebook (see the module docstring).

    ``index_href`` and ``model_href`` are the navigation links (relative to the page).
    """
    body, _ = _exporter().from_notebook_node(
        clean_notebook(nb), resources={"hs_nav": {"index": index_href, "model": model_href}}
    )
    return body
