"""One user's deployment (notebook 07): every policy on one cluster, workload, load and SLO,
over several seeds; which policy to run (``deployment_verdict``); the highest load each
policy serves within the SLO; and, when none serves the load, about how many GPUs would.

A deployment is a cell (``cells.DEFAULTS`` names) without ``policy``: model, hardware (a
profile name or a calibrated profile YAML), ``clients``, ``tp``, ``max_batch``, workload
options, ``rate_scale`` (the load: every arrival time divided by it) and the SLO
(``slo_ttft``, ``slo_tpot``, seconds).

- ``seed_cells(cell, seeds)``: one cell per seed. A seed draws the sample
  (``num_requests``) or a random arrival process; where it would change nothing (a trace
  replayed with its own timestamps), seed ``s`` serves the window ``s`` window-lengths
  later in the trace, so each seed is another stretch of the same trace.
- ``compare(cell, policies, seeds)``: one row per policy and seed (``cells.run_cell``),
  the headline columns ``HEADLINE``; a failed run keeps its row with ``status='failed'``.
- ``max_load(cell, policy)``: the highest ``rate_scale`` at which at least ``target`` of
  the requests meet both SLOs, by ``capacity.Bisection`` over ``rate_scale`` (start at the
  cell's own, double or halve up to ``max_doublings`` times, then bisect to ``rel_tol``);
  ``max_loads`` runs it per policy and seed, ``load_summary`` keeps per policy the load
  held on every seed.
- ``capacity_need(cell, loads, policy)``: whether any policy holds the SLO at the cell's
  load, and if none does, about how many GPUs would (its docstring says how).
- ``verdict``, ``summary``, ``tradeoff_table``, ``tradeoff_view``, ``rule_text``
  (``deployment_verdict``) and ``reading``, ``claim``, ``tradeoff_plot``
  (``deployment_text``) are here too.
"""

from __future__ import annotations

import math

import pandas as pd

from hybridsched.studies.capacity import Bisection
from hybridsched.studies.cells import requests_of, resolve, run_cell
from hybridsched.studies.deployment_text import (  # noqa: F401 (the notebook's names)
    claim,
    reading,
    tradeoff_plot,
)
from hybridsched.studies.deployment_verdict import (  # noqa: F401 (the notebook's names)
    SIMPLICITY,
    rule_text,
    summary,
    tradeoff_table,
    tradeoff_view,
    verdict,
)
from hybridsched.workloads.catalogue import parse_window

COMPARED_POLICIES = ("vllm", "baseline", "chunked", "hybrid-chunked", "online-hybrid", "hybrid")
HEADLINE = [
    "policy",
    "makespan_s",
    "throughput_rps",
    "goodput_rps",
    "slo_attainment",
    "ttft_p99_s",
    "tpot_p99_s",
    "num_preemptions",
]
RUN_COLUMNS = ["policy", "seed", "window", "offered_rps", *HEADLINE[1:], "status", "error"]
LOAD_COLUMNS = [
    "policy",
    "seed",
    "max_rate_scale",
    "max_rate_rps",
    "rate_scale_upper",
    "capped",
    "simulations",
    "base_rps",
    "error",
]


def _check_cell(cell: dict) -> dict:
    if "policy" in cell:
        raise ValueError("deployment cell: give the policies separately, not 'policy'")
    p = resolve(cell)  # an unknown or bad option raises here, naming it
    if p["slo_ttft"] is None or p["slo_tpot"] is None:
        raise ValueError("deployment cell: slo_ttft and slo_tpot (seconds) must both be set")
    return dict(cell)


def seed_cells(cell: dict, seeds=None) -> list[dict]:
    """One cell per seed (``seeds`` None: the cell alone, with its own seed).

    Each cell sets ``seed``. When the seed would not change the requests (no
    ``num_requests`` sample, arrivals ``table`` or ``zero`` or a fixed ``arrival_seed``),
    seed ``s`` also moves a bounded ``window`` ``s`` window-lengths later ("0:300", seed 1:
    "300:600"); without a bounded window the seeds serve the same requests.
    """
    if seeds is None:
        return [dict(cell)]
    p = resolve(cell)
    random_arrivals = p["arrivals"] not in ("table", "zero") and p["arrival_seed"] is None
    window = parse_window(p["window"])
    shift = p["num_requests"] is None and not random_arrivals and window is not None
    shift = shift and math.isfinite(window[1])
    out = []
    for s in seeds:
        c = {**cell, "seed": int(s)}
        if shift:
            start, end = window
            span = end - start
            c["window"] = f"{start + s * span:g}:{end + s * span:g}"
        out.append(c)
    return out


