"""Reports: run the notebooks (papermill), convert them to HTML (nbconvert), index them.

``render(out_dir)`` executes every notebook of ``notebooks/`` and writes into ``out_dir``::

    index.html              links, the paper-vs-ours headline, commit and parameters
    <name>.html             the executed notebook
    <name>/                 what the notebook wrote (CSV/JSON) plus render.json
                            (commit, parameters, wall time of the render)

Each notebook runs in a temporary folder inside ``out_dir`` and is moved into place only
when it succeeded, so a report on disk always comes from one complete run. A failing
notebook raises ``RenderError`` (after the others have run) naming it and the failing
cell, and leaves no report for it: a previous report of that notebook is removed too,
since it no longer matches the code.

This module is the notebooks' one entry point, a thin re-export of:

- ``rendering``: ``render``, ``find_notebooks``, ``check_parameters``, ``notebook_claim``,
  ``RenderError``, ``NotebookFailure``;
- ``index_page``: ``write_index`` (the ``index.html``), ``RENDER_JSON``, ``HEADLINE_CSV``;
- ``results_files``: ``results_dir`` and ``write_results`` (the notebooks' last cell),
  ``to_jsonable``, ``repo_commit``;
- ``report_tables``: ``policy_table``, ``bound_table``, ``exact_table``, ``paper_vs_ours``,
  ``study_table`` and ``study_vs_paper``;
- ``display``: how tables read (``show``, ``show_metrics``, ``show_wide``,
  ``single_case_table``); ``htmlexport``: the HTML a notebook becomes.

Notebook contract: a cell tagged ``parameters`` that declares ``smoke`` and ``out_dir``;
``out_dir`` is where the notebook writes its result files (relative paths are resolved
from the repository root by ``results_dir``; ``render`` passes an absolute path).
"""

from __future__ import annotations

from hybridsched.display import (
    SINGLE_CASE_FORMATS,
    show,
    show_metrics,
    show_wide,
    single_case_table,
)
from hybridsched.index_page import HEADLINE_CSV, RENDER_JSON, write_index
from hybridsched.paths import repo_root
from hybridsched.rendering import (
    KERNEL_ARGUMENTS,
    NOTEBOOK_GLOB,
    RENDER_SET,
    NotebookFailure,
    RenderError,
    check_parameters,
    find_notebooks,
    notebook_claim,
    render,
)
from hybridsched.report_tables import (
    SINGLE_CASE_COLUMNS,
    bound_table,
    exact_table,
    paper_vs_ours,
    policy_table,
    study_table,
    study_vs_paper,
)
from hybridsched.results_files import repo_commit, results_dir, to_jsonable, write_results

__all__ = [
    "HEADLINE_CSV",
    "KERNEL_ARGUMENTS",
    "NOTEBOOK_GLOB",
    "RENDER_JSON",
    "RENDER_SET",
    "SINGLE_CASE_COLUMNS",
    "SINGLE_CASE_FORMATS",
    "NotebookFailure",
    "RenderError",
    "bound_table",
    "check_parameters",
    "exact_table",
    "find_notebooks",
    "notebook_claim",
    "paper_vs_ours",
    "policy_table",
    "render",
    "repo_commit",
    "repo_root",
    "results_dir",
    "show",
    "show_metrics",
    "show_wide",
    "single_case_table",
    "study_table",
    "study_vs_paper",
    "to_jsonable",
    "write_index",
    "write_results",
]
