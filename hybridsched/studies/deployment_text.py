"""The words of "my deployment" (notebook 07), generated from its results: ``reading`` (the
report's few sentences), ``claim`` (the index's one line, stored in the results JSON) and
``tradeoff_plot`` (goodput against TTFT p99, the changes the rule reads).

Both take the results as ``deployment`` computes them: the runs (one row per policy and
seed), the verdict (``deployment_verdict.verdict``), the per-policy loads
(``deployment.load_summary``) and the capacity estimate (``deployment.capacity_need``).
"""

from __future__ import annotations

import math

import pandas as pd

from hybridsched.studies.cells import resolve
from hybridsched.studies.deployment_verdict import changes, ok_policies, pct


def _slo(cell: dict) -> str:
    p = resolve(cell)
    return f"TTFT <= {p['slo_ttft']:g} s and TPOT <= {p['slo_tpot']:g} s"


def _changes(h: dict, level: float) -> str:
    """ "goodput +0.5% (-0.1% to +1.1%) and TTFT p99 +37% (...)" of a headline pair."""
    parts = []
    for short, name in (("goodput", "goodput"), ("ttft_p99", "TTFT p99")):
        lo, hi = h[f"{short}_change_low"], h[f"{short}_change_high"]
        iv = (
            f" ({level:.0%} interval {pct(lo)} to {pct(hi)})"
            if pct(lo) and pct(hi) and pct(lo) != pct(hi)
            else ""
        )
        parts.append(f"{name} {pct(h[f'{short}_change'])}{iv}")
    return " and ".join(parts)


def _verdict_lines(runs: pd.DataFrame, v: dict) -> list[str]:
    """The verdict in words: the pick and why, then the policies worse than the reference."""
    w, ref, n, level = v["winner"], v["reference"], len(v["seeds"]), v["level"]
    h, seeds = v.get("headline"), f"over {n} seed{'s' if n > 1 else ''}"
    if v["outcome"] == "win":
        line = f"- **{w} is the pick**: {seeds} it beats {ref}, with {_changes(h, level)}."
    elif v["outcome"] == "trade-off":
        trades = "; ".join(
            f"{q} against {w} has {_changes(changes(runs, q, w, level), level)}"
            for q in v["trade_offs"]
        )
        line = (
            f"- **No single winner** {seeds}: goodput and TTFT p99 disagree. {trades}. The "
            f"trade-off table and figure show both; without a preference between them, "
            f"{w}, the simpler, is kept."
        )
    else:
        line = f"- **{w} is the pick**: {seeds} no policy beats {ref} beyond the seeds' spread."
    ties = v["tied_with_winner"]
    if ties:
        line += f" {', '.join(ties)} tie{'s' if len(ties) == 1 else ''} with {w}; ties go to {w}, the simpler."
    lines = [line]
    worse = [p for p, r in v["against_reference"].items() if r == "loses"]
    for q in worse:
        lines.append(f"- {q} is worse than {ref}: {_changes(changes(runs, q, ref, level), level)}.")
    return lines


def _seeds_line(runs: pd.DataFrame, v: dict) -> str:
    """What the seeds varied, or that they could not vary anything."""
    ref = runs[runs["policy"] == v["reference"]].sort_values("seed")
    only = f"only the {v['min_effect']:.0%} threshold separates the policies"
    if len(ref) < 2:
        return f"- One seed ({v['seeds'][0]}): no spread is known, so {only}."
    cols = ["goodput_rps", "ttft_p99_s", "makespan_s"]
    seeds = f"- Seeds {', '.join(str(s) for s in v['seeds'])}"
    if (ref[cols].nunique() == 1).all():
        return (
            f"{seeds} gave identical results (the same requests), so the spread is 0 and "
            f"{only}; a bounded `window` lets each seed serve another stretch of a trace."
        )
    windows = list(dict.fromkeys(ref["window"].dropna().astype(str)))
    if len(windows) > 1:
        return (
            f"{seeds}: each serves another stretch of the trace (windows {', '.join(windows)} s)."
        )
    return f"{seeds}: each draws the requests or their arrivals anew."


def _load_words(r: pd.Series) -> str:
    rps = r.get("max_rate_rps", math.nan)
    rps = f" (about {rps:.2f} req/s)" if isinstance(rps, float) and math.isfinite(rps) else ""
    top = " (the top of the range searched)" if bool(r.get("capped", False)) else ""
    return f"rate_scale {r['max_rate_scale']:.3g}{rps}{top}"


