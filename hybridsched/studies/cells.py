"""One simulation from a flat dict of options: the unit of every sweep (docs/model.md section 12).

A *cell* is a mapping from option names (the CLI's, underscored) to values; ``DEFAULTS``
lists every known name and its default. ``simulate_cell(params)`` runs the cell exactly
as ``python -m hybridsched simulate`` does (the CLI calls it), and ``run_cell(params)``
flattens the outcome into one result row: the resolved parameters, ``cell_id``,
``status`` (``ok`` or ``failed``), ``error``, the metrics of ``metrics.metrics``, the SLO
columns, ``offline_status``, ``wall_s`` and ``versions`` (JSON). A failing cell is a row
with its error, never an exception.

A run: the request table (``workload``: ``gsm8k`` or a CSV path; a seeded sample of
``num_requests``; predicted lengths with ``prediction_sigma``), arrivals
(``arrivals.apply_arrivals`` seeded by ``seed``, then times divided by ``rate_scale``),
the cluster (``model``, ``hardware``, ``clients``, ``tp``, ``max_batch``, ``latency``),
then the named ``policy`` through ``studies.run.run_policy``. ``router`` and
``admission`` are passed to ``run_policy`` only when set (``None`` is the engine's
default), so the cell works with simulators that do not know them yet. With ``slo_ttft``
and ``slo_tpot`` set (seconds), the row gets ``slo_attainment`` (share of requests that
meet both) and ``goodput_rps`` (requests meeting the SLO per second of makespan).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import traceback
from dataclasses import dataclass

import pandas as pd

from hybridsched.instance import DEFAULT_PREFILL_BUDGET_TOKENS, Cluster, Instance, make_instance
from hybridsched.studies.config import DEFAULTS, FLOAT_OPTIONS, INT_OPTIONS, NAMES, RunConfig
from hybridsched.studies.run import run_policy
from hybridsched.workloads.arrivals import apply_arrivals
from hybridsched.workloads.prefixes import with_shared_prefix
from hybridsched.workloads.tables import requests_for

# Every option a cell knows, with its default: RunConfig's (config.py).
KNOWN = NAMES
CLUSTER_KEYS = ("model", "hardware", "clients", "tp", "max_batch", "latency")
# The options a cell's id has always hashed; a newer option enters the hash only when it is
# set away from its default, so the ids of earlier sweeps (and their resume) stay valid.
ID_KEYS = NAMES[: NAMES.index("check") + 1]
_STRINGS = ("cell_id", "status", "error", "offline_status", "versions")
# Column types of a result row's parameter and bookkeeping columns (stable across Parquet parts).
DTYPES = {
    **{
        k: "string"
        for k in DEFAULTS
        if k not in (*INT_OPTIONS, *FLOAT_OPTIONS, "check", "async_scheduling", "prefix_caching")
    },
    **{k: "Int64" for k in INT_OPTIONS},
    **{k: "float64" for k in FLOAT_OPTIONS},
    "check": "boolean",
    "async_scheduling": "boolean",
    "prefix_caching": "boolean",
    **{k: "string" for k in _STRINGS},
}


def resolve(params: dict) -> dict:
    """``params`` over ``DEFAULTS``, numbers coerced; raises naming an unknown or bad option."""
    return RunConfig.from_dict(params).to_dict()


@functools.cache
def _versions() -> str:
    from hybridsched.provenance import versions

    return json.dumps(versions(), sort_keys=True)


def cell_id(params: dict) -> str:
    """A stable id of a resolved cell: the same options give the same id across runs."""
    keys = [*ID_KEYS, *(k for k in NAMES[len(ID_KEYS) :] if params.get(k) != DEFAULTS[k])]
    text = json.dumps({k: params[k] for k in keys}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def cluster_of(p: dict) -> Cluster:
    return RunConfig(**p).cluster()


def requests_of(p: dict, tables: dict | None = None) -> pd.DataFrame:
    """The cell's request table with arrivals; ``tables`` maps workloads to preloaded tables.

    The workload options (``format``, ``window``, ``rate_scale``, ``max_requests``,
    ``fit_context``, ``max_context``: docs/model.md "Workloads") shape a named workload or
    a file; ``max_context`` defaults to the model profile's context length. ``rate_scale``
    divides every arrival time (a trace's own, or a process's) by ``X``: ``X`` times the load.
    """
    from hybridsched.latency.profiles import load_model_profile

    w = p["workload"]
    src = (tables or {}).get(w)
    max_context = p["max_context"]
    if max_context is None:
        max_context = getattr(load_model_profile(str(p["model"])), "max_context", None)
    opts = {
        "format": p["format"],
        "window": p["window"],
        "max_requests": p["max_requests"],
        "max_context": max_context,
        "fit_context": p["fit_context"],
    }
    if src is None:
        src = w  # else a preloaded table, shaped by the same options (load_workload)
    df = requests_for(
        src,
        p["num_requests"],
        p["seed"],
        p["prediction_sigma"] or 0.0,
        p["prediction_seed"],
        opts,
        predictor=p["predictor"],
    )
    info = df.attrs.get("workload")
    seed = p["seed"] if p["arrival_seed"] is None else p["arrival_seed"]
    df = apply_arrivals(df, p["arrivals"], seed)
    if p["rate_scale"] != 1.0:  # X times the load: every arrival time divided by X
        df = df.assign(arrival_s=df["arrival_s"] / p["rate_scale"])
    if p["shared_prefix"]:
        df = with_shared_prefix(df, p["shared_prefix"])
    if info:
        df.attrs["workload"] = info
    return df


@dataclass
class CellRun:
    """A cell's resolved parameters, its instance, the run (trace, metrics) and the SLO columns."""

    params: dict
    instance: Instance
    run: object  # experiments.RunResult
    slo: dict
    workload: dict | None = None


