"""Figures for the notebooks: each ``plot_*`` draws on ``ax`` (or a new figure) and returns it.

Inputs are the package's own tables, never recomputed here:

- a trace (``simulator.TRACE_COLUMNS``: one row per iteration),
- a single-case table (``studies.run_single_case(...).table``: one row per policy),
- study cases (``studies.run_study(...).cases``: one row per case and policy),
- a sweep table (``sweep.sweep``: one row per grid point and policy) or any tidy frame.

Prefill iterations are drawn in one colour and decode iterations in another everywhere,
so the Gantt charts of different policies can be read side by side. Plots add no
``plt.show()`` and no file output: the notebook displays them, ``reports/`` writes files.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, PercentFormatter

from hybridsched.reports.labels import kind as value_kind
from hybridsched.reports.labels import label

KIND_COLORS = {"prefill": "#d62728", "decode": "#1f77b4"}
BASELINE_COLOR = "#7f7f7f"


def _axes(ax: Axes | None, figsize: tuple[float, float] = (8.0, 3.5)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _legend_outside(ax: Axes, **kwargs) -> None:
    """The legend to the right of the plot, where it covers no data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


def _percent_axis(ax: Axes, column: str, axis: str = "y") -> None:
    """Fractions (``U``, gaps, shares) read as percentages on the axis."""
    if value_kind(column) == "fraction":
        (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(xmax=1.0))


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)}")


def _window(trace: pd.DataFrame, t0: float | None, t1: float | None) -> pd.DataFrame:
    """Iterations that overlap ``[t0, t1]`` (either end open when None)."""
    keep = np.ones(len(trace), dtype=bool)
    if t0 is not None:
        keep &= trace["end_s"].to_numpy() > t0
    if t1 is not None:
        keep &= trace["start_s"].to_numpy() < t1
    return trace[keep]


def plot_gantt(
    trace: pd.DataFrame,
    clients: Sequence[int] | None = None,
    t0: float | None = None,
    t1: float | None = None,
    ax: Axes | None = None,
    annotate: bool | None = None,
) -> Axes:
    """Per-client iteration bars, prefill and decode coloured apart.

    One ``broken_barh`` call per (client, kind), so a 10k-iteration trace draws in well
    under a second. Restrict to a window (``t0``/``t1``, seconds) to read individual
    iterations; decode bars are shaded by their share of the client's largest batch, so
    a draining batch shows as fading bars.

    Parameters
    ----------
    trace : iteration trace (``client``, ``kind``, ``start_s``, ``end_s``, ``num_running``).
    clients : clients to draw (default: all in the trace), one row each.
    t0, t1 : the time window; iterations overlapping it are drawn, the axis is clipped to it.
    annotate : write each iteration's request ids on its bar; default only when the
        window holds at most 60 iterations (the exact MIP's schedule, say).
    """
    _require(trace, ["client", "kind", "start_s", "end_s", "num_running"], "plot_gantt")
    ax = _axes(ax)
    clients = sorted(trace["client"].unique()) if clients is None else list(clients)
    tr = _window(trace[trace["client"].isin(clients)], t0, t1)
    if annotate is None:
        annotate = len(tr) <= 60
    peak = trace.groupby("client")["num_running"].max()
    height = 0.8
    for row, j in enumerate(clients):
        mine = tr[tr["client"] == j]
        y = row - height / 2
        for kind, color in KIND_COLORS.items():
            part = mine[mine["kind"] == kind]
            if part.empty:
                continue
            start = part["start_s"].to_numpy()
            width = part["end_s"].to_numpy() - start
            if kind == "decode":
                alpha = 0.35 + 0.65 * part["num_running"].to_numpy() / max(1, peak.get(j, 1))
                colors = np.column_stack([np.tile(to_rgb(color), (len(alpha), 1)), alpha])
            else:
                colors = color
            ax.broken_barh(
                list(zip(start, width, strict=True)),
                (y, height),
                facecolors=colors,
                edgecolor="white",
                linewidth=0.3,
            )
        if annotate and "request_ids" in mine.columns:
            for _, r in mine.iterrows():
                label = (
                    ",".join(str(i) for i in r["request_ids"])
                    if r["kind"] == "prefill"
                    else str(r["num_running"])
                )
                ax.text(
                    (r["start_s"] + r["end_s"]) / 2,
                    row,
                    label,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white",
                )
    ax.set_yticks(range(len(clients)), [f"client {j}" for j in clients])
    ax.set_ylim(-0.6, len(clients) - 0.4)
    ax.invert_yaxis()
    lo = t0 if t0 is not None else (float(tr["start_s"].min()) if len(tr) else 0.0)
    hi = t1 if t1 is not None else (float(tr["end_s"].max()) if len(tr) else 1.0)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("time (s)")
    handles = [Patch(color=c, label=k) for k, c in KIND_COLORS.items()]
    _legend_outside(ax, handles=handles, fontsize=8)
    return ax