def compare(cell: dict, policies=COMPARED_POLICIES, seeds=None) -> pd.DataFrame:
    """Every policy on every seed's cell (``seed_cells``): one row each (``RUN_COLUMNS``),
    ``offered_rps`` the seed's load in requests per second (``base_rate`` times
    ``rate_scale``)."""
    cell = _check_cell(cell)
    rows = []
    for c in seed_cells(cell, seeds):
        offered = _safe_base_rate(c) * float(resolve(c)["rate_scale"])
        rows += [{**run_cell({**c, "policy": pol}), "offered_rps": offered} for pol in policies]
    df = pd.DataFrame(rows)
    for c in RUN_COLUMNS:
        if c not in df.columns:
            df[c] = math.nan
    return df[RUN_COLUMNS].reset_index(drop=True)


def max_load(
    cell: dict,
    policy: str,
    target: float = 0.9,
    rel_tol: float = 0.05,
    max_doublings: int = 4,
    start: float | None = None,
) -> dict:
    """The highest ``rate_scale`` measured to keep ``slo_attainment >= target`` for ``policy``.

    The search starts at ``start`` (default: the cell's ``rate_scale``). ``max_rate_rps``
    is that load in requests per second (``base_rps``, the cell's rate at ``rate_scale``
    1, times the scale; NaN when unknown); ``rate_scale_upper`` the lowest scale measured
    to miss (inf when ``capped``: the top of the searched range held). ``max_rate_scale``
    is 0 when even the lowest load searched missed. A failed simulation stops the search
    and fills ``error``.
    """
    if not 0 < target <= 1:
        raise ValueError(f"target must be in (0, 1], got {target!r}")
    cell = _check_cell(cell)
    first = float(resolve(cell)["rate_scale"]) if start is None else float(start)
    b = Bisection(first, rel_tol, max_doublings)
    error = None
    while (x := b.next()) is not None:
        x = float(f"{x:.4g}")
        row = run_cell({**cell, "policy": policy, "rate_scale": x})
        if row.get("status") != "ok":
            error = str(row.get("error"))
            break
        b.update(x, row["slo_attainment"] >= target)
    base = _safe_base_rate(cell)
    return {
        "policy": policy,
        "seed": int(resolve(cell)["seed"]),
        "max_rate_scale": b.lo if error is None else math.nan,
        "max_rate_rps": b.lo * base if error is None else math.nan,
        "rate_scale_upper": b.hi,
        "capped": b.capped,
        "simulations": len(b.tested),
        "base_rps": base,
        "error": error,
    }


def base_rate(cell: dict) -> float:
    """Requests per second of the deployment's arrivals at ``rate_scale`` 1 (requests over
    the span from the first to the last arrival); NaN when all arrive at once."""
    reqs = requests_of(resolve({**cell, "rate_scale": 1.0}))
    t = reqs["arrival_s"] if "arrival_s" in reqs else None
    if t is None or len(t) < 2 or float(t.max() - t.min()) <= 0:
        return math.nan
    return len(t) / float(t.max() - t.min())


def _safe_base_rate(cell: dict) -> float:
    """``base_rate``, NaN when the requests cannot be read (the run says why)."""
    try:
        return base_rate(cell)
    except (ValueError, OSError):
        return math.nan


def max_loads(cell: dict, policies=COMPARED_POLICIES, seeds=None, **kw) -> pd.DataFrame:
    """``max_load`` of every policy on every seed's cell, one row each (``LOAD_COLUMNS``)."""
    cells = seed_cells(_check_cell(cell), seeds)
    rows = [max_load(c, p, **kw) for p in policies for c in cells]
    return pd.DataFrame(rows, columns=LOAD_COLUMNS)


