"""Latency-load curves of an online-serving study (notebook 06, docs/model.md section 11).

``load_sweep(base, clusters, policies, rate_scales)`` runs one cell (``cells.run_cell``)
per cluster, policy and load level and returns the result rows with ``cluster`` (the
cluster's label) and ``offered_rps``: the requests served divided by the arrival span,
``window`` length / ``rate_scale`` (a ``window`` is required so the span is known).
``rate_scales`` is one list for every cluster or a mapping from cluster label to list.

``saturation(table, by, target)`` reads off, per group (cluster, trace, policy), the
highest offered rate whose SLO attainment is at least ``target`` (``sustained_rps``,
NaN when no load level meets it) and the highest throughput measured at any load
(``peak_throughput_rps``, requests completed per second of makespan).

``ttft_cdf(cells)`` runs the given cells and returns every request's TTFT with its
empirical cumulative share, one curve per cell label; ``ttft_by_output(cdf)`` is the
median TTFT per quartile of the requests' output length, the view that shows whom a
sorted queue delays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from hybridsched.jobs.executor import Executor
from hybridsched.studies.cells import resolve, simulate_cell
from hybridsched.studies.grid import run_cells
from hybridsched.workloads.catalogue import parse_window

__all__ = ["load_sweep", "offered_rate", "saturation", "ttft_by_output", "ttft_cdf"]


def _span_s(params: dict) -> float:
    w = parse_window(params.get("window"))
    if w is None or not np.isfinite(w[1]):
        raise ValueError(f"window must be a bounded 'START:END', got {params.get('window')!r}")
    return (w[1] - w[0]) / float(params.get("rate_scale", 1.0))


def offered_rate(num_requests: int, params: dict) -> float:
    """Requests per second offered by a cell: ``num_requests`` over its arrival span (s)."""
    return float(num_requests) / _span_s(params)


def _cells(
    base: dict,
    clusters: Mapping[str, dict],
    policies: Sequence[str],
    rate_scales: Sequence[float] | Mapping[str, Sequence[float]],
) -> list[tuple[str, dict]]:
    out = []
    for label, cl in clusters.items():
        scales = rate_scales[label] if isinstance(rate_scales, Mapping) else rate_scales
        for pol in policies:
            for rs in scales:
                out.append((label, {**base, **cl, "policy": pol, "rate_scale": float(rs)}))
    return out


def load_sweep(
    base: dict,
    clusters: Mapping[str, dict],
    policies: Sequence[str],
    rate_scales: Sequence[float] | Mapping[str, Sequence[float]],
    engine: str = "serial",
    workers: int | None = None,
) -> pd.DataFrame:
    """One row per cluster, policy and load level (module docstring); failed cells kept."""
    _span_s(base)  # a bad window fails before any simulation
    pairs = _cells(base, clusters, policies, rate_scales)
    labels = [label for label, _ in pairs]
    resolved = [resolve(c) for _, c in pairs]
    with Executor(engine, workers, progress=False) as eng:
        rows = run_cells(resolved, eng, tables={})  # each cell loads its own window
    table = pd.DataFrame(rows)
    table.insert(0, "cluster", labels)
    ok = table["status"] == "ok"
    table["offered_rps"] = np.nan
    table.loc[ok, "offered_rps"] = [
        offered_rate(n, c) for n, c, k in zip(table["num_requests"], resolved, ok, strict=True) if k
    ]
    return table


def saturation(
    table: pd.DataFrame, by: Sequence[str] = ("cluster", "policy"), target: float = 0.9
) -> pd.DataFrame:
    """Per group: ``sustained_rps`` (highest offered rate with SLO attainment >= ``target``)
    and ``peak_throughput_rps`` (highest completed requests per second at any load)."""
    if not 0 < target <= 1:
        raise ValueError(f"target must be in (0, 1], got {target!r}")
    ok = table[table["status"] == "ok"]

    def one(g: pd.DataFrame) -> pd.Series:
        met = g[g["slo_attainment"] >= target]
        return pd.Series(
            {
                "sustained_rps": met["offered_rps"].max() if len(met) else np.nan,
                "peak_throughput_rps": g["throughput_rps"].max(),
                "max_offered_rps": g["offered_rps"].max(),
            }
        )

    return ok.groupby(list(by), sort=False).apply(one, include_groups=False).reset_index()


_CDF_COLS = ["request_id", "output_tokens", "ttft_s", "share"]


def ttft_cdf(cells: Mapping[str, dict], tables: dict | None = None) -> pd.DataFrame:
    """Every request's TTFT (s) and cumulative share, per labelled cell (``label`` column),
    with the request's id and output length (tokens)."""
    parts = []
    for label, params in cells.items():
        c = simulate_cell(params, tables)
        req = c.run.requests[["request_id", "ttft_s"]].dropna()
        out = c.instance.requests.set_index("request_id")["output_tokens"]
        req = req.assign(output_tokens=out.reindex(req["request_id"]).to_numpy())
        req = req.sort_values("ttft_s", kind="stable")
        share = np.arange(1, len(req) + 1) / max(len(req), 1)
        parts.append(req.assign(label=label, share=share)[["label", *_CDF_COLS]])
    return pd.concat(parts, ignore_index=True)


def ttft_by_output(cdf: pd.DataFrame, quartiles: int = 4) -> pd.DataFrame:
    """Median TTFT (s) per label (rows) and quartile of output length (columns, shortest first)."""
    q = pd.qcut(cdf["output_tokens"], quartiles, duplicates="drop")
    t = cdf.groupby(["label", q], observed=True)["ttft_s"].median().unstack().sort_index(axis=1)
    t.columns = [f"Q{i + 1} (output <= {c.right:.0f} tok)" for i, c in enumerate(t.columns)]
    return t.reindex(cdf["label"].unique())
