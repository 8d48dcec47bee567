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

The notebook-facing helpers are here too, because they touch files or format the
paper comparison: ``results_dir`` and ``write_results`` (the notebooks' last cell),
``policy_table``, ``bound_table``, ``paper_vs_ours``, ``study_table`` and
``study_vs_paper``; and, re-exported from ``display``, how tables read (``show``,
``show_metrics``, ``show_wide``, ``single_case_table``).

Notebook contract: a cell tagged ``parameters`` that declares ``smoke`` and ``out_dir``;
``out_dir`` is where the notebook writes its result files (relative paths are resolved
from the repository root by ``results_dir``; ``render`` passes an absolute path).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import html
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hybridsched.display import (  # noqa: F401  (re-exported: notebooks call report.show)
    SINGLE_CASE_FORMATS,
    show,
    show_metrics,
    show_wide,
    single_case_table,
)
from hybridsched.paths import repo_root
from hybridsched.sweep import METRIC_COLUMNS

NOTEBOOK_GLOB = "[0-9]*.ipynb"
HEADLINE_CSV = "headline.csv"
RENDER_JSON = "render.json"


# --- errors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NotebookFailure:
    """Where a notebook failed: the cell (index in the executed notebook, which includes
    papermill's injected-parameters cell), its execution count, the exception and the
    first line of the cell's source."""

    notebook: str
    cell_index: int | None
    exec_count: int | None
    ename: str
    evalue: str
    source: str = ""

    def __str__(self) -> str:
        where = "before any cell ran" if self.cell_index is None else f"cell {self.cell_index}"
        if self.exec_count is not None:
            where += f" (execution count {self.exec_count})"
        first = self.source.strip().splitlines()[0] if self.source.strip() else ""
        return f"notebook {self.notebook}: {where} raised {self.ename}: {self.evalue}" + (
            f"\n    in: {first}" if first else ""
        )


class RenderError(RuntimeError):
    """One or more notebooks failed to render; ``failures`` says which and where."""

    def __init__(self, failures: list[NotebookFailure]):
        self.failures = list(failures)
        super().__init__("\n".join(str(f) for f in self.failures))

    @property
    def notebook(self) -> str:
        return self.failures[0].notebook


# --- small helpers ------------------------------------------------------------------------


def repo_commit(root: Path | None = None) -> str:
    """``git rev-parse HEAD`` of the checkout, or ``"unknown"`` (no git, not a checkout).

    Read-only on purpose (no ``git status``, which may take the index lock): uncommitted
    changes are not flagged.
    """
    root = root or repo_root()
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() if head.returncode == 0 and head.stdout.strip() else "unknown"


def results_dir(out_dir: str | os.PathLike) -> Path:
    """The folder a notebook writes its results to, created if missing.

    A relative ``out_dir`` is taken from the repository root, so a notebook writes to the
    same place whatever its working directory (papermill runs it in ``notebooks/``).
    """
    p = Path(out_dir).expanduser()
    p = p if p.is_absolute() else repo_root() / p
    p.mkdir(parents=True, exist_ok=True)
    return p


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays, enums, paths, dataclasses, DataFrames;
    NaN and infinities become None (JSON has no such numbers)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, (list, tuple, set, np.ndarray, pd.Series)):
        return [to_jsonable(v) for v in (obj.tolist() if hasattr(obj, "tolist") else obj)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_results(
    out_dir: str | os.PathLike,
    name: str,
    payload: Mapping,
    tables: Mapping[str, pd.DataFrame] | None = None,
    parameters: Mapping | None = None,
    figures: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``<name>.json`` (payload + notebook parameters + commit), one CSV per table
    and one PNG per matplotlib figure (the README shows one of them).

    The notebooks' last cell calls this with their result objects' ``to_json()``, which
    carry the run parameters, seeds and package versions.

    Returns
    -------
    The paths written, JSON first.
    """
    out = results_dir(out_dir)
    doc = {
        "name": name,
        "written_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "commit": repo_commit(),
        "notebook_parameters": dict(parameters or {}),
        **payload,
    }
    paths = [out / f"{name}.json"]
    _write_atomic(paths[0], json.dumps(to_jsonable(doc), indent=2))
    for key, df in (tables or {}).items():
        p = out / f"{key}.csv"
        df.to_csv(p, index=not isinstance(df.index, pd.RangeIndex))
        paths.append(p)
    for key, fig in (figures or {}).items():
        p = out / f"{key}.png"
        fig.savefig(p, dpi=110, bbox_inches="tight")
        paths.append(p)
    return paths


# --- tables for the notebooks ---------------------------------------------------------------

SINGLE_CASE_COLUMNS = ["policy", *METRIC_COLUMNS, "gap_to_lb", "gap_closed"]


def _table(r: Any) -> pd.DataFrame:
    return r.table if hasattr(r, "table") else r


def policy_table(results: Mapping[str, Any], columns: list[str] | None = None) -> pd.DataFrame:
    """Single-case tables (``SingleCaseResult`` or its ``.table``) stacked, one row per config and policy."""
    cols = columns or SINGLE_CASE_COLUMNS
    parts = [_table(r).reindex(columns=cols).assign(config=name) for name, r in results.items()]
    return pd.concat(parts, ignore_index=True)[["config", *cols]]


def bound_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """``T_LB`` and its parts (seconds) per config, with the admission rule each part assumes.

    ``T_LB`` is the paper's bound (``lower_bound_s``); ``T_LB (tight)`` also counts the
    tight parts (``tight_lower_bound_s``).

    ``results`` maps a config name to a ``SingleCaseResult`` or a ``bounds.LowerBound``.
    """
    from hybridsched.bounds import ASSUMES

    bounds = {name: getattr(r, "bound", r) for name, r in results.items()}
    out = pd.DataFrame({"assumes": pd.Series(ASSUMES)}, dtype=object)
    for name, b in bounds.items():
        out[name] = pd.Series(b.all_parts(), dtype=object)
    out.loc["T_LB"] = {
        "assumes": "the largest part but volume_tight and small_packing",
        **{n: b.lower_bound_s for n, b in bounds.items()},
    }
    out.loc["binding"] = {"assumes": "", **{n: b.binding for n, b in bounds.items()}}
    out.loc["T_LB (tight)"] = {
        "assumes": "the largest part",
        **{n: b.tight_lower_bound_s for n, b in bounds.items()},
    }
    out.index.name = "part"
    return out


def exact_table(
    schedules: Mapping[str, Mapping], bound: Any, optimum: str = "exact MIP"
) -> pd.DataFrame:
    """The exact MIP's optimum beside each policy's schedule and ``T_LB`` (one tiny instance).

    ``schedules`` maps a name to its ``metrics.metrics`` dict and includes ``optimum``,
    the MIP schedule's replay. Columns: ``policy``, ``makespan_s``, ``utilization``,
    ``gap_to_optimum`` ``(T - T*) / T*``, ``lower_bound_s`` and ``certified``, which says
    ``T_LB <= T* <= T`` holds (up to 1e-9 relative).
    """
    if optimum not in schedules:
        raise ValueError(
            f"exact_table: no {optimum!r} among the schedules ({', '.join(schedules)})"
        )
    lb = float(getattr(bound, "lower_bound_s", bound))
    out = pd.DataFrame(
        [
            {
                "policy": p,
                "makespan_s": float(m["makespan_s"]),
                "utilization": float(m["utilization"]),
            }
            for p, m in schedules.items()
        ]
    )
    t_opt = float(schedules[optimum]["makespan_s"])
    tol = 1e-9 * max(1.0, t_opt)
    out["gap_to_optimum"] = (out["makespan_s"] - t_opt) / t_opt
    out["lower_bound_s"] = lb
    out["certified"] = (lb <= t_opt + tol) & (out["makespan_s"] >= t_opt - tol)
    return out


def _row_of(table: pd.DataFrame, policy: str) -> pd.Series:
    rows = table[table["policy"] == policy]
    if rows.empty:
        raise ValueError(
            f"policy {policy!r} not in the table (have {', '.join(map(str, table['policy']))})"
        )
    return rows.iloc[0]


def _single_case_headline(b: Mapping, h: Mapping, lb: float) -> dict[str, float]:
    tb, th = float(b["makespan_s"]), float(h["makespan_s"])
    ub, uh = float(b["utilization"]), float(h["utilization"])
    return {
        "U baseline (%)": 100 * ub,
        "U hybrid (%)": 100 * uh,
        "U gain (pp)": 100 * (uh - ub),
        "makespan baseline (s)": tb,
        "makespan hybrid (s)": th,
        "makespan reduction (%)": 100 * (tb - th) / tb,
        "T_LB (s)": lb,
        "gap to T_LB, baseline (%)": 100 * (tb - lb) / lb,
        "gap to T_LB, hybrid (%)": 100 * (th - lb) / lb,
        "share of the baseline's gap closed (%)": 100 * (tb - th) / (tb - lb)
        if tb > lb
        else math.nan,
        "mean batch, baseline": float(b.get("mean_batch", math.nan)),
        "mean batch, hybrid": float(h.get("mean_batch", math.nan)),
    }


def paper_vs_ours(
    results: Mapping[str, Any], baseline: str = "baseline", policy: str = "hybrid"
) -> pd.DataFrame:
    """The single-case headline: the paper's numbers (``experiments.PAPER``) beside ours.

    One row per metric; columns ``paper`` and one per config of ``results`` (name ->
    ``SingleCaseResult`` or its table, which carries ``lower_bound_s``). Makespans are
    in seconds on each side's own hardware model, so compare ratios, gaps and shares,
    not seconds.
    """
    from hybridsched.experiments import PAPER

    paper = _single_case_headline(
        {"makespan_s": PAPER["baseline_makespan_s"], "utilization": PAPER["baseline_utilization"]},
        {"makespan_s": PAPER["hybrid_makespan_s"], "utilization": PAPER["hybrid_utilization"]},
        PAPER["lower_bound_s"],
    )
    out = pd.DataFrame({"paper": pd.Series(paper)})
    for name, r in results.items():
        t = _table(r)
        lb = float(_row_of(t, baseline)["lower_bound_s"])
        out[name] = pd.Series(_single_case_headline(_row_of(t, baseline), _row_of(t, policy), lb))
    out.index.name = "metric"
    return out


def study_table(studies: Mapping[str, Any]) -> pd.DataFrame:
    """Study summaries (``StudyResult.summary``) stacked, one row per config and policy."""
    parts = [s.summary.assign(config=name) for name, s in studies.items()]
    df = pd.concat(parts, ignore_index=True)
    return df[["config", *[c for c in df.columns if c != "config"]]]


def study_vs_paper(
    studies: Mapping[str, Any], baseline: str = "baseline", policy: str = "hybrid"
) -> pd.DataFrame:
    """The 100-case headline: mean/min/max U gain, wins and makespan reduction, beside the paper.

    The paper reports only the mean gain (+8.0 pp) and "consistent wins"; other paper
    cells are empty.
    """
    from hybridsched.experiments import PAPER

    rows = {
        "cases": math.nan,
        "mean U baseline (%)": math.nan,
        "mean U hybrid (%)": math.nan,
        "mean U gain (pp)": PAPER["study_mean_utilization_gain_pp"],
        "min U gain (pp)": math.nan,
        "max U gain (pp)": math.nan,
        "hybrid wins (cases)": math.nan,
        "mean makespan reduction (%)": math.nan,
        "mean gap to T_LB, baseline (%)": math.nan,
        "mean gap to T_LB, hybrid (%)": math.nan,
    }
    out = pd.DataFrame({"paper": pd.Series(rows)})
    for name, s in studies.items():
        summ = s.summary.set_index("policy")
        b, h = summ.loc[baseline], summ.loc[policy]
        out[name] = pd.Series(
            {
                "cases": h["num_cases"],
                "mean U baseline (%)": 100 * b["utilization_mean"],
                "mean U hybrid (%)": 100 * h["utilization_mean"],
                "mean U gain (pp)": h["utilization_gain_pp_mean"],
                "min U gain (pp)": h["utilization_gain_pp_min"],
                "max U gain (pp)": h["utilization_gain_pp_max"],
                "hybrid wins (cases)": h["wins"],
                "mean makespan reduction (%)": 100 * h["makespan_reduction_mean"],
                "mean gap to T_LB, baseline (%)": 100 * b["gap_to_lb_mean"],
                "mean gap to T_LB, hybrid (%)": 100 * h["gap_to_lb_mean"],
            }
        )
    out["note"] = ["", "", "", "", "", "", 'paper: "consistent wins"', "", "", ""]
    out.index.name = "metric"
    return out


# --- rendering -------------------------------------------------------------------------------


def find_notebooks(
    names: Iterable[str] | None = None, notebooks_dir: str | os.PathLike | None = None
) -> list[Path]:
    """The notebooks to render: all ``NN_*.ipynb`` of ``notebooks_dir`` (sorted), or the named ones.

    A name may be a stem (``01_single_case``), a file name or a path.
    """
    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else repo_root() / "notebooks"
    available = sorted(nb_dir.glob(NOTEBOOK_GLOB))
    if names is None:
        if not available:
            raise ValueError(f"no notebooks matching {NOTEBOOK_GLOB} in {nb_dir}")
        return available
    out = []
    for n in names:
        p = Path(n)
        if p.suffix == ".ipynb" and p.exists():
            out.append(p.resolve())
            continue
        cand = nb_dir / (p.name if p.suffix == ".ipynb" else f"{p.name}.ipynb")
        if not cand.exists():
            raise ValueError(
                f"unknown notebook {n!r}; available: {', '.join(a.stem for a in available) or 'none'}"
            )
        out.append(cand)
    return out


def notebook_claim(path: Path) -> str:
    """The one-line claim the index shows for a notebook: its ``hybridsched.claim`` metadata,
    else its first Markdown heading."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    claim = nb.metadata.get("hybridsched", {}).get("claim")
    if claim:
        return str(claim)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def _declared(path: Path) -> set[str]:
    import papermill as pm

    return set(pm.inspect_notebook(str(path)))


# The kernel's own log is silenced (CRITICAL only): its start-up warning about unencrypted
# local TCP and the "KeyboardInterrupt caught in kernel" line of jupyter_client's
# interrupt-then-shutdown sequence say nothing about the report and would read as problems
# in the log of a successful render. A failing cell still reaches the render through
# papermill (RenderError names the notebook and the cell).
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]


def _model_href(out: Path) -> str:
    """The link from a report in ``out`` to docs/model.md (relative, so the folder can move
    with the checkout)."""
    return Path(os.path.relpath(repo_root() / "docs" / "model.md", out)).as_posix()


RENDER_SET = {"smoke": "use --smoke (render(smoke=True))", "out_dir": "render sets it from --out"}


def check_parameters(extra: Mapping[str, Any], declared: Mapping[Path, Iterable[str]]) -> None:
    """Refuse a parameter that no selected notebook declares in its ``parameters`` cell (the
    message lists the ones they do declare) or one that ``render`` sets itself."""
    for name in extra:
        if name in RENDER_SET:
            raise ValueError(f"parameter {name!r}: {RENDER_SET[name]}")
    known = set().union(*map(set, declared.values())) - set(RENDER_SET)
    unknown = sorted(set(extra) - known)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for {', '.join(p.stem for p in declared)}; "
            f"known: {', '.join(sorted(known)) or 'none'}"
        )