def _steps(trace: pd.DataFrame, column: str):
    """Per client: step-plot coordinates of ``column`` over its iterations, dropping to 0 at the end."""
    for j, part in trace.sort_values(["client", "start_s"]).groupby("client"):
        x = np.append(part["start_s"].to_numpy(), part["end_s"].iloc[-1])
        yield j, x, np.append(part[column].to_numpy(), 0)


def plot_batch_occupancy(
    trace: pd.DataFrame, max_batch: int | None = None, ax: Axes | None = None
) -> Axes:
    """Running batch ``num_running`` over time, one step line per client.

    Dips are prefill stalls and drained batches; the tail shows when each client ends.
    ``max_batch`` draws ``B`` as a dashed line.
    """
    _require(trace, ["client", "start_s", "end_s", "num_running"], "plot_batch_occupancy")
    ax = _axes(ax)
    for j, x, y in _steps(trace, "num_running"):
        ax.step(x, y, where="post", linewidth=0.8, label=f"client {j}")
    if max_batch is not None:
        ax.axhline(
            max_batch, color="black", linestyle="--", linewidth=0.8, label=f"B = {max_batch}"
        )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("running batch |D|")
    ax.set_ylim(bottom=0)
    _legend_outside(ax, fontsize=8)
    return ax


def plot_kv_usage(
    trace: pd.DataFrame, capacity: float | None = None, ax: Axes | None = None
) -> Axes:
    """KV tokens held over time per client (solid), reserved tokens (dotted) and capacity ``M``.

    On slot-bound clients (tp=4) use stays far below ``M``; on memory-bound ones (tp=2)
    the reservation line sits at ``M`` and the batch is memory-limited.
    """
    _require(trace, ["client", "start_s", "end_s", "kv_used_tokens"], "plot_kv_usage")
    ax = _axes(ax)
    reserved = (
        dict((j, y) for j, _, y in _steps(trace, "kv_reserved_tokens"))
        if "kv_reserved_tokens" in trace
        else {}
    )
    for j, x, y in _steps(trace, "kv_used_tokens"):
        (line,) = ax.step(x, y, where="post", linewidth=0.8, label=f"client {j}")
        if j in reserved:
            ax.step(
                x, reserved[j], where="post", linewidth=0.6, linestyle=":", color=line.get_color()
            )
    if capacity is not None:
        ax.axhline(
            capacity, color="black", linestyle="--", linewidth=0.8, label=f"M = {capacity:,.0f}"
        )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("KV tokens (used; reserved dotted)")
    ax.set_ylim(bottom=0)
    _legend_outside(ax, fontsize=8)
    return ax


