"""Column names in words, with units, and how their values read (figures and report tables).

``LABELS`` maps a result column (``makespan_s``, ``utilization``, ...) to a reader's label
and a kind that says how to print a value:

- ``"fraction"``: a share stored as a fraction, shown as a percentage (``0.873`` -> ``87.3%``),
- ``"percent"``: already in percent (``10.5`` -> ``10.5%``),
- ``"pp"``: percentage points, signed (``+9.21 pp``),
- ``"seconds"`` (2 decimals, 4 below a second; ``"seconds-coarse"``/``"seconds-fine"`` fix
  one of the two for a whole column), ``"count"`` (an integer, ``1,137``), ``"number"``
  (two decimals), ``"text"``;
- ``"duration"``: seconds shown in the unit that suits each value (``5e-05`` -> ``50 µs``,
  ``0.0091`` -> ``9.1 ms``, ``2.5`` -> ``2.50 s``), ``"bandwidth"``: bytes per second in
  GB/s (``3e11`` -> ``300.0 GB/s``).

A value of no known kind prints as an integer, or with four significant digits.

``distinct_digits(values)`` is the fewest decimals that print distinct values distinctly
(bar labels that tell bars apart).

``label(column)`` falls back to the column name with underscores as spaces (a name that
already has spaces, ``"paper-model T_LB (s)"``, is kept as it is).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

LABELS: dict[str, tuple[str, str | None]] = {
    "makespan_s": ("makespan (s)", "seconds"),
    "utilization": ("U", "fraction"),
    "mean_batch": ("mean batch", "number"),
    "kv_occupancy": ("KV occupancy", "fraction"),
    "prefill_share": ("prefill share of busy time", "fraction"),
    "num_prefill_iterations": ("prefill iterations", "count"),
    "imbalance": ("client imbalance", "fraction"),
    "lower_bound_s": ("T_LB (s)", "seconds"),
    "gap_to_lb": ("gap to T_LB", "fraction"),
    "gap_closed": ("share of the baseline's gap closed", "fraction"),
    "gap_to_optimum": ("gap to the optimum T*", "fraction"),
    "utilization_gain_pp": ("U gain over the baseline (pp)", "pp"),
    "makespan_reduction": ("makespan reduction", "fraction"),
    "makespan_change_s": ("makespan change (s)", "seconds"),
    "makespan_change_pct": ("makespan change (%)", "percent"),
    "num_requests": ("requests", "count"),
    "num_cases": ("cases", "count"),
    "wins": ("wins (cases)", "count"),
    "lambda_multiplier": ("Lagrange multiplier (x the default)", "number"),
    "horizon": ("look-ahead horizon H (iterations)", "count"),
    "sort": ("queue order", "text"),
    "prediction_sigma": ("prediction error sigma (lognormal)", "number"),
    "max_batch": ("max batch B", "count"),
    "tp": ("tensor parallelism tp", "count"),
    "clients": ("clients", "count"),
    "bound_binding": ("binding part of T_LB", "text"),
    "makespan_mean_s": ("makespan (s), mean", "seconds"),
    "makespan_min_s": ("makespan (s), min", "seconds"),
    "makespan_max_s": ("makespan (s), max", "seconds"),
    "ties": ("ties (cases)", "count"),
    # online serving (docs/model.md section 11)
    "ttft_p50_s": ("TTFT p50 (s)", "seconds"),
    "ttft_p99_s": ("TTFT p99 (s)", "seconds"),
    "tpot_p50_s": ("TPOT p50 (s/token)", "seconds"),
    "tpot_p99_s": ("TPOT p99 (s/token)", "seconds"),
    "e2e_p99_s": ("end-to-end p99 (s)", "seconds"),
    "queue_p99_s": ("queueing delay p99 (s)", "seconds"),
    "slo_attainment": ("requests within the SLO", "fraction"),
    "goodput_rps": ("goodput (req/s)", "number"),
    "throughput_rps": ("throughput (req/s)", "number"),
    "offered_rps": ("offered rate (req/s)", "number"),
    "sustained_rps": ("sustained rate within the SLO (req/s)", "number"),
    "peak_throughput_rps": ("peak throughput (req/s)", "number"),
    "max_offered_rps": ("heaviest offered rate (req/s)", "number"),
    "num_preemptions": ("preemptions", "count"),
    "rate_scale": ("load (x the trace's rate)", "number"),
    "max_rate_scale": ("highest load within the SLO (x the trace's rate)", "number"),
    "max_rate_rps": ("highest rate within the SLO (req/s)", "number"),
    "rate_scale_upper": ("lowest load measured to miss (x the trace's rate)", "number"),
    "capped": ("held at the top of the searched range", None),
    "simulations": ("simulations run", "count"),
}

# Aggregates of a column (study summaries): ``utilization_mean`` reads as "U, mean".
SUFFIXES = {"_mean": "mean", "_min": "min", "_max": "max", "_std": "std", "_median": "median"}


def _split(column: str) -> tuple[str, str | None]:
    for suffix, word in SUFFIXES.items():
        if column.endswith(suffix) and column[: -len(suffix)] in LABELS:
            return column[: -len(suffix)], word
    return column, None


def label(column: str) -> str:
    """The reader's label of ``column`` (with its unit)."""
    base, agg = _split(str(column))
    if base in LABELS:
        text = LABELS[base][0]
    else:  # an identifier reads with spaces; a name in words (with spaces) stays as it is
        text = base if " " in base else base.replace("_", " ")
    return f"{text}, {agg}" if agg else text