def slo_columns(p: dict, run) -> dict:
    """``slo_attainment`` and ``goodput_rps`` of the run (NaN when no SLO is set)."""
    return {k: run.metrics[k] for k in ("slo_attainment", "goodput_rps")}


def _metrics_row(c: CellRun) -> dict:
    return {**c.run.metrics, **c.slo}


def simulate_cell(
    params: dict, tables: dict | None = None, on_instance=None, progress=None
) -> CellRun:
    """Run one cell (module docstring); raises ``ValueError`` on bad options.

    ``on_instance(instance)``, when given, is called once the instance is built, before the
    run (the command line starts the bound beside the simulation there); ``progress``
    follows the run (``run_policy``)."""
    p = resolve(params)
    reqs = requests_of(p, tables)
    info = reqs.attrs.get("workload")
    config = RunConfig(**p)
    instance = make_instance(
        reqs,
        config.cluster(),
        config.token_budget or DEFAULT_PREFILL_BUDGET_TOKENS,
        p["max_context"],
    )
    if on_instance is not None:
        on_instance(instance)
    run = run_policy(
        instance,
        str(p["policy"]),
        config.knobs(),
        config.solve(),
        check=bool(p["check"]),
        router=p["router"],
        admission=p["admission"],
        slo_ttft_s=p["slo_ttft"],
        slo_tpot_s=p["slo_tpot"],
        progress=progress,
        kv=config.kv(),
    )
    return CellRun(p, instance, run, slo_columns(p, run), info)


def run_cell(params: dict, tables: dict | None = None) -> dict:
    """One result row (module docstring); a failure is a row with ``status='failed'``."""
    t0 = time.perf_counter()
    try:
        p = resolve(params)
    except Exception as e:  # an unresolvable cell still gets a row, with what it was given
        p = {**DEFAULTS, **{k: v for k, v in params.items() if k in DEFAULTS}}
        return _failed(p, e, t0)
    row = {**p, "cell_id": cell_id(p)}
    try:
        c = simulate_cell(p, tables)
    except Exception as e:
        return _failed(p, e, t0)
    row.update(status="ok", error=None, **_metrics_row(c))
    row.update(
        offline_status=str(c.run.solve.get("status", "n/a")),
        simulate_s=c.run.simulate_s,
        wall_s=time.perf_counter() - t0,
        versions=_versions(),
    )
    return row


def _failed(p: dict, e: Exception, t0: float) -> dict:
    last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    where = f" (at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return {
        **p,
        "cell_id": cell_id(p),
        "status": "failed",
        "error": f"{type(e).__name__}: {e}{where}",
        "wall_s": time.perf_counter() - t0,
        "versions": _versions(),
    }
