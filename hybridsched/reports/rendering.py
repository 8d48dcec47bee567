"""Rendering: run the notebooks (papermill), convert them to HTML (nbconvert), index them.

See ``report`` for the layout ``render`` writes and the notebook contract.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridsched.paths import repo_root
from hybridsched.reports.index import RENDER_JSON, model_href, write_index
from hybridsched.reports.results import repo_commit, to_jsonable

NOTEBOOK_GLOB = "[0-9]*.ipynb"


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
    """The line ``render`` records for a notebook, which the index shows only when the
    notebook's results carry no ``claim`` (``index.results_claim``): its first Markdown
    heading without the notebook's number.

    A claim is generated from the results, never typed: notebook metadata is not read.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):  # "# 05 · A latency model" -> "A latency model"
                    return re.sub(r"^\d+\s*·\s*", "", line.lstrip("#").strip())
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


RENDER_SET = {"smoke": "use --smoke (render(smoke=True))", "out_dir": "render sets it from --out"}


# Earlier names of notebook parameters, still accepted: the notebooks speak RunConfig's names.
ALIASES = {"time_limit_s": "time_limit"}


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


def _execute(
    path: Path, work: Path, params: dict, timeout_s: float | None, out: Path, progress: bool = False
) -> Path:
    """Run one notebook with papermill into ``work``; raise RenderError on failure; the HTML path
    (written by ``htmlexport.notebook_html`` with links valid once moved into ``out``)."""
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from hybridsched.reports.html import notebook_html

    name = path.stem
    executed = work / f"{name}.ipynb"
    try:
        pm.execute_notebook(
            str(path),
            str(executed),
            parameters=params,
            kernel_name="python3",
            cwd=str(path.parent),
            progress_bar=progress,  # one tick per cell, on stderr
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
    body = notebook_html(nb, index_href="index.html", model_href=model_href(out))
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
    publish_to: str | os.PathLike | None = None,
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
    publish_to : where reports, results and ``index.html`` go (default ``out_dir``): a folder
        beside ``out_dir`` whose entries the caller moves in, and removes failed ones' reports.

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
    extra = {ALIASES.get(k, k): v for k, v in (parameters or {}).items()}
    declared = {p: _declared(p) for p in paths}
    check_parameters(extra, declared)
    pub = out if publish_to is None else Path(publish_to).expanduser().resolve()
    pub.mkdir(parents=True, exist_ok=True)
    commit = repo_commit()
    written: list[Path] = []
    failures: list[NotebookFailure] = []
    for k, path in enumerate(paths, 1):
        params = {key: v for key, v in extra.items() if key in declared[path]}
        job = _Job(path, f"[{k}/{len(paths)}] {path.stem}", params, out, commit, bool(smoke), pub)
        html = _render_one(job, keep_ipynb, timeout_s, progress, failures)
        if html is not None:
            written.append(html)
    run = {"smoke": bool(smoke), "parameters": extra}
    _index_with_kept(out, pub, commit=commit, run=run, failures=failures)
    written.append(out / "index.html")
    if failures:
        raise RenderError(failures)
    return written


@dataclass(frozen=True)
class _Job:
    """One notebook to render: its path, progress tag, parameters and destination."""

    path: Path
    tag: str
    params: dict
    out: Path
    commit: str | None
    smoke: bool
    publish: Path  # where the report is moved (``out``, or a staging folder beside it)


def _render_one(job: _Job, keep_ipynb, timeout_s, progress, failures) -> Path | None:
    """Execute and publish one notebook; its HTML path, or None (its failure in ``failures``)."""
    name, out = job.path.stem, job.out
    if progress:
        print(f"{job.tag}: running", flush=True)
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".render-{name}-", dir=job.publish))
    try:
        results = work / name
        results.mkdir()
        params = {**job.params, "smoke": job.smoke, "out_dir": str(results)}
        try:
            html_tmp = _execute(job.path, work, params, timeout_s, out, progress)
        except RenderError as e:
            failures.extend(e.failures)
            # A stale report of this notebook would not match this code: drop it.
            _remove(job.publish / f"{name}.html", job.publish / name)
            if progress:
                print(f"{job.tag}: FAILED after {time.perf_counter() - t0:.1f} s", flush=True)
            return None
        wall = time.perf_counter() - t0
        _publish(job, work, html_tmp, params, wall, keep_ipynb)
        if progress:
            print(f"{job.tag}: ok in {wall:.1f} s -> {out / f'{name}.html'}", flush=True)
        return out / f"{name}.html"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _publish(job: _Job, work, html_tmp, params, wall, keep_ipynb) -> None:
    """Write a rendered notebook's ``render.json`` and move its results folder and HTML from
    ``work`` into ``job.publish`` (each by rename, replacing the previous report)."""
    path, out, commit, smoke = job.path, job.publish, job.commit, job.smoke
    name = path.stem
    results = work / name
    if keep_ipynb:
        os.replace(work / f"{name}.ipynb", results / f"{name}.ipynb")
    meta = {
        "notebook": name,
        "html": f"{name}.html",
        "claim": notebook_claim(path),
        "commit": commit,
        "smoke": smoke,
        "parameters": params | {"out_dir": f"{name}/"},
        "rendered_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wall_s": round(wall, 2),
    }
    (results / RENDER_JSON).write_text(json.dumps(to_jsonable(meta), indent=2), encoding="utf-8")
    old = work / "old"
    old.mkdir()
    if (out / name).exists():
        os.replace(out / name, old / name)
    os.replace(results, out / name)
    os.replace(html_tmp, out / f"{name}.html")


def _index_with_kept(out: Path, pub: Path, **index) -> None:
    """``index.html`` in ``pub`` over the reports published there and those ``out`` keeps (not
    rendered again, not failed now), each linked into ``pub`` while the index is written.
    ``pub`` is ``out`` or beside it, so the index's relative links are those of ``out``."""
    failed = {f.notebook for f in index.get("failures", ())}
    links: list[Path] = []
    try:
        for meta in sorted(out.glob(f"*/{RENDER_JSON}")):
            name = meta.parent.name
            if name in failed or os.path.lexists(pub / name):
                continue
            for entry in (name, f"{name}.html"):
                if os.path.lexists(out / entry) and not os.path.lexists(pub / entry):
                    with contextlib.suppress(OSError):  # no symbolic links: left out of the index
                        (pub / entry).symlink_to(out / entry)
                        links.append(pub / entry)
        write_index(pub, **index)
    finally:
        for link in links:
            link.unlink(missing_ok=True)