# Colours of the policies' own bounds (one per bound, dotted), beside the dashed black T_LB.
OWN_BOUND_COLORS = ["#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _bound_name(model: object) -> str:
    """The legend name of a policy's own bound from what it covers (``tables.bound_model``)."""
    model = "" if model is None or (isinstance(model, float) and np.isnan(model)) else str(model)
    return f"T_LB with {model}" if model else "own T_LB"


def plot_makespan_bars(
    table: pd.DataFrame,
    lower_bound_s: float,
    ax: Axes | None = None,
    bound_label: str = "T_LB",
) -> Axes:
    """Makespan per policy as horizontal bars (one row per policy, labelled in seconds) with
    the lower bound ``T_LB`` as a dashed line.

    Rows whose own ``lower_bound_s`` differs from ``lower_bound_s`` (chunked prefill:
    the mixed-iteration bound; on-demand admission: the bound without the reservation
    share) get that bound as a mark across their bar, one line style per bound, named in
    the legend by the table's ``bound_model`` column (``tables.with_bound_models``:
    "T_LB with mixed iterations = 81.46 s"; "own T_LB" without it). Values print with the
    report tables' decimals (2, or 4 when all are below a second). The axis starts near
    the lowest bound, not at 0, so the gaps are visible; its label says so.
    """
    _require(table, ["policy", "makespan_s"], "plot_makespan_bars")
    n = len(table)
    ax = _axes(ax, (7.0, 1.2 + 0.32 * n))
    t = table["makespan_s"].to_numpy(dtype=float)
    colors = [
        BASELINE_COLOR
        if p == "baseline"
        else "#2ca02c"
        if p == "hybrid"
        else "#ff7f0e"
        if "chunked" in str(p)
        else "#9ecae1"
        for p in table["policy"]
    ]
    y = np.arange(n)
    bars = ax.barh(y, t, color=colors, height=0.7)
    ax.set_yticks(y, table["policy"].astype(str))
    ax.invert_yaxis()
    own = (
        table["lower_bound_s"].to_numpy(dtype=float)
        if "lower_bound_s" in table.columns
        else np.full(n, lower_bound_s)
    )
    # the report tables' decimals: 2, or 4 when every value is below a second
    d = 4 if max([abs(lower_bound_s), *np.abs(t)]) < 1 else 2
    texts = ax.bar_label(bars, labels=[f"{v:.{d}f}" for v in t], fontsize=8, padding=3)
    for text in texts:  # readable where a bound's line crosses the label
        text.set_bbox({"facecolor": "white", "edgecolor": "none", "pad": 0.3, "alpha": 0.85})
    ax.axvline(
        lower_bound_s,
        color="black",
        linestyle="--",
        linewidth=1.0,
        zorder=1.5,
        label=f"{bound_label} = {lower_bound_s:.{d}f} s",
    )
    other = ~np.isclose(own, lower_bound_s)
    models = table["bound_model"].tolist() if "bound_model" in table.columns else [None] * n
    names: dict[tuple[str, str], list[int]] = {}
    for k in np.flatnonzero(other):
        names.setdefault((_bound_name(models[k]), f"{own[k]:.{d}f}"), []).append(int(k))
    for i, ((name, value), rows) in enumerate(names.items()):
        rows = np.array(rows)
        ax.vlines(
            own[rows],
            y[rows] - 0.45,
            y[rows] + 0.45,
            colors=OWN_BOUND_COLORS[i % len(OWN_BOUND_COLORS)],
            linestyles=":",
            linewidth=2.2,
            zorder=3,
            label=f"{name} = {value} s",
        )
    lo = min(lower_bound_s, float(t.min()), float(own.min()))
    hi = max(lower_bound_s, float(t.max()))
    ax.set_xlim(max(0.0, lo - 0.25 * (hi - lo + 1e-9)), hi + 0.14 * (hi - lo + 1e-9))
    ax.set_xlabel("makespan T (s, axis not from 0)")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.13), fontsize=8, frameon=False)
    return ax


def _paired(cases: pd.DataFrame, value: str) -> pd.DataFrame:
    _require(cases, ["case", "policy", value], "study cases")
    return cases.pivot_table(index="case", columns="policy", values=value)


def plot_paired_makespan(
    cases: pd.DataFrame,
    x: str = "baseline",
    y: str = "hybrid",
    value: str = "makespan_s",
    ax: Axes | None = None,
) -> Axes:
    """One point per case: policy ``y``'s makespan against policy ``x``'s, with ``y = x``.

    Points below the diagonal are cases ``y`` wins; the count is in the title.
    """
    ax = _axes(ax, (4.5, 4.5))
    p = _paired(cases, value)
    for name in (x, y):
        if name not in p.columns:
            raise ValueError(
                f"plot_paired_makespan: policy {name!r} not in the cases (have {', '.join(map(str, p.columns))})"
            )
    ax.scatter(p[x], p[y], s=14, alpha=0.8, color="#2ca02c")
    lo = float(np.nanmin(p[[x, y]].to_numpy()))
    hi = float(np.nanmax(p[[x, y]].to_numpy()))
    pad = 0.03 * (hi - lo + 1e-9)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", linewidth=0.8, label="y = x")
    below = int((p[y] < p[x]).sum())
    ax.set_title(f"{y} < {x} (below the diagonal) in {below} of {len(p)} cases", fontsize=9)
    ax.set_xlabel(f"{x}: {label(value)}")
    ax.set_ylabel(f"{y}: {label(value)}")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=8, loc="upper left")
    return ax