def load_summary(loads: pd.DataFrame) -> pd.DataFrame:
    """Per policy (``max_loads`` rows): ``max_rate_scale``, the load held on every seed (the
    lowest of the seeds' highest; NaN when a search failed) and ``max_rate_scale_mean``;
    ``max_rate_rps`` (``max_rate_scale`` times the seeds' mean ``base_rps``);
    ``rate_scale_upper`` (the lowest load measured to miss on some seed); ``capped`` (every
    seed held at the top of the range); ``simulations`` and the first ``error``."""
    rows = []
    for pol, part in loads.groupby("policy", sort=False):
        err = part["error"].dropna()
        lo = math.nan if len(err) else float(part["max_rate_scale"].min())
        rows.append(
            {
                "policy": pol,
                "max_rate_scale": lo,
                "max_rate_scale_mean": math.nan
                if len(err)
                else float(part["max_rate_scale"].mean()),
                "max_rate_rps": lo * float(part["base_rps"].mean()),
                "rate_scale_upper": float(part["rate_scale_upper"].min()),
                "capped": bool(part["capped"].all()),
                "simulations": int(part["simulations"].sum()),
                "error": str(err.iloc[0]) if len(err) else None,
            }
        )
    return pd.DataFrame(rows)


def capacity_need(
    cell: dict,
    loads: pd.DataFrame,
    policy: str = "vllm",
    seeds=None,
    target: float = 0.9,
    rel_tol: float = 0.05,
    max_doublings: int = 4,
    deeper: int = 6,
) -> dict:
    """Whether a policy holds the SLO at the cell's load on every seed; if none does, about
    how many GPUs would.

    ``loads`` is ``load_summary``. With ``R`` the cell's ``rate_scale`` and ``L`` the
    highest load a policy held on every seed: ``L >= R`` is not ``overloaded``. Otherwise
    ``replicas = ceil(clients * R / L)`` and ``gpus = replicas * tp``: the load served within
    the SLO is taken to grow in proportion to the replicas (round-robin spreads requests
    evenly). One run per seed of the policy that held ``L`` on that many replicas at ``R``
    tests it: ``check_attainment`` (lowest share within the SLO over the seeds) and
    ``check_holds``. When no policy held even the lowest load searched (``L = 0``),
    ``policy`` is searched ``deeper`` halvings lower; if it holds nowhere there, a request
    misses the SLO even on an idle cluster, more replicas cannot help, ``gpus`` is None and
    ``reason`` is ``latency``.
    """
    p = resolve(_check_cell(cell))
    offered, clients, tp = float(p["rate_scale"]), int(p["clients"]), int(p["tp"])
    held = loads.dropna(subset=["max_rate_scale"])
    top = float(held["max_rate_scale"].max()) if len(held) else 0.0
    out = {"overloaded": False, "rate_scale": offered, "gpus_now": clients * tp, "tp": tp}
    if top >= offered * (1 - 1e-9):
        return out
    out.update(overloaded=True, replicas=None, gpus=None, reason="load", deeper_simulations=0)
    basis = str(held.loc[held["max_rate_scale"].idxmax(), "policy"]) if top > 0 else policy
    lowest = offered / 2**max_doublings
    if top <= 0:  # nothing held in the range searched: look lower with one policy
        kw = {"target": target, "rel_tol": rel_tol, "max_doublings": deeper}
        deep = max_loads(cell, [policy], seeds, start=lowest / 2, **kw)
        out["deeper_simulations"] = int(deep["simulations"].sum())
        top = float(load_summary(deep)["max_rate_scale"].iloc[0])
        lowest = lowest / 2 ** (deeper + 1)
    out.update(basis_policy=basis, basis_load=top, lowest_searched=lowest)
    if not top > 0:
        return {**out, "reason": "latency"}
    replicas = math.ceil(clients * offered / top - 1e-9)
    worst = _worst_share({**cell, "clients": replicas}, basis, seeds)
    return {
        **out,
        "replicas": replicas,
        "gpus": replicas * tp,
        "check_attainment": worst,
        "check_holds": bool(worst >= target),
    }


def _worst_share(cell: dict, policy: str, seeds) -> float:
    """The lowest ``slo_attainment`` of ``policy`` over the seeds' cells (NaN if one failed)."""
    shares = [
        float(run_cell({**c, "policy": policy}).get("slo_attainment", math.nan))
        for c in seed_cells(cell, seeds)
    ]
    return min(shares) if all(math.isfinite(s) for s in shares) else math.nan