def _execute(path: Path, work: Path, params: dict, timeout_s: float | None, out: Path) -> Path:
    """Run one notebook with papermill into ``work``; raise RenderError on failure; the HTML path
    (written by ``htmlexport.notebook_html`` with links valid once moved into ``out``)."""
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from hybridsched.htmlexport import notebook_html

    name = path.stem
    executed = work / f"{name}.ipynb"
    try:
        pm.execute_notebook(
            str(path),
            str(executed),
            parameters=params,
            kernel_name="python3",
            cwd=str(path.parent),
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=False,
            execution_timeout=timeout_s,
            extra_arguments=KERNEL_ARGUMENTS,
        )
    except PapermillExecutionError as e:
        raise RenderError(
            [NotebookFailure(name, e.cell_index, e.exec_count, e.ename, str(e.evalue), e.source)]
        ) from e
    except Exception as e:  # kernel died, timeout, bad notebook file: still this notebook's failure
        raise RenderError([NotebookFailure(name, None, None, type(e).__name__, str(e))]) from e
    nb = nbformat.read(str(executed), as_version=4)
    body = notebook_html(nb, index_href="index.html", model_href=_model_href(out))
    html_path = work / f"{name}.html"
    html_path.write_text(body, encoding="utf-8")
    return html_path


def _remove(*paths: Path) -> None:
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()


