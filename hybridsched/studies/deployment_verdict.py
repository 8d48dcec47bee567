"""Which policy to run on "my deployment" (notebook 07), decided over seeds by a stated rule.

``deployment.compare`` runs every policy on the same seeds (one row per policy and seed;
one seed gives every policy the same requests), so two policies are compared by their
*paired* differences, seed by seed, on two objectives: ``goodput_rps`` (higher is better)
and ``ttft_p99_s`` (lower is better).

- ``verdict(runs, reference)``: the rule (its docstring states it) and its outcome: a
  ``win``, a ``tie`` (the simpler policy is kept) or a ``trade-off`` (no single winner).
- ``summary(runs)``: each policy's mean over seeds of the headline metrics.
- ``tradeoff_table(runs, v)``: goodput and TTFT p99 of every policy, their seed spread and
  their paired difference against the reference with its interval; ``tradeoff_view``
  prints it for reading.
- ``rule_text(v)``: the rule in words, with the settings the verdict used.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

# +1: higher is better, -1: lower is better.
OBJECTIVES = {"goodput_rps": 1, "ttft_p99_s": -1}
# Simplest first: the fewer parts a deployment adds to stock vLLM, the simpler. vllm is
# stock vLLM; chunked changes only the KV admission (reserved up front); baseline also
# the online rule (prefill-first); online-hybrid adds a rolling MMBPP solve on the requests
# that have arrived; hybrid-chunked plans the whole request stream up front (an MMBPP
# solve with every arrival known); hybrid adds the Lagrangian online rule to that plan.
SIMPLICITY = ("vllm", "chunked", "baseline", "online-hybrid", "hybrid-chunked", "hybrid")
LEVEL = 0.9
MIN_EFFECT = 0.01


def simplest_first(policies) -> list[str]:
    """``policies`` in ``SIMPLICITY`` order; policies it does not name come last, in the
    order given."""
    given = list(dict.fromkeys(policies))
    rank = {p: (SIMPLICITY.index(p) if p in SIMPLICITY else len(SIMPLICITY)) for p in given}
    return sorted(given, key=lambda p: (rank[p], given.index(p)))


def ok_policies(runs: pd.DataFrame) -> list[str]:
    """The policies whose every seed ran (``status == 'ok'``), in the table's order."""
    bad = set(runs.loc[runs["status"] != "ok", "policy"])
    return [p for p in dict.fromkeys(runs["policy"]) if p not in bad]


