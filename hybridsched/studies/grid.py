"""Sweep grids: a YAML mapping of option names to values, and running it on an engine.

A grid maps a cell option (``cells.DEFAULTS``: the CLI's option names, underscored) to
a list of values or to a scalar (held fixed); its cells are the Cartesian product, in
the file's key order::

    workload: gsm8k
    num_requests: 200
    clients: [2, 4]
    tp: 4
    policy: [baseline, hybrid]
    seed: [1, 2]          # 2 x 2 x 2 = 8 cells

``expand_grid`` raises on an unknown name (listing the known ones), an empty list, an
unknown policy, model or hardware profile, or a bad value; a cluster that cannot exist
(a ``tp`` whose GPUs cannot hold the model) is skipped and counted, not an error.

``run_sweep(grid, out, ...)`` runs every cell not already done in ``out``
(``store.ResultStore``) with ``cells.run_cell`` on a ``jobs.executor.Executor``, saving rows as
they finish, and writes ``out/sweep.json`` (grid, counts, engine, versions; all or nothing,
its target checked before any cell runs). Workload tables are loaded once and sent to each
worker once.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from hybridsched.jobs.executor import Executor, JobError
from hybridsched.jobs.staging import check_targets, staged_output
from hybridsched.jobs.store import ResultStore
from hybridsched.studies.cells import CLUSTER_KEYS, DTYPES, cell_id, cluster_of, resolve, run_cell
from hybridsched.studies.config import DEFAULTS, unknown_error


def load_grid(path: str | os.PathLike) -> dict:
    """The grid in a YAML file: a mapping of option names to values or lists of values."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"grid: {p} does not exist")
    try:
        grid = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"grid: {p} is not a text file (byte {e.start} is not UTF-8)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"grid: {p} is not valid YAML{where}: {problem}") from None
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"grid: {p} must be a non-empty mapping of option names to values")
    return grid


@dataclass
class Cells:
    """A grid's runnable cells (resolved) and the skipped ones with their reasons."""

    cells: list[dict]
    skipped: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cells)


def _check_profiles(grid: dict) -> None:
    from hybridsched.latency.profiles import load_hardware_profile, load_model_profile

    for key, load in (("model", load_model_profile), ("hardware", load_hardware_profile)):
        for v in grid.get(key, [DEFAULTS[key]]):
            try:
                load(str(v))
            except ValueError as e:
                raise ValueError(f"grid: {key}={v!r}: {e}") from None


def expand_grid(grid: dict) -> Cells:
    """The cells of ``grid`` (module docstring), invalid clusters skipped and counted."""
    unknown = set(grid) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"grid: {unknown_error(unknown)}")
    lists = {}
    for k, v in grid.items():
        vals = list(v) if isinstance(v, (list, tuple)) else [v]
        if not vals:
            raise ValueError(f"grid: {k} has no values")
        lists[k] = vals
    _check_profiles(lists)
    keys = list(lists)
    valid: dict[tuple, str | None] = {}
    out = Cells([])
    for values in itertools.product(*(lists[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        try:
            p = resolve(point)
        except ValueError as e:
            raise ValueError(f"grid: cell {point}: {e}") from None
        ckey = tuple(p[k] for k in CLUSTER_KEYS)
        if ckey not in valid:
            try:
                cluster_of(p).make_clients()
                valid[ckey] = None
            except ValueError as e:
                valid[ckey] = str(e)
        if valid[ckey] is None:
            out.cells.append(p)
        else:
            out.skipped.append({**point, "reason": valid[ckey]})
    return out


def _cell_job(params: dict, tables) -> dict:
    return run_cell(params, tables)


def workload_tables(cells: list[dict]) -> dict:
    """Each distinct workload's table, loaded once (sent to workers once)."""
    from hybridsched.workloads.tables import requests_for

    names = sorted({c["workload"] for c in cells})
    return {w: requests_for(w) for w in names}


@dataclass
class SweepResult:
    table: pd.DataFrame  # every row in the results directory
    counts: dict
    skipped: list[dict]
    wall_s: float


def run_cells(
    cells: list[dict],
    engine: Executor,
    store: ResultStore | None = None,
    flush_every: int = 50,
    flush_s: float = 10.0,
    desc: str = "cells",
    tables: dict | None = None,
) -> list[dict]:
    """Run ``cells`` on an entered ``engine``; rows in cell order, saved to ``store`` as they come.

    ``tables``: the workloads' tables (default: ``workload_tables(cells)``), sent once.
    """
    if tables is None and cells:
        tables = workload_tables(cells)
    buffer: list[dict] = []
    last = [time.monotonic()]

    def flush() -> None:
        if store is not None and buffer:
            store.append(buffer)
        buffer.clear()
        last[0] = time.monotonic()

    def on_result(i: int, r) -> None:
        buffer.append(_row(cells[i], r))
        if len(buffer) >= flush_every or time.monotonic() - last[0] >= flush_s:
            flush()

    try:
        results = engine.map(
            _cell_job,
            cells,
            shared=tables,
            on_result=on_result,
            desc=desc,
            failed=lambda r: isinstance(r, dict) and r.get("status") != "ok",
        )
    finally:
        flush()  # also on Ctrl-C: what finished is kept
    return [_row(c, r) for c, r in zip(cells, results, strict=True)]


def _row(params: dict, r) -> dict:
    if isinstance(r, JobError):  # the worker itself failed, not the cell's code
        return {**params, "cell_id": cell_id(params), "status": "failed", "error": r.error}
    return r


def run_sweep(
    grid: dict,
    out: str | os.PathLike,
    engine: str = "dask",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run the grid's cells not yet done in ``out`` (module docstring)."""
    from hybridsched.provenance import versions

    cells = expand_grid(grid)
    check_targets(out, ["sweep.json"], ["cells.parquet"])  # before any cell runs
    store = ResultStore(out, DTYPES)
    done = store.done_ids()
    todo = [c for c in cells.cells if cell_id(c) not in done]
    t0 = time.perf_counter()
    eng = Executor(engine, workers, scheduler, progress=progress)
    rows: list[dict] = []
    if todo:
        tables = workload_tables(todo)  # bad workloads fail here, before any worker starts
        with eng:
            rows = run_cells(todo, eng, store, tables=tables)
    wall = time.perf_counter() - t0
    counts = {
        "cells": len(cells) + len(cells.skipped),
        "invalid_skipped": len(cells.skipped),
        "already_done": len(cells) - len(todo),
        "ran": len(rows),
        "failed": sum(r.get("status") != "ok" for r in rows),
    }
    summary = {
        "grid": grid,
        "counts": counts,
        "invalid": cells.skipped,
        **eng.describe(),
        "wall_s": wall,
        "versions": versions(),
    }
    with staged_output(out, ["sweep.json"]) as stage:
        stage.path("sweep.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return SweepResult(store.load(), counts, cells.skipped, wall)