def render(
    out_dir: str | os.PathLike = "reports",
    smoke: bool = False,
    notebooks: Iterable[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    progress: bool = True,
    notebooks_dir: str | os.PathLike | None = None,
    keep_ipynb: bool = False,
    timeout_s: float | None = None,
) -> list[Path]:
    """Execute the notebooks and write their HTML reports, result files and ``index.html``.

    Parameters
    ----------
    out_dir : where reports go (relative to the working directory); created if missing.
    smoke : passed to every notebook: a small, fast run for CI and tests.
    notebooks : names to render (default: every ``NN_*.ipynb`` in ``notebooks_dir``).
    parameters : more papermill parameters; each goes to the notebooks that declare it.
    progress : print a line per notebook.
    notebooks_dir : where the notebooks are (default: the repository's ``notebooks/``).
    keep_ipynb : also keep the executed notebook as ``<name>/<name>.ipynb``.
    timeout_s : per-cell execution time limit (None: no limit).

    Returns
    -------
    The HTML reports written, in order, then ``index.html``.

    Raises
    ------
    RenderError : a notebook failed (the others still render); names it and the cell.
    ValueError : an unknown notebook, or a parameter that no selected notebook declares.
    """
    paths = find_notebooks(notebooks, notebooks_dir)
    out = Path(out_dir).expanduser().resolve()
    extra = dict(parameters or {})
    declared = {p: _declared(p) for p in paths}
    check_parameters(extra, declared)
    out.mkdir(parents=True, exist_ok=True)
    commit = repo_commit()
    written: list[Path] = []
    failures: list[NotebookFailure] = []
    for k, path in enumerate(paths, 1):
        name = path.stem
        tag = f"[{k}/{len(paths)}] {name}"
        if progress:
            print(f"{tag}: running", flush=True)
        t0 = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix=f".render-{name}-", dir=out))
        try:
            results = work / name
            results.mkdir()
            params = {key: v for key, v in extra.items() if key in declared[path]}
            params.update(smoke=bool(smoke), out_dir=str(results))
            try:
                html_tmp = _execute(path, work, params, timeout_s, out)
            except RenderError as e:
                failures.extend(e.failures)
                # A stale report of this notebook would not match this code: drop it.
                _remove(out / f"{name}.html", out / name)
                if progress:
                    print(f"{tag}: FAILED after {time.perf_counter() - t0:.1f} s", flush=True)
                continue
            wall = time.perf_counter() - t0
            if keep_ipynb:
                os.replace(work / f"{name}.ipynb", results / f"{name}.ipynb")
            meta = {
                "notebook": name,
                "html": f"{name}.html",
                "claim": notebook_claim(path),
                "commit": commit,
                "smoke": bool(smoke),
                "parameters": params | {"out_dir": f"{name}/"},
                "rendered_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "wall_s": round(wall, 2),
            }
            (results / RENDER_JSON).write_text(
                json.dumps(to_jsonable(meta), indent=2), encoding="utf-8"
            )
            old = work / "old"
            old.mkdir()
            if (out / name).exists():
                os.replace(out / name, old / name)
            os.replace(results, out / name)
            os.replace(html_tmp, out / f"{name}.html")
            written.append(out / f"{name}.html")
            if progress:
                print(f"{tag}: ok in {wall:.1f} s -> {out / f'{name}.html'}", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    written.append(
        write_index(
            out, commit=commit, run={"smoke": bool(smoke), "parameters": extra}, failures=failures
        )
    )
    if failures:
        raise RenderError(failures)
    return written


# --- index -----------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
code { background: #f4f4f4; padding: 0 0.2em; }
.failed { color: #b00; }
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:,.2f}"
    return str(v)


def _csv_table(path: Path) -> str:
    """A headline CSV (one row per metric) as HTML, each row in its unit, the paper's
    missing numbers "not reported"."""
    from hybridsched.display import metrics_frame

    df = pd.read_csv(path, index_col=0)
    return metrics_frame(df).to_html(index=False, border=0, na_rep="")


def write_index(
    out_dir: str | os.PathLike,
    commit: str | None = None,
    run: Mapping | None = None,
    failures: list[NotebookFailure] = (),
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
    model = _model_href(out.resolve())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>hybridsched reports</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>hybridsched reports</h1>",
        "<p>Reproducing <i>Hybrid Offline-online Scheduling Method for Large Language Model Inference "
        "Optimization</i> (arXiv:2502.15763) in an iteration-level simulator. The model every "
        f"report uses is specified in <a href='{e(model)}'>docs/model.md</a>.</p>",
        f"<p>Commit <code>{e(commit or repo_commit())}</code>; this render: "
        f"<code>{e(json.dumps(to_jsonable(run or {})))}</code>; written "
        f"{_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}.</p>",
    ]
    parts.append("<h2>Reports</h2><ul class='claims'>")
    for m in metas:
        claim = m.get("claim", "")
        parts.append(
            f"<li><a href='{e(m['html'])}'>{e(m['notebook'])}</a>"
            + (f": {e(claim)}" if claim else "")
            + ("" if not m.get("smoke") else " <i>(smoke run)</i>")
            + "</li>"
        )
    parts.append("</ul>")
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
    parts.append(
        "<h2>Render details</h2><table><tr><th>notebook</th><th>results</th><th>smoke</th>"
        "<th>commit</th><th>parameters</th><th>rendered</th><th>wall (s)</th></tr>"
    )
    for m in metas:
        n = m["notebook"]
        params = {k: v for k, v in m.get("parameters", {}).items() if k not in ("smoke", "out_dir")}
        parts.append(
            f"<tr><td><a href='{e(m['html'])}'>{e(n)}</a></td><td><a href='{e(n)}/'>{e(n)}/</a></td>"
            f"<td>{e(_fmt(m.get('smoke')))}</td><td><code>{e(str(m.get('commit', ''))[:12])}</code></td>"
            f"<td><code>{e(json.dumps(params))}</code></td><td>{e(str(m.get('rendered_at', '')))}</td>"
            f"<td>{e(_fmt(m.get('wall_s', '')))}</td></tr>"
        )
    for f in failures:
        parts.append(
            f"<tr class='failed'><td>{e(f.notebook)}</td><td colspan='6'>FAILED: {e(str(f))}</td></tr>"
        )
    parts.append("</table></body></html>")
    path = out / "index.html"
    _write_atomic(path, "\n".join(parts))
    return path
