"""One user's deployment: every policy on one cluster, workload, load and SLO, the winner
against ``vllm``, and the highest load each policy serves within the SLO (notebook 07).

A deployment is a cell (``cells.DEFAULTS`` names) without ``policy``: model, hardware (a
profile name or a calibrated profile YAML), ``clients``, ``tp``, ``max_batch``, workload
options, ``rate_scale`` (the load: every arrival time divided by it) and the SLO
(``slo_ttft``, ``slo_tpot``, seconds).

- ``compare(cell, policies)``: one row per policy (``cells.run_cell``) with the headline
  columns ``HEADLINE``; a policy that fails keeps its row with ``status='failed'`` and
  the error.
- ``verdict(table, reference)``: the winner (highest goodput, then shortest makespan)
  and its gain over the reference policy.
- ``max_load(cell, policy)``: the highest ``rate_scale`` at which at least ``target`` of
  the requests meet both SLOs, by ``capacity.Bisection`` over ``rate_scale`` (start at the
  cell's own, double or halve, then bisect to ``rel_tol``).
- ``verdict_table(table, verdict)``: the winner beside the reference, metric by metric.
- ``reading(...)``: a few generated sentences that say the above in words.
"""

from __future__ import annotations

import math

import pandas as pd

from hybridsched.studies.capacity import Bisection
from hybridsched.studies.cells import resolve, run_cell

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
LOAD_COLUMNS = [
    "policy",
    "max_rate_scale",
    "max_rate_rps",
    "rate_scale_upper",
    "capped",
    "simulations",
    "error",
]


def _check_cell(cell: dict) -> dict:
    if "policy" in cell:
        raise ValueError("deployment cell: give the policies separately, not 'policy'")
    p = resolve(cell)  # an unknown or bad option raises here, naming it
    if p["slo_ttft"] is None or p["slo_tpot"] is None:
        raise ValueError("deployment cell: slo_ttft and slo_tpot (seconds) must both be set")
    return dict(cell)


def compare(cell: dict, policies=COMPARED_POLICIES) -> pd.DataFrame:
    """Every policy on the deployment: the ``HEADLINE`` columns plus ``status``, ``error``
    (one row per policy)."""
    cell = _check_cell(cell)
    df = pd.DataFrame([run_cell({**cell, "policy": pol}) for pol in policies])
    for c in (*HEADLINE, "error"):
        if c not in df.columns:
            df[c] = math.nan
    return df[[*HEADLINE, "status", "error"]].reset_index(drop=True)


def verdict(table: pd.DataFrame, reference: str = "vllm") -> dict:
    """The winning policy (highest ``goodput_rps``, then shortest ``makespan_s``) and how it
    compares with ``reference``: goodput ratio, makespan reduction and TTFT p99 ratio."""
    ok = table[table["status"] == "ok"]
    if ok.empty:
        raise ValueError(
            "no policy ran: "
            + "; ".join(f"{p}: {e}" for p, e in zip(table["policy"], table["error"], strict=True))
        )
    best = ok.sort_values(["goodput_rps", "makespan_s"], ascending=[False, True]).iloc[0]
    out = {"winner": str(best["policy"]), "reference": reference}
    ref = ok[ok["policy"] == reference]
    if ref.empty:
        return {
            **out,
            "goodput_ratio": math.nan,
            "makespan_reduction": math.nan,
            "ttft_p99_ratio": math.nan,
        }
    r = ref.iloc[0]
    return {
        **out,
        "goodput_ratio": _ratio(best["goodput_rps"], r["goodput_rps"]),
        "makespan_reduction": 1 - _ratio(best["makespan_s"], r["makespan_s"]),
        "ttft_p99_ratio": _ratio(best["ttft_p99_s"], r["ttft_p99_s"]),
    }


def _ratio(a, b) -> float:
    a, b = float(a), float(b)
    return a / b if b > 0 else math.nan


