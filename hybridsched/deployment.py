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
- ``reading(...)``: a few generated sentences that say the above in words.
"""

from __future__ import annotations

import math

import pandas as pd

from hybridsched.capacity import Bisection
from hybridsched.cells import resolve, run_cell

POLICIES = ("vllm", "baseline", "chunked", "hybrid-chunked", "online-hybrid", "hybrid")
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


def compare(cell: dict, policies=POLICIES) -> pd.DataFrame:
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
    from hybridsched.cells import requests_of

    reqs = requests_of(resolve({**cell, "rate_scale": 1.0}))
    t = reqs["arrival_s"] if "arrival_s" in reqs else None
    if t is None or len(t) < 2 or float(t.max() - t.min()) <= 0:
        return math.nan
    return len(t) / float(t.max() - t.min())


def max_loads(cell: dict, policies=POLICIES, **kw) -> pd.DataFrame:
    """``max_load`` of every policy, one row each (columns ``LOAD_COLUMNS``)."""
    return pd.DataFrame([max_load(cell, p, **kw) for p in policies], columns=LOAD_COLUMNS)


def reading(table: pd.DataFrame, v: dict, loads: pd.DataFrame, cell: dict, target: float) -> str:
    """A few Markdown sentences: the winner and its margin, who meets the SLO at this load,
    and the load each policy still serves within it."""
    p = resolve(cell)
    slo = f"TTFT <= {p['slo_ttft']:g} s and TPOT <= {p['slo_tpot']:g} s"
    ok = table[table["status"] == "ok"].set_index("policy")
    lines = []
    w, ref = v["winner"], v["reference"]
    if w == ref or math.isnan(v["goodput_ratio"]):
        lines.append(
            f"- **{w} wins** at rate_scale {p['rate_scale']:g}: the highest goodput "
            f"({ok.loc[w, 'goodput_rps']:.2f} req/s meeting {slo})."
        )
    else:
        lines.append(
            f"- **{w} wins** at rate_scale {p['rate_scale']:g}: goodput "
            f"{ok.loc[w, 'goodput_rps']:.2f} req/s against {ok.loc[ref, 'goodput_rps']:.2f} "
            f"for {ref} (x{v['goodput_ratio']:.2f}), makespan "
            f"{100 * v['makespan_reduction']:.1f}% shorter, TTFT p99 "
            f"x{v['ttft_p99_ratio']:.2f} of {ref}'s."
        )
    meet = ok.index[ok["slo_attainment"] >= target].tolist()
    lines.append(
        f"- At this load {len(meet)} of {len(ok)} policies keep {target:.0%} of requests within "
        f"{slo}" + (f": {', '.join(meet)}." if meet else ".")
    )
    good = loads.dropna(subset=["max_rate_scale"])
    if not good.empty:
        top = good["max_rate_scale"].max()
        best = good[good["max_rate_scale"] == top]
        capped = " (the top of the searched range)" if bool(best["capped"].any()) else ""
        txt = (
            f"- The highest load within the SLO: rate_scale {top:g}{capped}, "
            f"reached by {', '.join(best['policy'])}"
        )
        ref_row = good[good["policy"] == ref]
        if not ref_row.empty and ref not in set(best["policy"]):
            txt += f"; {ref} up to {ref_row.iloc[0]['max_rate_scale']:g}"
        lines.append(txt + ".")
    failed = table[table["status"] != "ok"]
    for _, r in failed.iterrows():
        lines.append(f"- {r['policy']} did not run: {r['error']}")
    return "\n".join(lines)
