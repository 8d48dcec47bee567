"""Tables for the notebooks: the policy and bound tables, the exact-MIP table and the
paper-vs-ours headlines of the single case and the study (``paper_numbers.PAPER``).

``bound_model(policy, admission)`` says which ``T_LB`` a policy is measured against
(``run_single_case`` gives each policy the bound of its own model: mixed iterations for
chunked prefill, on-demand admission without the reservation share); ``with_bound_models``
adds it to a single-case table as a ``bound_model`` column."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from hybridsched.studies.paper import PAPER
from hybridsched.studies.sensitivity import METRIC_COLUMNS

SINGLE_CASE_COLUMNS = ["policy", *METRIC_COLUMNS, "gap_to_lb", "gap_closed"]

# The study summary's columns that compare a policy with the baseline on the same case.
STUDY_COMPARISONS = [
    "utilization_gain_pp_mean",
    "utilization_gain_pp_min",
    "utilization_gain_pp_max",
    "makespan_reduction_mean",
    "wins",
    "ties",
]


def bound_model(policy: str, admission: str | None, reference: str = "reservation") -> str:
    """What ``policy``'s own ``T_LB`` covers beyond the paper's model (a prefill or a decode
    per iteration, admission by ``reference``): ``"mixed iterations"`` (chunked prefill),
    ``"on-demand admission"`` (no reservation share), both joined by ``", "``, or ``""``
    (the paper model's bound). An unknown policy counts as not mixed."""
    from hybridsched.policies.registry import POLICIES

    spec = POLICIES.get(policy)
    parts = ["mixed iterations"] if spec is not None and spec.mixed else []
    if admission and isinstance(admission, str) and admission != reference:
        parts.append(f"{admission} admission")
    return ", ".join(parts)


def with_bound_models(table: pd.DataFrame, reference: str = "reservation") -> pd.DataFrame:
    """``table`` (one row per policy, optionally with an ``admission`` column) with a
    ``bound_model`` column: ``bound_model`` of each row."""
    adm = table["admission"] if "admission" in table.columns else [None] * len(table)
    models = [bound_model(str(p), a, reference) for p, a in zip(table["policy"], adm, strict=True)]
    return table.assign(bound_model=models)


def _table(r: Any) -> pd.DataFrame:
    return r.table if hasattr(r, "table") else r


def policy_table(results: Mapping[str, Any], columns: list[str] | None = None) -> pd.DataFrame:
    """Single-case tables (``SingleCaseResult`` or its ``.table``) stacked, one row per config and policy."""
    cols = columns or SINGLE_CASE_COLUMNS
    parts = [_table(r).reindex(columns=cols).assign(config=name) for name, r in results.items()]
    return pd.concat(parts, ignore_index=True)[["config", *cols]]


def bound_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """``T_LB`` and its parts (seconds) per config, with the admission rule each part assumes.

    ``T_LB`` is the paper's bound (``lower_bound_s``); ``T_LB (tight)`` also counts the
    tight parts (``tight_lower_bound_s``).

    ``results`` maps a config name to a ``SingleCaseResult`` or a ``bounds.LowerBound``.
    """
    from hybridsched.bounds.lower_bound import ASSUMES

    bounds = {name: getattr(r, "bound", r) for name, r in results.items()}
    out = pd.DataFrame({"assumes": pd.Series(ASSUMES)}, dtype=object)
    for name, b in bounds.items():
        out[name] = pd.Series(b.all_parts(), dtype=object)
    out.loc["T_LB"] = {
        "assumes": "the largest part but volume_tight and small_packing",
        **{n: b.lower_bound_s for n, b in bounds.items()},
    }
    out.loc["binding"] = {"assumes": "", **{n: b.binding for n, b in bounds.items()}}
    out.loc["T_LB (tight)"] = {
        "assumes": "the largest part",
        **{n: b.tight_lower_bound_s for n, b in bounds.items()},
    }
    out.index.name = "part"
    return out


def exact_table(
    schedules: Mapping[str, Mapping], bound: Any, optimum: str = "exact MIP"
) -> pd.DataFrame:
    """The exact MIP's optimum beside each policy's schedule and ``T_LB`` (one tiny instance).

    ``schedules`` maps a name to its ``metrics.metrics`` dict and includes ``optimum``,
    the MIP schedule's replay. Columns: ``policy``, ``makespan_s``, ``utilization``,
    ``gap_to_optimum`` ``(T - T*) / T*``, ``lower_bound_s`` and ``certified``, which says
    ``T_LB <= T* <= T`` holds (up to 1e-9 relative).
    """
    if optimum not in schedules:
        raise ValueError(
            f"exact_table: no {optimum!r} among the schedules ({', '.join(schedules)})"
        )
    lb = float(getattr(bound, "lower_bound_s", bound))
    out = pd.DataFrame(
        [
            {
                "policy": p,
                "makespan_s": float(m["makespan_s"]),
                "utilization": float(m["utilization"]),
            }
            for p, m in schedules.items()
        ]
    )
    t_opt = float(schedules[optimum]["makespan_s"])
    tol = 1e-9 * max(1.0, t_opt)
    out["gap_to_optimum"] = (out["makespan_s"] - t_opt) / t_opt
    out["lower_bound_s"] = lb
    out["certified"] = (lb <= t_opt + tol) & (out["makespan_s"] >= t_opt - tol)
    return out


def _row_of(table: pd.DataFrame, policy: str) -> pd.Series:
    rows = table[table["policy"] == policy]
    if rows.empty:
        raise ValueError(
            f"policy {policy!r} not in the table (have {', '.join(map(str, table['policy']))})"
        )
    return rows.iloc[0]


def _single_case_headline(b: Mapping, h: Mapping, lb: float) -> dict[str, float]:
    tb, th = float(b["makespan_s"]), float(h["makespan_s"])
    ub, uh = float(b["utilization"]), float(h["utilization"])
    return {
        "U baseline (%)": 100 * ub,
        "U hybrid (%)": 100 * uh,
        "U gain (pp)": 100 * (uh - ub),
        "makespan baseline (s)": tb,
        "makespan hybrid (s)": th,
        "makespan reduction (%)": 100 * (tb - th) / tb,
        "T_LB (s)": lb,
        "gap to T_LB, baseline (%)": 100 * (tb - lb) / lb,
        "gap to T_LB, hybrid (%)": 100 * (th - lb) / lb,
        "share of the baseline's gap closed (%)": 100 * (tb - th) / (tb - lb)
        if tb > lb
        else math.nan,
        "mean batch, baseline": float(b.get("mean_batch", math.nan)),
        "mean batch, hybrid": float(h.get("mean_batch", math.nan)),
    }


def paper_vs_ours(
    results: Mapping[str, Any], baseline: str = "baseline", policy: str = "hybrid"
) -> pd.DataFrame:
    """The single-case headline: ours, then the paper's numbers (``studies.paper.PAPER``).

    One row per metric; one column per config of ``results`` (name -> ``SingleCaseResult``
    or its table, which carries ``lower_bound_s``), then ``paper``. Makespans are in
    seconds on each side's own hardware model, so compare ratios, gaps and shares, not
    seconds.
    """
    paper = _single_case_headline(
        {"makespan_s": PAPER["baseline_makespan_s"], "utilization": PAPER["baseline_utilization"]},
        {"makespan_s": PAPER["hybrid_makespan_s"], "utilization": PAPER["hybrid_utilization"]},
        PAPER["lower_bound_s"],
    )
    out = pd.DataFrame(index=pd.Index(list(paper), name="metric"))
    for name, r in results.items():
        t = _table(r)
        lb = float(_row_of(t, baseline)["lower_bound_s"])
        out[name] = pd.Series(_single_case_headline(_row_of(t, baseline), _row_of(t, policy), lb))
    out["paper"] = pd.Series(paper)
    return out


def study_table(studies: Mapping[str, Any], baseline: str = "baseline") -> pd.DataFrame:
    """Study summaries (``StudyResult.summary``) stacked, one row per config and policy.

    The comparisons with the baseline (``STUDY_COMPARISONS``: gains, wins, ties) are left
    blank on the baseline's own row: it is the reference, not compared with itself.
    """
    parts = [s.summary.assign(config=name) for name, s in studies.items()]
    df = pd.concat(parts, ignore_index=True)
    comp = [c for c in STUDY_COMPARISONS if c in df.columns]
    if comp:
        df[comp] = df[comp].astype(float)
        df.loc[df["policy"] == baseline, comp] = math.nan
    return df[["config", *[c for c in df.columns if c != "config"]]]


def study_vs_paper(
    studies: Mapping[str, Any], baseline: str = "baseline", policy: str = "hybrid"
) -> pd.DataFrame:
    """The 100-case headline: mean/min/max U gain, wins and makespan reduction per config,
    then the paper's.

    The paper reports only the mean gain (+8.0 pp) and "consistent wins"; other paper
    cells are empty.
    """
    rows = {
        "cases": math.nan,
        "mean U baseline (%)": math.nan,
        "mean U hybrid (%)": math.nan,
        "mean U gain (pp)": PAPER["study_mean_utilization_gain_pp"],
        "min U gain (pp)": math.nan,
        "max U gain (pp)": math.nan,
        "hybrid wins (cases)": math.nan,
        "mean makespan reduction (%)": math.nan,
        "mean gap to T_LB, baseline (%)": math.nan,
        "mean gap to T_LB, hybrid (%)": math.nan,
    }
    out = pd.DataFrame(index=pd.Index(list(rows), name="metric"))
    for name, s in studies.items():
        summ = s.summary.set_index("policy")
        b, h = summ.loc[baseline], summ.loc[policy]
        out[name] = pd.Series(
            {
                "cases": h["num_cases"],
                "mean U baseline (%)": 100 * b["utilization_mean"],
                "mean U hybrid (%)": 100 * h["utilization_mean"],
                "mean U gain (pp)": h["utilization_gain_pp_mean"],
                "min U gain (pp)": h["utilization_gain_pp_min"],
                "max U gain (pp)": h["utilization_gain_pp_max"],
                "hybrid wins (cases)": h["wins"],
                "mean makespan reduction (%)": 100 * h["makespan_reduction_mean"],
                "mean gap to T_LB, baseline (%)": 100 * b["gap_to_lb_mean"],
                "mean gap to T_LB, hybrid (%)": 100 * h["gap_to_lb_mean"],
            }
        )
    out["paper"] = pd.Series(rows)
    out["note"] = ["", "", "", "", "", "", 'paper: "consistent wins"', "", "", ""]
    return out
