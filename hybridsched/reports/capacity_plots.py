"""The capacity plan as read: the candidates' rates as text, the GPUs-against-rate frontier
and the index's one-line claim (``capacity_claim``).

A rate at the search's upper bound (``at_search_bound``) is a lower bound: it is written
``>= X`` and drawn as an open marker with an upward arrow, never as a measurement.
Measured rates are filled markers with their 90% interval (``max_rate_ci_low`` to
``max_rate_ci_high``, ``studies/steady_state.py``) as an error bar.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hybridsched.studies.capacity import frontier

if TYPE_CHECKING:  # matplotlib loads when a plot is drawn, not for the text functions
    from matplotlib.axes import Axes


def rate_text(rate: float, at_bound: bool) -> str:
    """A rate as shown: ``>= X`` at the search bound (a lower bound, not a measurement)."""
    if rate != rate:
        return "failed"
    return f">= {rate:.3g}" if at_bound else f"{rate:.3g}"


def interval_text(low: float, high: float) -> str:
    if low != low:
        return ""
    hi = "inf" if math.isinf(high) else f"{high:.3g}"
    return f"[{low:.3g}, {hi}]"


def rates_table(table: pd.DataFrame) -> pd.DataFrame:
    """The candidates as shown: ``max_rate`` as text (``>= X`` at the search bound), the
    90% interval, whether the cluster sustains the target and the policy's clairvoyance."""
    out = table[["hardware", "tp", "clients", "max_batch", "policy", "gpus"]].copy()
    out["max_rate"] = [
        rate_text(r, b) for r, b in zip(table["max_rate"], table["at_search_bound"], strict=True)
    ]
    out["interval (req/s)"] = [
        interval_text(lo, hi)
        for lo, hi in zip(table["max_rate_ci_low"], table["max_rate_ci_high"], strict=True)
    ]
    out["sustains"] = table["sustains"].astype(bool)
    out["clairvoyant"] = table["clairvoyant"].astype(bool)
    return out


def describe_choice(choice: dict | None, rate: float, max_gpus: int) -> str:
    """One line: the cheapest cluster with its rate and interval, or that none sustains."""
    if choice is None:
        return f"no candidate sustains {rate:g} req/s within {max_gpus} GPUs"
    c = choice
    text = (
        f"cheapest for {rate:g} req/s: {c['clients']} x tp={c['tp']} {c['hardware']} "
        f"({c['gpus']} GPU{'s' if c['gpus'] != 1 else ''}), B={c['max_batch']}, "
        f"policy {c['policy']}: "
    )
    if c["at_search_bound"]:
        return text + f"sustains >= {c['max_rate']:.3g} req/s (the search's upper bound)"
    return text + (
        f"sustains {c['max_rate']:.3g} req/s, fails at {c['rate_upper']:.3g} "
        f"(90% interval {interval_text(c['max_rate_ci_low'], c['max_rate_ci_high'])} req/s)"
    )


def capacity_claim(params: dict, choice: dict | None, analytic_gpus: float | None = None) -> str:
    """The index's one line, from the plan: the model, workload and SLO (``plan.params``), the
    cheapest cluster (``describe_choice``) and the GPUs the analytic estimate asks for."""
    p = params
    n = len(p["seeds"])
    models = ", ".join(map(str, p.get("search_space", {}).get("model", [])))
    setup = (
        f"{models + ' on ' if models else ''}{p['workload']}, TTFT <= {p['slo_ttft']:g} s and "
        f"TPOT <= {p['slo_tpot']:g} s for {p['target']:.0%} of requests, steady state "
        f"({n} seed{'s' if n != 1 else ''}, runs of {p['min_duration_s']:g} s)"
    )
    g = None if analytic_gpus is None else float(analytic_gpus)
    known = g is not None and g == g  # NaN: no estimate
    plural = "" if g == 1 else "s"
    analytic = f"; the analytic estimate asks for {g:.0f} GPU{plural}" if known else ""
    return f"{setup}: {describe_choice(choice, p['rate'], p['max_gpus'])}{analytic}."


def plot_frontier(
    table: pd.DataFrame,
    rate: float | None = None,
    by: tuple[str, ...] = ("hardware", "policy"),
    ax: Axes | None = None,
) -> Axes:
    """Per group (``by``), the highest rate sustained by a candidate of at most each GPU count
    (``capacity.frontier`` of the candidates ``table``), with the target ``rate`` dashed."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.0))
    front = frontier(table, by)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles, heads = [], [0.0]
    groups = list(front.groupby(list(by), sort=True))
    for k, (key, part) in enumerate(groups):
        color = colors[k % len(colors)]
        key = key if isinstance(key, tuple) else (key,)
        # Groups side by side around each GPU count, so equal rates stay visible.
        part = part[part["max_rate"].notna()]
        part = part.assign(x=part["gpus"] + _dodge(k, groups))
        ax.step(part["x"], part["max_rate"], where="post", color=color, lw=1, alpha=0.6)
        heads.append(_draw_points(ax, part, color))
        handles.append(Line2D([], [], color=color, marker="o", label=", ".join(map(str, key))))
    if rate is not None:
        ax.axhline(rate, ls="--", color="grey")
        handles.append(Line2D([], [], ls="--", color="grey", label=f"target {rate:g} req/s"))
    handles.append(Line2D([], [], ls="", marker="o", color="k", label="measured (90% interval)"))
    handles.append(
        Line2D([], [], ls="", marker="o", mfc="none", color="k", label=">= search bound")
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("GPUs (clients x tp)")
    ax.set_ylabel("highest sustained rate (req/s)")
    ax.set_ylim(0, max(ax.get_ylim()[1], 1.05 * max(heads)))  # arrow heads inside
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def _dodge(k: int, groups: list) -> float:
    return 0.06 * (k - (len(groups) - 1) / 2)


def _draw_points(ax: Axes, part: pd.DataFrame, color) -> float:
    """Measured points filled with their interval; search-bound points open, arrow up.
    Returns the highest arrow head (0 without one)."""
    bound = part.get("at_search_bound", pd.Series(False, index=part.index)).astype(bool)
    m = part[~bound]
    if len(m):
        r = m["max_rate"].to_numpy(float)
        lo = m.get("max_rate_ci_low", m["max_rate"]).to_numpy(float)
        hi = m.get("max_rate_ci_high", m["max_rate"]).to_numpy(float)
        hi = np.where(np.isfinite(hi), hi, r)
        yerr = np.vstack([np.clip(r - lo, 0, None), np.clip(hi - r, 0, None)])
        ax.errorbar(m["x"], r, yerr=yerr, fmt="o", color=color, capsize=3, ms=5)
    top = max(float(part["max_rate"].max()), 1e-9) if len(part) else 1.0
    head = 0.0
    for g, r in zip(part.loc[bound, "x"], part.loc[bound, "max_rate"], strict=True):
        ax.plot([g], [r], "o", mfc="none", mec=color, ms=7)
        ax.annotate(
            "",
            xy=(g, r + 0.15 * top),
            xytext=(g, r),
            arrowprops={"arrowstyle": "->", "color": color},
        )
        head = max(head, r + 0.15 * top)
    return head