def kind(column: str) -> str | None:
    """How values of ``column`` read (see the module docstring), None when not known."""
    base, _ = _split(str(column))
    return LABELS[base][1] if base in LABELS else None


def fmt(value: Any, how: str | None, digits: int = 1) -> str:
    """``value`` printed as ``how`` says; NaN, None and infinities print as an empty string."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if how == "text" or isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    v = float(value)
    if how == "fraction":
        return f"{100 * v:.{digits}f}%"
    if how == "percent":
        return f"{v:.{digits}f}%"
    if how == "pp":
        return f"{v:+.2f} pp"
    if how == "count":
        return f"{v:,.0f}"
    if how == "seconds":
        return f"{v:,.2f}" if abs(v) >= 1 else f"{v:.4f}"
    if how == "seconds-coarse":
        return f"{v:,.2f}"
    if how == "seconds-fine":
        return f"{v:.4f}"
    if how == "number":
        return f"{v:,.2f}" if abs(v) >= 0.1 or v == 0 else f"{v:.3g}"
    if how == "duration":
        return duration(v)
    if how == "bandwidth":
        return f"{v / 1e9:,.1f} GB/s"
    # unknown: an integer as one, else four significant digits (two decimals from 100 on)
    if isinstance(value, (int, np.integer)) or v.is_integer():
        return f"{v:,.0f}"
    return f"{v:,.2f}" if abs(v) >= 100 else f"{v:.4g}"


def duration(seconds: float) -> str:
    """A time in the unit that suits it: ``0`` -> ``0 s``, ``5e-05`` -> ``50 µs``,
    ``0.00909`` -> ``9.09 ms``, ``2.5`` -> ``2.50 s`` (three significant digits below 1 s);
    under a nanosecond (a fitted constant at its floor) reads as ``0 s``."""
    v = float(seconds)
    if abs(v) < 1e-9:
        return "0 s"
    if abs(v) < 1e-3:
        return f"{v * 1e6:.3g} µs"
    if abs(v) < 1:
        return f"{v * 1e3:.3g} ms"
    return f"{v:,.2f} s"


def distinct_digits(values, least: int = 1, most: int = 6) -> int:
    """The fewest decimals (from ``least`` to ``most``) at which values that differ (by more
    than 1e-9 relative) also print differently."""
    vals = sorted({float(v) for v in values if v is not None and math.isfinite(float(v))})
    scale = max([abs(v) for v in vals] + [1e-300])
    distinct = [v for k, v in enumerate(vals) if k == 0 or v - vals[k - 1] > 1e-9 * scale]
    for d in range(least, most + 1):
        if len({f"{v:.{d}f}" for v in distinct}) == len(distinct):
            return d
    return most
