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
then the named ``policy`` through ``experiments.run_policy``. ``router`` and
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

from hybridsched.instance import Cluster, Instance, make_instance
from hybridsched.policies.registry import RuleKnobs, SolveSettings, policy_spec
from hybridsched.studies.run import run_policy
from hybridsched.workloads.arrivals import apply_arrivals, parse_arrivals
from hybridsched.workloads.requests import check_context, validate_requests
from hybridsched.workloads.tables import requests_for

# Every option a cell knows, with its default: the CLI's option names, underscored.
DEFAULTS: dict[str, object] = {
    "workload": "gsm8k",
    "format": None,
    "window": None,
    "max_requests": None,
    "fit_context": "error",
    "max_context": None,
    "num_requests": None,
    "seed": 0,
    "prediction_sigma": 0.0,
    "prediction_seed": 0,
    "predictor": None,
    "arrivals": "table",
    "arrival_seed": None,
    "rate_scale": 1.0,
    "model": "llama-65b",
    "hardware": "a100-80gb-sxm",
    "clients": 2,
    "tp": 4,
    "max_batch": 32,
    "latency": "roofline",
    "policy": "baseline",
    "router": None,
    "admission": None,
    "slo_ttft": None,
    "slo_tpot": None,
    "replan_s": 1.0,
    "lambda_multiplier": 1.0,
    "horizon": 64,
    "token_budget": None,
    "time_limit": 10.0,
    "mip_gap": 1e-4,
    "check": False,
}
KNOWN = tuple(DEFAULTS)
CLUSTER_KEYS = ("model", "hardware", "clients", "tp", "max_batch", "latency")
_INTS = (
    "num_requests",
    "max_requests",
    "max_context",
    "seed",
    "arrival_seed",
    "prediction_seed",
    "clients",
    "tp",
    "max_batch",
    "horizon",
)
_FLOATS = (
    "prediction_sigma",
    "rate_scale",
    "slo_ttft",
    "slo_tpot",
    "lambda_multiplier",
    "replan_s",
)
_STRINGS = ("cell_id", "status", "error", "offline_status", "versions")
# Column types of a result row's parameter and bookkeeping columns (stable across Parquet parts).
DTYPES = {
    **{k: "string" for k in DEFAULTS if k not in (*_INTS, *_FLOATS, "token_budget", "check")},
    **{k: "Int64" for k in (*_INTS, "token_budget")},
    **{k: "float64" for k in (*_FLOATS, "time_limit", "mip_gap")},
    "check": "boolean",
    **{k: "string" for k in _STRINGS},
}


def unknown_error(names) -> ValueError:
    return ValueError(
        f"unknown option(s) {', '.join(sorted(map(str, names)))}; known: {', '.join(KNOWN)}"
    )


def resolve(params: dict) -> dict:
    """``params`` over ``DEFAULTS``, numbers coerced; raises naming an unknown or bad option."""
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise unknown_error(unknown)
    p = {**DEFAULTS, **params}
    for k in (*_INTS, "token_budget"):
        if p[k] is not None:
            p[k] = _number(k, p[k], int)
    for k in (*_FLOATS, "time_limit", "mip_gap"):
        if p[k] is not None:
            p[k] = _number(k, p[k], float)
    if p["rate_scale"] <= 0:
        raise ValueError(f"rate_scale must be > 0, got {p['rate_scale']!r}")
    p["arrivals"] = str(parse_arrivals(p["arrivals"]))
    p["workload"] = str(p["workload"])
    policy_spec(str(p["policy"]))
    return p


def _number(name: str, v, kind: type):
    try:
        x = float(v)
        ok = not isinstance(v, bool) and (kind is float or x == int(x))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {v!r}")
    return kind(x)


@functools.cache
def _versions() -> str:
    from hybridsched.provenance import versions

    return json.dumps(versions(), sort_keys=True)


def cell_id(params: dict) -> str:
    """A stable id of a resolved cell: the same options give the same id across runs."""
    text = json.dumps({k: params[k] for k in KNOWN}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def cluster_of(p: dict) -> Cluster:
    return Cluster(
        model=str(p["model"]),
        hardware=str(p["hardware"]),
        num_clients=p["clients"],
        tp=p["tp"],
        max_batch=p["max_batch"],
        latency=str(p["latency"]),
    )


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
        src = w
    elif opts["max_requests"] is None and opts["window"] is None:
        opts = None  # a preloaded table: the context rule, sample, predictions, arrivals apply
        if p["fit_context"] == "drop":
            src = check_context(validate_requests(src), max_context, "drop")[0]
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


def simulate_cell(params: dict, tables: dict | None = None, on_instance=None) -> CellRun:
    """Run one cell (module docstring); raises ``ValueError`` on bad options.

    ``on_instance(instance)``, when given, is called once the instance is built, before the
    run (the command line starts the bound beside the simulation there)."""
    p = resolve(params)
    reqs = requests_of(p, tables)
    info = reqs.attrs.get("workload")
    instance = make_instance(reqs, cluster_of(p), max_context=p["max_context"])
    if on_instance is not None:
        on_instance(instance)
    knobs = RuleKnobs(
        lambda_multiplier=p["lambda_multiplier"],
        horizon=p["horizon"],
        seed=p["seed"],
        token_budget=p["token_budget"],
    )
    solve = SolveSettings(p["time_limit"], p["mip_gap"], replan_s=p["replan_s"])
    run = run_policy(
        instance,
        str(p["policy"]),
        knobs,
        solve,
        check=bool(p["check"]),
        router=p["router"],
        admission=p["admission"],
        slo_ttft_s=p["slo_ttft"],
        slo_tpot_s=p["slo_tpot"],
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