def max_load(
    cell: dict,
    policy: str,
    target: float = 0.9,
    rel_tol: float = 0.05,
    max_doublings: int = 4,
) -> dict:
    """The highest ``rate_scale`` measured to keep ``slo_attainment >= target`` for ``policy``.

    ``max_rate_rps`` is that load in requests per second (``throughput`` of the request
    count over the arrival span at ``rate_scale`` 1, times the scale; NaN when unknown);
    ``rate_scale_upper`` the lowest scale measured to miss (inf when ``capped``: the top of
    the searched range held). A failed simulation stops the search and fills ``error``.
    """
    if not 0 < target <= 1:
        raise ValueError(f"target must be in (0, 1], got {target!r}")
    cell = _check_cell(cell)
    start = float(resolve(cell)["rate_scale"])
    b = Bisection(start, rel_tol, max_doublings)
    error = None
    while (x := b.next()) is not None:
        x = float(f"{x:.4g}")
        row = run_cell({**cell, "policy": policy, "rate_scale": x})
        if row.get("status") != "ok":
            error = str(row.get("error"))
            break
        b.update(x, row["slo_attainment"] >= target)
    return {
        "policy": policy,
        "max_rate_scale": b.lo if error is None else math.nan,
        "max_rate_rps": b.lo * base_rate(cell) if error is None else math.nan,
        "rate_scale_upper": b.hi,
        "capped": b.capped,
        "simulations": len(b.tested),
        "error": error,
    }


def base_rate(cell: dict) -> float:
    """Requests per second of the deployment's arrivals at ``rate_scale`` 1 (requests over
    the span from the first to the last arrival); NaN when all arrive at once."""
    from hybridsched.studies.cells import requests_of

    reqs = requests_of(resolve({**cell, "rate_scale": 1.0}))
    t = reqs["arrival_s"] if "arrival_s" in reqs else None
    if t is None or len(t) < 2 or float(t.max() - t.min()) <= 0:
        return math.nan
    return len(t) / float(t.max() - t.min())


def max_loads(cell: dict, policies=COMPARED_POLICIES, **kw) -> pd.DataFrame:
    """``max_load`` of every policy, one row each (columns ``LOAD_COLUMNS``)."""
    return pd.DataFrame([max_load(cell, p, **kw) for p in policies], columns=LOAD_COLUMNS)


VERDICT_METRICS = {
    "goodput_rps": "goodput (req/s within the SLO)",
    "slo_attainment": "requests within the SLO (%)",
    "throughput_rps": "throughput (req/s)",
    "makespan_s": "makespan (s)",
    "ttft_p99_s": "TTFT p99 (s)",
    "tpot_p99_s": "TPOT p99 (s/token)",
    "num_preemptions": "preemptions",
}


def verdict_table(table: pd.DataFrame, v: dict) -> pd.DataFrame:
    """One row per headline metric (``VERDICT_METRICS``, those the table has): the winner's
    value, the reference's and the relative change (winner / reference - 1; NaN when the
    reference is missing or zero)."""
    ok = table[table["status"] == "ok"].set_index("policy")
    w, ref = v["winner"], v["reference"]
    other, w_name, ref_name = ref, f"{w} (winner)", f"{ref} (reference)"
    if w == ref:  # the reference wins: compare it with the best of the others
        other = _runner_up(ok, w)
        w_name, ref_name = f"{w} (winner, reference)", f"{other} (runner-up)"
    rows = []
    for col, name in VERDICT_METRICS.items():
        if col not in ok.columns:
            continue
        unit = 100.0 if col == "slo_attainment" else 1.0  # a share, shown in percent
        a = unit * float(ok.loc[w, col])
        b = unit * float(ok.loc[other, col]) if other in ok.index else math.nan
        rows.append(
            {
                "metric": name,
                w_name: a,
                ref_name: b,
                "change": a / b - 1 if b > 0 else math.nan,
            }
        )
    return pd.DataFrame(rows)


def _runner_up(ok: pd.DataFrame, winner: str) -> str | None:
    """The best policy but ``winner`` (highest goodput, then shortest makespan), or None."""
    rest = ok.drop(index=winner).sort_values(["goodput_rps", "makespan_s"], ascending=[False, True])
    return str(rest.index[0]) if len(rest) else None


