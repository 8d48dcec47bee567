"""Reports: tables, figures and the rendered pages (papermill + nbconvert) of the notebooks.

- ``display`` (tables for reading), ``labels`` (column names with units, value formats),
  ``plots`` (``plot_*(..., ax=None) -> Axes``), ``tables`` (the policy, bound, exact and
  paper-vs-ours tables);
- ``results``: the result files a notebook writes;
- ``rendering`` (execute and convert the notebooks), ``html`` (a page from an executed
  notebook), ``index`` (the reports' index page).

The names below load their module on first use (rendering imports papermill).
"""

from __future__ import annotations

import importlib

_API = {
    "show": "display",
    "show_metrics": "display",
    "show_wide": "display",
    "single_case_table": "display",
    "SINGLE_CASE_FORMATS": "display",
    "policy_table": "tables",
    "bound_table": "tables",
    "exact_table": "tables",
    "paper_vs_ours": "tables",
    "study_table": "tables",
    "study_vs_paper": "tables",
    "results_dir": "results",
    "write_results": "results",
    "repo_commit": "results",
    "claim_from": "results",
    "render": "rendering",
    "RenderError": "rendering",
    "find_notebooks": "rendering",
    "notebook_claim": "rendering",
    "RENDER_JSON": "index",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