def plot_gain_hist(
    cases: pd.DataFrame,
    baseline: str = "baseline",
    policy: str = "hybrid",
    paper_pp: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Histogram over cases of the utilization gain ``100 (U_policy - U_baseline)`` (pp).

    The mean is a solid line; ``paper_pp`` (e.g. the paper's +8.0) a dashed one.
    """
    ax = _axes(ax, (6.0, 3.5))
    p = _paired(cases, "utilization")
    gain = (p[policy] - p[baseline]).dropna() * 100
    ax.hist(gain, bins=min(30, max(5, len(gain) // 3)), color="#2ca02c", alpha=0.8)
    ax.axvline(gain.mean(), color="black", linewidth=1.2, label=f"mean {gain.mean():+.1f} pp")
    if paper_pp is not None:
        ax.axvline(
            paper_pp,
            color="black",
            linestyle="--",
            linewidth=1.0,
            label=f"paper {paper_pp:+.1f} pp",
        )
    ax.set_xlabel(f"U gain, {policy} vs {baseline} (percentage points)")
    ax.set_ylabel("cases")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="best")
    return ax


def plot_sensitivity(
    df: pd.DataFrame, x: str, y: str, hue: str | None = None, ax: Axes | None = None
) -> Axes:
    """``y`` against ``x``, one line per ``hue`` value; categorical ``x`` (a sort key) keeps its order.

    Use on ``sweep.sweep`` output, filtered to the rows to compare.
    """
    _require(df, [x, y] + ([hue] if hue else []), "plot_sensitivity")
    ax = _axes(ax, (5.5, 3.5))
    numeric = pd.api.types.is_numeric_dtype(df[x])
    cats = list(dict.fromkeys(df[x])) if not numeric else None
    groups = df.groupby(hue, sort=False) if hue else [(None, df)]
    for key, part in groups:
        part = part.groupby(x, sort=False)[y].mean().reset_index()
        xs = part[x].to_numpy() if numeric else np.array([cats.index(v) for v in part[x]])
        order = np.argsort(xs, kind="stable")
        ax.plot(
            xs[order],
            part[y].to_numpy()[order],
            marker="o",
            label=None if key is None else str(key),
        )
    if not numeric:
        ax.set_xticks(range(len(cats)), [str(c) for c in cats])
    elif len(df[x].unique()) > 2 and (df[x] > 0).all() and df[x].max() / df[x].min() >= 8:
        ax.set_xscale("log", base=2)  # multipliers and powers of two read best on a log axis
        ticks = sorted(df[x].unique())
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel(label(x))
    ax.set_ylabel(label(y))
    _percent_axis(ax, y)
    if hue:
        _legend_outside(ax, fontsize=8, title=label(hue), title_fontsize=8)
    return ax


def plot_stage_gains(
    deltas: pd.DataFrame, value: str = "utilization_gain_pp", ax: Axes | None = None
) -> Axes:
    """Horizontal bars: the gain each stage adds (``sweep.ablation_deltas`` rows), total last."""
    _require(deltas, ["stage", value], "plot_stage_gains")
    ax = _axes(ax, (6.5, 3.0))
    v = deltas[value].to_numpy(dtype=float)
    colors = [
        "#2ca02c" if s == "total" else ("#9ecae1" if val >= 0 else "#fdae6b")
        for s, val in zip(deltas["stage"], v, strict=True)
    ]
    bars = ax.barh(deltas["stage"].astype(str), v, color=colors)
    ax.bar_label(bars, labels=[f"{val:+.2f}" for val in v], fontsize=8)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.margins(x=0.15)  # room for the value labels on both sides
    ax.invert_yaxis()
    ax.set_xlabel(label(value))
    return ax


def plot_load_curves(
    table: pd.DataFrame,
    y: str,
    ax: Axes | None = None,
    x: str = "offered_rps",
    hue: str = "policy",
    log: bool = False,
    limit: float | None = None,
    diagonal: bool = False,
) -> Axes:
    """A latency-load curve: ``y`` against the offered rate, one line per ``hue`` value
    (``studies.serving.load_sweep`` rows of one trace and cluster).

    ``log``: a log y axis (latencies that grow by orders of magnitude past saturation);
    ``limit``: a dotted line at an SLO; ``diagonal``: the line ``y = x`` (goodput equal to
    the offered rate: every request within the SLO). Axis labels carry the units
    (``labels.LABELS``); the legend is left to the caller (one per figure).
    """
    _require(table, [x, y, hue], "plot_load_curves")
    ax = _axes(ax, (5.0, 3.5))
    for key, part in table.groupby(hue, sort=False):
        part = part.sort_values(x)
        ax.plot(part[x], part[y], marker="o", ms=4, lw=1.4, label=str(key))
    if log:
        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 0.5, 2, 100 rather than 5 x 10^-1
        ax.yaxis.set_major_formatter(plain)
        lo, hi = ax.get_ylim()  # label the minor ticks too when the axis spans few decades
        ax.yaxis.set_minor_formatter(plain if np.log10(hi / lo) < 1.5 else NullFormatter())
    if limit is not None:
        ax.axhline(limit, ls=":", color="black", lw=1.0, label="SLO")
    if diagonal:
        top = float(table[x].max())
        ax.plot([0, top], [0, top], ls="--", color="grey", lw=0.9, label="every request within")
    ax.set_xlabel(label(x))
    ax.set_ylabel(label(y))
    ax.tick_params(labelsize=9)
    _percent_axis(ax, y)
    return ax