def _overlap(held: pd.DataFrame, p: str, q: str) -> bool:
    """The load searches of ``p`` and ``q`` cannot tell them apart: each one's highest load
    held lies below the other's lowest load missed (``rate_scale_upper``; unknown: apart)."""
    if "rate_scale_upper" not in held.columns:
        return held.loc[p, "max_rate_scale"] == held.loc[q, "max_rate_scale"]
    a, b = held.loc[p], held.loc[q]
    return bool(
        a["max_rate_scale"] < b["rate_scale_upper"] and b["max_rate_scale"] < a["rate_scale_upper"]
    )


def _load_lines(loads: pd.DataFrame, v: dict) -> list[str]:
    """The highest load held on every seed, by whom (and who is within the search's
    resolution of it), and the pick's against the reference."""
    if "max_rate_scale" not in loads.columns:
        return []
    good = loads.dropna(subset=["max_rate_scale"]).set_index("policy")
    held = good[good["max_rate_scale"] > 0]
    if held.empty:
        return []
    top = held["max_rate_scale"].max()
    best = held.index[held["max_rate_scale"] == top].tolist()
    near = [p for p in held.index if p not in best and _overlap(held, p, best[0])]
    txt = (
        f"- The highest load within the SLO on every seed: {_load_words(held.loc[best[0]])}, "
        f"held by {', '.join(best)}"
    )
    if near:
        txt += f" ({', '.join(near)} within the search's resolution of it)"
    ref, w = v["reference"], v["winner"]
    if ref in held.index and ref not in best:
        txt += f"; {ref} up to rate_scale {held.loc[ref, 'max_rate_scale']:.3g}"
    none = [p for p in good.index if p not in held.index]
    if none:
        txt += f"; {', '.join(none)} held it at no load searched"
    lines = [txt + "."]
    if w != ref and w in held.index and ref in held.index:
        a, b = held.loc[w, "max_rate_scale"], held.loc[ref, "max_rate_scale"]
        more = "the same load as" if _overlap(held, w, ref) else f"{pct(a / b - 1)} load against"
        lines.append(f"- {w} holds the SLO up to {_load_words(held.loc[w])}: {more} {ref}.")
    return lines


def overload_text(need: dict, clients: int) -> str:
    """The overload in words: the GPUs needed and how they were estimated (``capacity_need``)."""
    r = need["rate_scale"]
    head = f"At rate_scale {r:g} the cluster cannot serve this load under the SLO with any policy"
    if need["reason"] == "latency":
        low = need["lowest_searched"]
        return (
            f"{head}, and more GPUs as replicas would not help: {need['basis_policy']} misses "
            f"the SLO even at rate_scale {low:.3g} (1/{r / low:.0f} of this load), where "
            "requests hardly queue. The SLO is tighter than a request's own latency on this "
            "cluster: a looser SLO, a larger tp or faster GPUs are needed."
        )
    b, L = need["basis_policy"], need["basis_load"]
    check = need.get("check_attainment")
    check = math.nan if check is None else check
    verdict = (
        "enough (not necessarily the fewest: notebook 08 searches for those)"
        if need.get("check_holds")
        else "not enough: the estimate is short (notebook 08 plans the cluster)"
    )
    return (
        f"{head}; it needs about {need['gpus']} GPUs ({need['replicas']} replicas of "
        f"tp={need['tp']}; now {need['gpus_now']}). Estimated as {clients} replicas x {r:g} / "
        f"{L:.3g}, rounded up to whole replicas, where {L:.3g} is the highest load {b} held "
        "on every seed: it takes the load served within the SLO to grow in proportion to the "
        f"replicas. Checked: {b} on {need['replicas']} replicas keeps {check:.0%} of requests "
        f"within the SLO at this load on its worst seed, {verdict}."
    )


def reading(runs, v, loads, need, cell, target) -> str:
    """A few Markdown sentences: the verdict (the pick, ties and trade-offs, with the
    intervals), what the seeds varied, who meets the SLO at this load, the load each policy
    holds or, when none serves this load, the GPUs it needs, and the failed policies."""
    p = resolve(cell)
    lines = _verdict_lines(runs, v) + [_seeds_line(runs, v)]
    ok = runs[runs["policy"].isin(ok_policies(runs))]
    worst = ok.groupby("policy", sort=False)["slo_attainment"].min()
    meet = worst.index[worst >= target].tolist()
    rate = float(ok["offered_rps"].mean())
    load = f"rate_scale {p['rate_scale']:g}" + (
        f" (about {rate:.2f} req/s)" if math.isfinite(rate) else ""
    )
    lines.append(
        f"- At {load}, {len(meet)} of {len(worst)} policies keep {target:.0%} of requests "
        f"within {_slo(cell)} on every seed" + (f": {', '.join(meet)}." if meet else ".")
    )
    if need.get("overloaded"):
        lines.append("- " + overload_text(need, int(p["clients"])))
    lines += _load_lines(loads, v)
    for pol, part in runs[runs["status"] != "ok"].groupby("policy", sort=False):
        lines.append(f"- {pol} did not run on every seed: {part['error'].iloc[0]}")
    return "\n".join(lines)