def paired(runs: pd.DataFrame, policy: str, other: str, metric: str, level: float = LEVEL):
    """``policy``'s ``metric`` against ``other``'s, paired by seed.

    Each seed gives the relative difference ``a / b - 1`` (``a`` the policy's value, ``b``
    the other's), so seeds of different load weigh alike; when ``b`` is 0 on some seed, the
    differences ``a - b`` over ``b``'s mean are used instead (``b`` 0 on every seed: a
    difference is infinite). Returns ``n`` seeds, ``rel`` the mean relative difference,
    ``rel_low`` and ``rel_high`` the ends of its two-sided ``level`` t-interval (NaN with one
    seed), ``half`` its half-width, ``diff`` the mean difference ``a - b`` and ``base`` the
    other's mean.
    """
    a = runs[runs["policy"] == policy].set_index("seed")[metric].astype(float)
    b = runs[runs["policy"] == other].set_index("seed")[metric].astype(float)
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1).dropna()
    n, diff = len(both), float((both["a"] - both["b"]).mean()) if len(both) else math.nan
    base = float(both["b"].mean()) if n else math.nan
    out = {"n": n, "diff": diff, "base": base, "half": math.nan}
    out.update(rel=math.nan, rel_low=math.nan, rel_high=math.nan)
    if n and (both["b"] > 0).all():
        d = both["a"] / both["b"] - 1
    elif n and base != 0:
        d = (both["a"] - both["b"]) / abs(base)
    else:  # nothing to compare, or the other is 0 on every seed
        if n:
            out["rel"] = math.copysign(math.inf, diff) if diff != 0 else 0.0
        return out
    out["rel"] = float(d.mean())
    if n >= 2:
        half = float(stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
        out.update(half=half, rel_low=out["rel"] - half, rel_high=out["rel"] + half)
    return out


def judge(pair: dict, sign: int, min_effect: float = MIN_EFFECT) -> str:
    """``better``, ``worse`` or ``tie`` for one objective (``sign`` +1: higher is better).

    A difference is real when the interval of the mean relative difference excludes 0
    (with one seed there is no interval: this test is skipped) and the mean relative
    difference is at least ``min_effect``; anything else is a tie."""
    rel, half = pair["rel"], pair["half"]
    if not (rel == rel) or rel == 0:
        return "tie"
    outside = not math.isfinite(half) or abs(rel) > half
    if outside and abs(rel) >= min_effect:
        return "better" if sign * rel > 0 else "worse"
    return "tie"


def relation(runs, policy, other, level=LEVEL, min_effect=MIN_EFFECT) -> tuple[str, dict]:
    """``policy`` against ``other``: ``beats`` (better on one objective, worse on none),
    ``loses``, ``ties`` (a tie on both) or ``trade-off`` (better on one, worse on the
    other); with the judgement per objective."""
    j = {
        m: judge(paired(runs, policy, other, m, level), s, min_effect)
        for m, s in OBJECTIVES.items()
    }
    better, worse = "better" in j.values(), "worse" in j.values()
    if better and worse:
        return "trade-off", j
    return ("beats" if better else "loses" if worse else "ties"), j


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per policy (in the table's order): ``seeds`` run, the mean over seeds of each
    numeric headline column, and ``status`` (``failed`` when any seed failed, with its
    error)."""
    rows = []
    for pol, part in runs.groupby("policy", sort=False):
        bad = part[part["status"] != "ok"]
        row = {"policy": pol, "seeds": len(part)}
        for c in part.columns:
            if c not in ("policy", "seed", "status", "error") and pd.api.types.is_numeric_dtype(
                part[c]
            ):
                row[c] = float(part.loc[part["status"] == "ok", c].mean())
        row["status"] = "ok" if bad.empty else "failed"
        row["error"] = None if bad.empty else str(bad["error"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(runs, reference="vllm", level=LEVEL, min_effect=MIN_EFFECT) -> dict:
    """The policy to run, by this rule (``runs``: one row per policy and seed).

    1. Two policies are compared on each objective (goodput: higher is better; TTFT p99:
       lower is better) by their relative difference on each seed (same seed, same
       requests; ``paired``). One is *better* when the two-sided ``level`` t-interval of
       the mean relative difference excludes 0 and that mean is at least ``min_effect``;
       otherwise they *tie* on it. With one seed there is no interval and only
       ``min_effect`` separates them.
    2. A policy *beats* another when it is better on one objective and worse on none; two
       policies *trade off* when each is better on one.
    3. If no policy beats the reference, the pick is the simplest (``SIMPLICITY``) of the
       reference and the policies that tie it on both objectives: outcome ``tie``.
    4. Otherwise the best of those that beat the reference has the highest mean goodput
       (then the lowest mean TTFT p99); the pick is the simplest of them that ties the
       best on both objectives: outcome ``win``.
    5. If any policy trades off against the pick, the outcome is ``trade-off``: no single
       winner is named, the report shows goodput against TTFT p99, and the pick stays the
       policy of steps 3-4 (the simpler choice without a preference between the two).

    Only policies whose every seed ran take part; a missing or failed reference is
    replaced by the simplest policy that ran. Returns the pick (``winner``), ``outcome``,
    ``reference``, the relation of every policy to the reference, the trade-offs, the
    settings, and the pick's mean goodput and TTFT p99 ratios to the reference's.
    """
    ok = ok_policies(runs)
    if not ok:
        raise ValueError(
            "no policy ran: "
            + "; ".join(f"{p}: {e}" for p, e in zip(runs["policy"], runs["error"], strict=True))
        )
    ref = reference if reference in ok else simplest_first(ok)[0]
    rel = {p: relation(runs, p, ref, level, min_effect)[0] for p in ok if p != ref}
    outcome, tied = _steps_3_4(runs, ok, ref, rel, level, min_effect)
    pick = simplest_first(tied)[0]
    trades = [
        p for p in ok if p != pick and relation(runs, p, pick, level, min_effect)[0] == "trade-off"
    ]
    seeds = sorted(runs.loc[runs["policy"] == pick, "seed"].tolist())
    outcome = "trade-off" if trades else outcome
    return {
        "winner": pick,
        "outcome": outcome,
        "reference": ref,
        "against_reference": {ref: "reference", **rel},
        "tied_with_winner": [p for p in simplest_first(tied) if p != pick],
        "trade_offs": trades,
        "seeds": seeds,
        "level": level,
        "min_effect": min_effect,
        "simplicity": simplest_first(ok),
        "headline": _headline(runs, outcome, pick, ref, trades, level),
        **_ratios(runs, pick, ref),
    }


def _steps_3_4(runs, ok, ref, rel, level, min_effect) -> tuple[str, list[str]]:
    """Steps 3 and 4 of ``verdict``: the outcome (``win`` or ``tie``) and the policies the
    pick is the simplest of."""
    wins = [p for p in ok if rel.get(p) == "beats"]
    if not wins:
        return "tie", [ref, *(p for p in ok if rel.get(p) == "ties")]
    means = summary(runs[runs["policy"].isin(wins)]).set_index("policy")
    best = max(wins, key=lambda p: (means.loc[p, "goodput_rps"], -means.loc[p, "ttft_p99_s"]))
    tied = [p for p in wins if p == best or relation(runs, p, best, level, min_effect)[0] == "ties"]
    return "win", tied


def _headline(runs, outcome, pick, ref, trades, level) -> dict | None:
    """The pair the verdict turns on and its paired changes: the pick against the reference
    (a win, or a tie the reference does not keep); the first trade-off against the pick;
    for a tie kept by the reference, the policy with the highest mean goodput of those whose
    results differ from the reference's (None when all are the same)."""
    if outcome == "trade-off":
        pol, against = trades[0], pick
    elif pick != ref:
        pol, against = pick, ref
    else:
        rest = summary(runs[runs["policy"].isin(ok_policies(runs))])
        rest = rest[rest["policy"] != ref].sort_values("goodput_rps", ascending=False)
        differ = [q for q in rest["policy"] if not _identical(runs, q, ref)]
        if not differ:
            return None
        pol, against = differ[0], ref
    return changes(runs, pol, against, level)


def changes(runs: pd.DataFrame, policy: str, against: str, level: float = LEVEL) -> dict:
    """``policy`` against ``against``: the mean per-seed relative change of goodput and of
    TTFT p99 (``goodput_change``, ``ttft_p99_change``; ``paired``) and the ends of its
    interval (``*_low``, ``*_high``)."""
    out = {"policy": policy, "against": against}
    for m, short in (("goodput_rps", "goodput"), ("ttft_p99_s", "ttft_p99")):
        p = paired(runs, policy, against, m, level)
        out[f"{short}_change"] = p["rel"]
        out[f"{short}_change_low"] = p["rel_low"]
        out[f"{short}_change_high"] = p["rel_high"]
    return out


def _identical(runs: pd.DataFrame, p: str, q: str) -> bool:
    cols = list(OBJECTIVES)
    a = runs[runs["policy"] == p].set_index("seed")[cols].sort_index()
    b = runs[runs["policy"] == q].set_index("seed")[cols].sort_index()
    return a.shape == b.shape and bool((a.to_numpy() == b.to_numpy()).all())


def _ratios(runs: pd.DataFrame, pick: str, ref: str) -> dict:
    m = summary(runs[runs["policy"].isin([pick, ref])]).set_index("policy")

    def ratio(col: str) -> float:
        a, b = float(m.loc[pick, col]), float(m.loc[ref, col])
        return a / b if b > 0 else math.nan

    return {
        "goodput_ratio": ratio("goodput_rps"),
        "ttft_p99_ratio": ratio("ttft_p99_s"),
        "makespan_reduction": 1 - ratio("makespan_s") if "makespan_s" in m else math.nan,
    }


def tradeoff_table(runs: pd.DataFrame, v: dict) -> pd.DataFrame:
    """One row per policy that ran (simplest first): its relation to the reference, and for
    goodput and TTFT p99 the mean over seeds, the lowest and highest seed, and the paired
    relative change against the reference (``*_change``, ``changes``) with the interval's
    ends (``*_change_low``, ``*_change_high``)."""
    ref, rows = v["reference"], []
    for pol in simplest_first(ok_policies(runs)):
        part = runs[runs["policy"] == pol]
        row = {"policy": pol, "against_reference": v["against_reference"].get(pol, "")}
        for m in OBJECTIVES:
            vals = part[m].astype(float)
            row.update({m: vals.mean(), f"{m}_min": vals.min(), f"{m}_max": vals.max()})
        row.update({k: x for k, x in changes(runs, pol, ref, v["level"]).items() if "_" in k})
        rows.append(row)
    return pd.DataFrame(rows)


def pct(x: float) -> str:
    """A relative change in percent with a sign: two significant digits under 1%."""
    if x is None or not math.isfinite(x):
        return ""
    y = 100 * x
    return f"{y:+.1f}%" if abs(y) >= 1 or y == 0 else f"{y:+.2g}%"


def _between(lo: float, hi: float) -> str:
    """ "a to b" in percent; empty when unknown or when both ends print alike (no spread)."""
    a, b = pct(lo), pct(hi)
    return f"{a} to {b}" if a and b and a != b else ""


def tradeoff_view(table: pd.DataFrame, v: dict) -> pd.DataFrame:
    """``tradeoff_table`` for reading: each value with its seed range, each change with its
    interval, and each policy's standing (the pick, or its relation to the reference)."""
    ref, level = v["reference"], v["level"]
    words = {
        "reference": "the reference",
        "beats": f"beats {ref}",
        "ties": f"ties {ref}",
        "loses": f"worse than {ref}",
        "trade-off": f"trades off with {ref}",
    }
    out = []
    for _, r in table.iterrows():
        standing = words.get(r["against_reference"], r["against_reference"])
        if r["policy"] == v["winner"]:
            standing = "the pick" + ("" if r["policy"] == ref else f" ({standing})")
        row = {"policy": r["policy"], "standing": standing}
        for m, short, name in (
            ("goodput_rps", "goodput", "goodput (req/s)"),
            ("ttft_p99_s", "ttft_p99", "TTFT p99 (s)"),
        ):
            row[f"{name}: mean [seeds' range]"] = (
                f"{r[m]:.2f} [{r[f'{m}_min']:.2f} to {r[f'{m}_max']:.2f}]"
            )
            iv = _between(r[f"{short}_change_low"], r[f"{short}_change_high"])
            row[f"{name.split(' (')[0]} vs {ref} ({level:.0%} interval)"] = (
                "" if r["policy"] == ref else pct(r[f"{short}_change"]) + (f" ({iv})" if iv else "")
            )
        out.append(row)
    return pd.DataFrame(out)


def rule_text(v: dict) -> str:
    """The rule ``verdict`` applied, in words, with the settings it used."""
    n, ref = len(v["seeds"]), v["reference"]
    spread = (
        f"the two-sided {v['level']:.0%} t-interval of the mean over the {n} seeds of "
        "the per-seed relative difference excludes 0 and that mean is"
        if n > 1
        else "(one seed: no spread is known) the relative difference is"
    )
    return (
        "Policies are compared on goodput (higher is better) and TTFT p99 (lower is better), "
        "seed by seed on the same requests. One policy is better or worse than another on "
        f"one of them when {spread} at least {v['min_effect']:.0%}; "
        "otherwise they tie on it. Better on one and worse on none beats the other; better "
        "on one and worse on the other is a trade-off, and then no single winner is named. "
        f"The pick is the simplest policy that ties the best of those that beat {ref} (or "
        f"{ref} itself and its ties when none does); simplest first: "
        + ", ".join(v["simplicity"])
        + "."
    )