def _winner_line(ok: pd.DataFrame, v: dict, p: dict, slo: str, rate: float) -> str:
    w, ref = v["winner"], v["reference"]
    load = f"rate_scale {p['rate_scale']:g}" + (
        f" (about {rate:.2f} req/s)" if math.isfinite(rate) else ""
    )
    g = ok.loc[w, "goodput_rps"]
    if w == ref or math.isnan(v["goodput_ratio"]):
        line = f"- **{w} wins** at {load}: the highest goodput ({g:.2f} req/s meeting {slo})"
        other = _runner_up(ok, w) if w == ref else None
        if other is None:
            return line + "."
        g2 = ok.loc[other, "goodput_rps"]
        if g2 >= g:
            gap = "the same goodput with a longer makespan"
        else:
            gap = f"{100 * (1 - g2 / g):.1f}% less goodput ({g2:.2f} req/s)"
        return (
            line + f"; no other policy beats the reference: the runner-up, {other}, serves {gap}."
        )
    ratio, lat = v["goodput_ratio"], v["ttft_p99_ratio"]
    t_w, t_r = ok.loc[w, "ttft_p99_s"], ok.loc[ref, "ttft_p99_s"]
    tail = f"{lat:.2f} times {ref}'s" if lat >= 1 else f"{100 * (1 - lat):.0f}% lower than {ref}'s"
    red = v["makespan_reduction"]
    margin = (
        f"with the same goodput as {ref}"
        if abs(ratio - 1) < 5e-4
        else f"by {100 * (ratio - 1):.1f}% more goodput than {ref}"
    )
    line = (
        f"- **{w} wins** at {load}, {margin}: {g:.2f} against "
        f"{ok.loc[ref, 'goodput_rps']:.2f} req/s meeting {slo}; its makespan is "
        f"{100 * abs(red):.1f}% {'shorter' if red >= 0 else 'longer'} and its TTFT p99 {tail} "
        f"({t_w:.2f} s against {t_r:.2f} s)."
    )
    if ratio - 1 < 0.05:
        line += (
            " A margin under 5% comes from one window and one seed: render again with another "
            "`window` or `seed` before relying on it."
        )
    return line


def reading(table: pd.DataFrame, v: dict, loads: pd.DataFrame, cell: dict, target: float) -> str:
    """A few Markdown sentences: the winner and its margin over the reference, who meets the
    SLO at this load, and the load each policy still serves within it."""
    p = resolve(cell)
    slo = f"TTFT <= {p['slo_ttft']:g} s and TPOT <= {p['slo_tpot']:g} s"
    ok = table[table["status"] == "ok"].set_index("policy")
    ref = v["reference"]
    rate = base_rate(cell) * float(p["rate_scale"])
    lines = [_winner_line(ok, v, p, slo, rate)]
    meet = ok.index[ok["slo_attainment"] >= target].tolist()
    lines.append(
        f"- At this load {len(meet)} of {len(ok)} policies keep {target:.0%} of requests within "
        f"{slo}" + (f": {', '.join(meet)}." if meet else ".")
    )
    lines += _load_lines(loads, v, ref)
    failed = table[table["status"] != "ok"]
    for _, r in failed.iterrows():
        lines.append(f"- {r['policy']} did not run: {r['error']}")
    return "\n".join(lines)


def _load_lines(loads: pd.DataFrame, v: dict, ref: str) -> list[str]:
    """The highest load within the SLO, who reaches it, and the winner's against the reference's."""
    good = loads.dropna(subset=["max_rate_scale"]).set_index("policy")
    if good.empty:
        return []

    def at(pol: str) -> str:
        r = good.loc[pol]
        rps = r.get("max_rate_rps", math.nan)
        rps = f" ({rps:.2f} req/s)" if isinstance(rps, float) and math.isfinite(rps) else ""
        return f"rate_scale {r['max_rate_scale']:.3g}{rps}"

    top = good["max_rate_scale"].max()
    best = good.index[good["max_rate_scale"] == top].tolist()
    capped = " (the top of the searched range)" if bool(good.loc[best, "capped"].any()) else ""
    txt = f"- The highest load within the SLO: {at(best[0])}{capped}, reached by {', '.join(best)}"
    if ref in good.index and ref not in best:
        txt += f"; {ref} up to {good.loc[ref, 'max_rate_scale']:.3g}"
    lines = [txt + "."]
    w = v["winner"]
    if w != ref and w in good.index and ref in good.index:
        a, b = good.loc[w, "max_rate_scale"], good.loc[ref, "max_rate_scale"]
        if a == b:
            lines.append(f"- {w} and {ref} hold the SLO up to the same load, {at(w)}.")
        else:
            more = "more" if a > b else "less"
            lines.append(
                f"- {w} holds the SLO up to {at(w)}, {100 * abs(a / b - 1):.1f}% {more} load "
                f"than {ref} ({at(ref)})."
            )
    return lines