def claim(v: dict, loads, need: dict, cell: dict) -> str:
    """The index's one line, from the results: the setup, the verdict and its changes, and
    the overload or the pick's highest load within the SLO."""
    p = resolve(cell)
    w, ref, h, n = v["winner"], v["reference"], v.get("headline"), len(v["seeds"])
    setup = (
        f"{p['model']} on {p['clients']} x {p['hardware']} (tp={p['tp']}), {p['workload']} at "
        f"{p['rate_scale']:g}x its rate, {n} seed{'s' if n > 1 else ''}"
    )
    if v["outcome"] == "win":
        says = f"{w} beats {ref} ({_short(h)})"
    elif v["outcome"] == "trade-off":
        says = f"no single winner: {h['policy']} against {w} has {_short(h)}"
    else:
        says = f"no policy beats {ref} beyond the seeds' spread, so {w} is kept" + (
            f" ({h['policy']}: {_short(h)})" if h else ""
        )
    if need.get("overloaded"):
        more = (
            f"it needs about {need['gpus']} GPUs"
            if need.get("gpus")
            else "more replicas would not help"
        )
        tail = f"the cluster cannot serve this load under the SLO with any policy; {more}"
    else:
        known = "policy" in loads.columns and w in set(loads["policy"])
        row = loads.set_index("policy").loc[w] if known else None
        top = row["max_rate_scale"] if row is not None else None
        tail = (
            f"{w} holds the SLO up to {top:.3g}x the trace's rate"
            if top is not None and pd.notna(top) and top > 0
            else f"{w} holds the SLO at no load searched"
            if top is not None and pd.notna(top)
            else ""
        )
    return f"{setup}: {says}" + (f"; {tail}" if tail else "") + "."


def _short(h: dict) -> str:
    return f"goodput {pct(h['goodput_change'])}, TTFT p99 {pct(h['ttft_p99_change'])}"


def tradeoff_plot(table: pd.DataFrame, v: dict, ax=None):
    """Each policy's paired change against the reference (``tradeoff_table``): goodput
    (x) against TTFT p99 (y), in percent, with the rule's intervals as bars; the band
    within ``min_effect`` of 0 shaded (a tie whatever the interval), the pick in orange,
    policies with the same changes labelled together. Returns the Axes."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.subplots(figsize=(5.5, 4))[1]
    e = 100 * v["min_effect"]
    ax.axvspan(-e, e, color="0.92", zorder=0)
    ax.axhspan(-e, e, color="0.92", zorder=0)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    cols = ["goodput_change", "ttft_p99_change"]
    t = table.assign(**{c: table[c].fillna(0.0) for c in cols})
    for (x, y), part in t.groupby(cols, sort=False):
        pols = part["policy"].tolist()
        r = part.iloc[0]
        color = "tab:orange" if v["winner"] in pols else "tab:blue"
        xe = _err(x, r["goodput_change_low"], r["goodput_change_high"])
        ye = _err(y, r["ttft_p99_change_low"], r["ttft_p99_change_high"])
        ax.errorbar(100 * x, 100 * y, xerr=xe, yerr=ye, fmt="o", color=color, capsize=3)
        ax.annotate(
            ", ".join(pols),
            (100 * x, 100 * y),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel(f"goodput against {v['reference']} (%)")
    ax.set_ylabel(f"TTFT p99 against {v['reference']} (%)")
    ax.set_title(
        f"paired over {len(v['seeds'])} seeds, {v['level']:.0%} intervals (right, lower: better)",
        fontsize=9,
    )
    return ax


def _err(mid: float, low, high) -> list[list[float]]:
    """Error bar lengths (percent) below and above ``mid``; 0 where an end is unknown."""
    lo = 0.0 if low is None or pd.isna(low) else 100 * (mid - low)
    hi = 0.0 if high is None or pd.isna(high) else 100 * (high - mid)
    return [[max(lo, 0.0)], [max(hi, 0.0)]]
