"""Tests for the interval policies (interval_rules.py, docs/model.md section 8).

Every new policy keeps the trace invariants (``check_trace`` through ``run_policy(...,
check=True)``) with under- and over-predicted lengths on both of the paper's clusters;
with exact intervals each reduces to its point policy, iteration for iteration; the
``A_min`` rules never overflow and finish every request, evicting when they must.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridsched.engine.loop import run
from hybridsched.instance import Client, Cluster, Instance, make_instance
from hybridsched.latency.linear import LinearLatency
from hybridsched.policies.interval import EstimateAdmission, check_quantile, quantile_lengths
from hybridsched.policies.prefill_first import PrefillFirst
from hybridsched.policies.registry import POLICIES, RuleKnobs, SolveSettings
from hybridsched.policies.static import StaticRouter
from hybridsched.studies.run import run_policy
from hybridsched.trace.io import check_run
from hybridsched.workloads.requests import load_gsm8k, sample_requests
from tests.strategies import TOKENS

NEW = ("hybrid-reserve-hi", "hybrid-sort-hi", "hybrid-amin", "amin")
SOLVE = SolveSettings(time_limit_s=2.0, mip_gap=1e-2)
CLUSTERS = {"2 x tp4": Cluster(num_clients=2, tp=4), "4 x tp2": Cluster(num_clients=4, tp=2)}
# Enough requests per client that the KV memory binds at tp=2 (about 24 requests fit).
N = {"2 x tp4": 40, "4 x tp2": 160}


def with_interval(df: pd.DataFrame, factor: float, lo_share: float, hi_factor: float):
    """Predictions ``round(o * factor)`` with the interval ``[lo_share ô, hi_factor ô]``."""
    o = df["output_tokens"].to_numpy()
    p = np.maximum(1, np.round(o * factor)).astype(np.int64)
    lo = np.maximum(1, np.floor(p * lo_share)).astype(np.int64)
    hi = np.maximum(p, np.ceil(p * hi_factor)).astype(np.int64)
    return df.assign(predicted_output_tokens=p, predicted_lo_tokens=lo, predicted_hi_tokens=hi)


def exact(df: pd.DataFrame) -> pd.DataFrame:
    return with_interval(df, 1.0, 1.0, 1.0)


def instance(cluster: str, factor=1.0, lo_share=1.0, hi_factor=1.0, seed=3) -> Instance:
    df = sample_requests(load_gsm8k(), N[cluster], seed)
    return make_instance(with_interval(df, factor, lo_share, hi_factor), CLUSTERS[cluster])


@pytest.mark.parametrize("cluster", list(CLUSTERS))
@pytest.mark.parametrize(
    "factor,lo_share,hi_factor", [(0.5, 0.5, 1.5), (2.0, 0.5, 1.5), (1.0, 0.1, 3.0)]
)
@pytest.mark.parametrize("policy", NEW)
def test_invariants_under_and_over_prediction(cluster, factor, lo_share, hi_factor, policy):
    inst = instance(cluster, factor, lo_share, hi_factor)
    r = run_policy(inst, policy, solve=SOLVE, check=True)
    assert r.admission == "on-demand"
    assert r.requests["finish_s"].notna().all()
    assert r.metrics["makespan_s"] > 0


@pytest.mark.parametrize("cluster", list(CLUSTERS))
@pytest.mark.parametrize("policy", ["hybrid-reserve-hi", "hybrid-sort-hi", "hybrid-amin"])
def test_exact_intervals_reduce_to_the_hybrid(cluster, policy):
    """lo = hi = ô = o: the same iterations as the hybrid under reservation admission;
    only ``kv_reserved_tokens`` differs (the KV held instead of the reservations)."""
    inst = instance(cluster)
    point = run_policy(inst, "hybrid", solve=SOLVE, check=True)
    mine = run_policy(inst, policy, solve=SOLVE, check=True, assignment=point.assignment)
    cols = [c for c in point.trace.columns if c != "kv_reserved_tokens"]
    pd.testing.assert_frame_equal(mine.trace[cols], point.trace[cols])
    assert len(mine.evictions) == 0
    assert mine.metrics["makespan_s"] == point.metrics["makespan_s"]
    if cluster == "4 x tp2":  # the reservations bind there, so the equality says something
        held = point.trace["kv_reserved_tokens"].max()
        assert held > 0.9 * inst.clients[0].kv_capacity_tokens


@pytest.mark.parametrize("cluster", list(CLUSTERS))
def test_exact_intervals_reduce_amin_to_shortest_first_baseline(cluster):
    inst = instance(cluster)
    point = run_policy(inst, "baseline", RuleKnobs(sort="shortest"), SOLVE, check=True)
    mine = run_policy(inst, "amin", solve=SOLVE, check=True)
    cols = [c for c in point.trace.columns if c != "kv_reserved_tokens"]
    pd.testing.assert_frame_equal(mine.trace[cols], point.trace[cols])


def test_quantile_sort_differs_from_the_point_sort():
    """``hybrid-sort-hi`` orders by ``hi``: with intervals not monotone in ô it changes the order."""
    df = exact(sample_requests(load_gsm8k(), 40, 3))
    rng = np.random.default_rng(0)
    df["predicted_hi_tokens"] = df["predicted_output_tokens"] + rng.integers(0, 200, len(df))
    inst = make_instance(df, CLUSTERS["2 x tp4"])
    point = POLICIES["hybrid"]
    from hybridsched.policies.registry import make_rule

    k_hi = make_rule(POLICIES["hybrid-sort-hi"]).queue_key(inst)
    k_pt = make_rule(point).queue_key(inst)
    assert np.array_equal(k_hi, -df["predicted_hi_tokens"].to_numpy(float))
    assert not np.array_equal(np.argsort(k_hi, kind="stable"), np.argsort(k_pt, kind="stable"))


@pytest.mark.parametrize("policy", ["amin", "hybrid-amin"])
@pytest.mark.parametrize("cluster", list(CLUSTERS))
def test_amin_completes_every_request_without_overflow(policy, cluster):
    """lo = 1 for every request: A_min admits far more than fits, so memory must run out
    on tp=2 and requests are evicted, yet every request finishes with its o_i tokens."""
    inst = instance(cluster, 1.0, 0.0, 1.0)
    assert (inst.requests["predicted_lo_tokens"] == 1).all()
    r = run_policy(inst, policy, solve=SOLVE, check=True)
    assert r.requests["finish_s"].notna().all()
    if cluster == "4 x tp2":
        assert r.metrics["num_preemptions"] > 0
        evicted = set(r.evictions["request_id"])
        assert len(evicted) > 0


def test_evicted_request_reenters_with_its_raised_estimate():
    """One linear client, M = 40 (KV in tokens), two requests s = 5, o = 20, lo = 1. A_min
    admits both (estimates 6 + 6 <= 40); holding 2 x (5 + 15) = 40 KV tokens, the next step
    would need 42, so the later one is evicted with g = 16 tokens and re-enters counting
    s + g + 1 = 22, not its first estimate s + lo = 6;
    beside the first request's growing estimate (21 and more) it does not fit, so it waits
    until the first request leaves instead of being re-admitted and evicted again."""
    lat = LinearLatency(1.0, 0.01, 0.5, 0.1, 0.001)
    df = pd.DataFrame(
        {
            "prompt_tokens": [5, 5],
            "output_tokens": [20, 20],
            "predicted_output_tokens": [1, 1],
            "predicted_lo_tokens": [1, 1],
            "predicted_hi_tokens": [1, 1],
        }
    )
    inst = Instance(df, (Client(2, 40, lat),))
    rule = EstimateAdmission(PrefillFirst(), "lo")
    res = run(inst, StaticRouter(assignment=np.zeros(2, dtype=np.int64)), rule, TOKENS)
    check_run(res, inst)
    ev = res.evictions
    assert ev["request_id"].tolist() == [1]  # evicted once, never again
    g = int(ev["generated_tokens"].iloc[0])
    assert g == 16 and 2 * (5 + g - 1) + 2 > 40  # the step after g tokens would not fit
    # It was re-prefilled only after request 0 finished.
    tr = res.trace
    re_prefill = tr[(tr["kind"] == "prefill") & (tr["iteration"] > 0)]
    last_of_0 = tr[tr["request_ids"].map(lambda ids: 0 in ids)]["end_s"].max()
    assert re_prefill["start_s"].min() >= last_of_0 - 1e-12


def test_quantiles():
    df = pd.DataFrame(
        {
            "prompt_tokens": [10, 10],
            "output_tokens": [50, 50],
            "predicted_output_tokens": [40, 100],
            "predicted_lo_tokens": [20, 100],
            "predicted_hi_tokens": [80, 300],
        }
    )
    inst = Instance(df, (Client(4, 1000, LinearLatency(1.0, 0.01, 0.5, 0.1, 0.001)),))
    assert quantile_lengths(inst, "lo").tolist() == [20, 100]
    assert quantile_lengths(inst, "mid").tolist() == [40, 100]
    assert quantile_lengths(inst, "hi").tolist() == [80, 300]
    assert quantile_lengths(inst, 0.25).tolist() == [30, 100]
    assert quantile_lengths(inst, 0.75).tolist() == [60, 200]
    assert quantile_lengths(inst, "0.0").tolist() == [20, 100]


@pytest.mark.parametrize("bad", ["top", 1.5, -0.1, True])
def test_bad_quantile_is_named(bad):
    with pytest.raises(ValueError, match="reserve must be one of lo, mid, hi"):
        EstimateAdmission(PrefillFirst(), bad)
    with pytest.raises(ValueError, match="quantile"):
        check_quantile(bad)


def test_sort_quantile_needs_a_length_sort():
    with pytest.raises(ValueError, match="inner rule that sorts by length"):
        EstimateAdmission(PrefillFirst(sort="fcfs"), "hi", sort="hi")
