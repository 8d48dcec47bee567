"""Tests for hybridsched.experiments: named policies, the single case and the 100-case study,
and a pinned regression of the default single case (docs/model.md section 10)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridsched import studies
from hybridsched.bounds.lower_bound import lower_bound
from hybridsched.instance import Cluster, make_instance
from hybridsched.policies.lagrangian import Lagrangian
from hybridsched.policies.prefill_first import PrefillFirst
from hybridsched.policies.registry import POLICIES, RuleKnobs, SolveSettings, make_rule, policy_spec
from hybridsched.studies import study
from hybridsched.studies.run import run_policy
from hybridsched.studies.single_case import run_single_case
from hybridsched.studies.study import run_study, summarize_study
from hybridsched.trace.check import check_trace
from hybridsched.workloads.requests import load_gsm8k, sample_requests

SINGLE_CASE_COLUMNS = [
    "policy",
    "makespan_s",
    "utilization",
    "mean_batch",
    "num_prefill_iterations",
    "lower_bound_s",
    "gap_to_lb",
    "gap_closed",
]
STUDY_CASE_COLUMNS = [
    "case",
    "seed",
    "policy",
    "makespan_s",
    "utilization",
    "mean_batch",
    "lower_bound_s",
]


@pytest.fixture(scope="module")
def single_150():
    """run_single_case on 150 sampled GSM8K requests, every named policy, traces checked."""
    return run_single_case(num_requests=150, time_limit=5.0)


@pytest.fixture(scope="module")
def gsm8k():
    """The full GSM8K test workload (1,319 requests)."""
    return load_gsm8k()


# --------------------------------------------------------------------------------------
# The single case
# --------------------------------------------------------------------------------------


def test_single_case_table_columns_and_rows(single_150):
    """Tests that run_single_case returns the documented columns with one row per named policy,
    in POLICIES order, on the 150 requested requests, and records its seed in params."""
    table = single_150.table
    assert set(SINGLE_CASE_COLUMNS) <= set(table.columns)
    assert table["policy"].tolist() == list(POLICIES)
    assert single_150.instance.num_requests == 150
    assert single_150.params["num_requests"] == 150 and single_150.params["seed"] == 0
    assert single_150.params["policies"] == list(POLICIES)
    assert set(single_150.runs) == set(POLICIES)
    assert table[SINGLE_CASE_COLUMNS].notna().all().all()


def test_single_case_gaps_and_bound(single_150):
    """Tests that every makespan is >= its row's lower_bound_s (the full T_LB with its solved
    MMBPP part; the mixed-iteration T_LB for chunked-prefill rows), that gap_to_lb is
    (T - T_LB)/T_LB, and gap_closed is (T_base - T)/(T_base - T_LB), 0 for the baseline."""
    table = single_150.table
    mixed = table["policy"].map(lambda p: POLICIES[p].mixed).to_numpy()
    paper = (table["admission"] == "reservation").to_numpy()  # on-demand rows: their own bound
    lb_paper = single_150.bound.lower_bound_s
    lb_mixed = single_150.bound_mixed.lower_bound_s
    assert (table["lower_bound_s"][~mixed & paper] == lb_paper).all()
    assert (table["lower_bound_s"][mixed & paper] == lb_mixed).all()
    assert lb_paper == max(single_150.bound.parts().values()) > 0
    assert lb_mixed <= lb_paper
    lb = table["lower_bound_s"]
    assert (table["makespan_s"] >= lb * (1 - 1e-9)).all()
    np.testing.assert_allclose(table["gap_to_lb"], (table["makespan_s"] - lb) / lb, rtol=1e-12)
    base = table.set_index("policy").loc["baseline", "makespan_s"]
    np.testing.assert_allclose(
        table["gap_closed"], (base - table["makespan_s"]) / (base - lb), rtol=1e-12, atol=1e-15
    )
    assert table.set_index("policy").loc["baseline", "gap_closed"] == 0.0


def test_single_case_traces_pass_check_trace(single_150):
    """Tests that every policy's trace from run_single_case passes the section 9 invariants with
    its assignment honoured, and that the table's metrics recompute from that trace."""
    inst = single_150.instance
    table = single_150.table.set_index("policy")
    for p, r in single_150.runs.items():
        check_trace(
            r.trace, inst, assignment=r.assignment, evictions=r.evictions, admission=r.admission
        )
        assert table.loc[p, "makespan_s"] == r.trace["end_s"].max()
        prompt_rows = (r.trace["kind"] == "prefill") | (r.trace["chunk_ids"].map(len) > 0)
        assert table.loc[p, "num_prefill_iterations"] == prompt_rows.sum()
        if POLICIES[p].router == "static":
            assert r.solve["dispatch"] == POLICIES[p].dispatch
        else:
            assert r.solve["dispatch"] == POLICIES[p].router
    assert single_150.to_json()["lower_bound"]["lower_bound_s"] == single_150.bound.lower_bound_s


def test_unknown_policy_raises():
    """Tests that an unknown policy name raises ValueError naming it, from run_single_case (before
    any work), run_policy and policy_spec, and that an unknown knob raises too."""
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        run_single_case(num_requests=5, policies=["baseline", "nope"])
    inst = make_instance(load_gsm8k().iloc[:3])
    with pytest.raises(ValueError, match="unknown policy"):
        run_policy(inst, "hybrid-2")
    with pytest.raises(ValueError, match="unknown policy"):
        policy_spec("Baseline")
    with pytest.raises(ValueError, match="unknown rule knob"):
        RuleKnobs.from_dict({"lambda": 2.0})
    with pytest.raises(ValueError, match="dispatch"):
        studies.offline_assignment(inst, "greedy")


def test_make_rule_wires_spec_and_knobs():
    """Tests that make_rule gives the documented rule and queue per policy (the ablation table) and
    passes every knob through, a sort override included."""
    expected = {
        "baseline": (PrefillFirst, "fcfs"),
        "a": (Lagrangian, "fcfs"),
        "a-sorted": (Lagrangian, "longest"),
        "b": (PrefillFirst, "fcfs"),
        "c": (PrefillFirst, "longest"),
        "hybrid": (Lagrangian, "longest"),
    }
    dispatch = {"baseline": "round-robin", "a": "round-robin", "a-sorted": "round-robin"}
    for name, (cls, sort) in expected.items():
        rule = make_rule(POLICIES[name])
        assert type(rule) is cls and rule.sort == sort
        assert POLICIES[name].dispatch == dispatch.get(name, "mmbpp")
    knobs = RuleKnobs(
        lambda_multiplier=2.0, horizon=7, min_prefill=3, idle_price="literal", sort="random", seed=5
    )
    rule = make_rule(POLICIES["hybrid"], knobs)
    assert rule == Lagrangian(
        sort="random", lambda_multiplier=2.0, horizon=7, min_prefill=3, idle_price="literal", seed=5
    )
    assert make_rule(POLICIES["baseline"], knobs) == PrefillFirst(sort="random", seed=5)


@st.composite
def small_cases(draw):
    """5-40 sampled GSM8K requests on 1-3 clients (tp 2 or 4, B 1..8, roofline or fitted linear)
    and random knobs of the Lagrangian rule."""
    n = draw(st.integers(5, 40))
    seed = draw(st.integers(0, 10**6))
    cluster = Cluster(
        num_clients=draw(st.integers(1, 3)),
        tp=draw(st.sampled_from([2, 4])),
        max_batch=draw(st.integers(1, 8)),
        latency=draw(st.sampled_from(["roofline", "linear"])),
    )
    knobs = RuleKnobs(
        lambda_multiplier=draw(st.sampled_from([0.0, 0.5, 1.0, 4.0])),
        horizon=draw(st.sampled_from([1, 8, 64])),
        min_prefill=draw(st.integers(1, 4)),
        idle_price=draw(st.sampled_from(["fillable", "literal"])),
        sort=draw(st.sampled_from([None, "fcfs", "longest", "shortest", "prompt", "random"])),
        seed=draw(st.integers(0, 100)),
    )
    return n, seed, cluster, knobs


@settings(max_examples=15)
@given(small_cases())
def test_every_ablation_passes_invariants_and_meets_the_bound(case):
    """Tests on small random GSM8K instances and random knobs that every named policy, run through
    run_policy with its own dispatch (MMBPP solved), gives a trace that passes check_trace and a
    makespan >= T_LB (with the MMBPP part)."""
    n, seed, cluster, knobs = case
    inst = make_instance(sample_requests(load_gsm8k(), n, seed), cluster)
    solve = SolveSettings(time_limit_s=0.5, mip_gap=1e-3)
    lb = studies.full_lower_bound(inst, solve=solve)
    lb_mixed = studies.full_lower_bound(inst, solve=solve, mixed_iterations=True)
    assert lb.lower_bound_s >= lower_bound(inst).lower_bound_s
    for p in POLICIES:
        r = run_policy(inst, p, knobs, solve, check=True)
        check_trace(
            r.trace, inst, assignment=r.assignment, evictions=r.evictions, admission=r.admission
        )
        bound = studies.bound_for(p, lb, lb_mixed).lower_bound_s
        if r.admission == "on-demand":  # the reservation-share part does not apply
            bound = studies.full_lower_bound(
                inst, solve=solve, mixed_iterations=POLICIES[p].mixed, admission="on-demand"
            ).lower_bound_s
        assert r.metrics["makespan_s"] >= bound * (1 - 1e-9), p


# --------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study_pair():
    """run_study with 3 cases of 100 requests, once with 1 worker and once with 2."""
    kw = dict(cases=3, requests_per_case=100, time_limit=5.0, progress=False)
    return run_study(workers=1, **kw), run_study(workers=2, **kw)


def test_study_independent_of_workers(study_pair):
    """Tests that the study's per-case table and summary are identical with 1 and 2 workers."""
    one, two = study_pair
    pd.testing.assert_frame_equal(one.cases, two.cases)
    pd.testing.assert_frame_equal(one.summary, two.summary)
    assert one.failures.empty and two.failures.empty
    assert one.params["workers"] == 1 and two.params["workers"] == 2


def test_study_tables_and_params(study_pair):
    """Tests that study_cases has the documented columns, one row per case and policy with seed
    first_seed + case - 1, that the summary has one row per policy with wins and mean U, and that
    params record the seeds."""
    res = study_pair[0]
    assert set(STUDY_CASE_COLUMNS) <= set(res.cases.columns)
    assert len(res.cases) == 3 * 2
    assert sorted(res.cases["case"].unique()) == [1, 2, 3]
    assert (res.cases["seed"] == res.cases["case"]).all()
    assert res.params["seeds"] == [1, 2, 3] and res.params["cases"] == 3
    assert (res.cases["makespan_s"] >= res.cases["lower_bound_s"] * (1 - 1e-9)).all()
    s = res.summary.set_index("policy")
    assert list(s.index) == ["baseline", "hybrid"]
    assert {"wins", "utilization_mean", "makespan_mean_s", "num_cases"} <= set(s.columns)
    assert (s["num_cases"] == 3).all()
    assert s.loc["baseline", "wins"] == 0
    hyb = res.cases[res.cases["policy"] == "hybrid"].set_index("case")["makespan_s"]
    base = res.cases[res.cases["policy"] == "baseline"].set_index("case")["makespan_s"]
    assert s.loc["hybrid", "wins"] == int((hyb < base - 1e-9).sum())
    assert s.loc["hybrid", "utilization_mean"] == pytest.approx(
        res.cases.loc[res.cases["policy"] == "hybrid", "utilization"].mean(), rel=1e-12
    )


def test_study_seeds_follow_first_seed():
    """Tests that case k uses seed first_seed + k - 1, recorded in params and in the table, and that
    its lower bound is that of the sample drawn with that seed."""
    res = run_study(
        cases=2,
        requests_per_case=20,
        first_seed=7,
        policies=("baseline",),
        workers=1,
        progress=False,
    )
    assert res.params["seeds"] == [7, 8]
    assert res.cases["seed"].tolist() == [7, 8] and res.cases["case"].tolist() == [1, 2]
    inst = make_instance(sample_requests(load_gsm8k(), 20, 8), Cluster())
    assert res.cases["lower_bound_s"].iloc[1] == lower_bound(inst).lower_bound_s


def test_study_reports_a_failing_case(monkeypatch):
    """Tests that a case that raises is listed in failures with its case, seed and error, not
    dropped silently, while the other cases are still run and summarized."""
    real = study.sample_requests

    def flaky(requests, num_requests, seed):
        if seed == 2:
            raise RuntimeError("boom on seed 2")
        return real(requests, num_requests, seed)

    monkeypatch.setattr(study, "sample_requests", flaky)  # the study draws its cases
    res = run_study(
        cases=3, requests_per_case=20, policies=("baseline",), workers=1, progress=False
    )
    assert res.failures[["case", "seed"]].values.tolist() == [[2, 2]]
    assert res.failures["error"].iloc[0] == "RuntimeError: boom on seed 2"
    assert sorted(res.cases["case"].unique()) == [1, 3]
    assert res.summary.set_index("policy").loc["baseline", "num_cases"] == 2
    assert res.params["seeds"] == [1, 2, 3]
    assert res.to_json()["failures"] == [
        {"case": 2, "seed": 2, "error": "RuntimeError: boom on seed 2"}
    ]


def test_study_reports_failing_cases_across_processes(gsm8k):
    """Tests that with 2 worker processes a case whose sample holds a request too large for the KV
    memory comes back in failures (ValueError) while the other cases succeed."""
    req = gsm8k.iloc[:5].reset_index(drop=True).copy()
    req.loc[4, "prompt_tokens"] = 10**6  # larger than any client's KV capacity
    seeds = range(1, 7)
    bad = [
        k
        for k, s in enumerate(seeds, start=1)
        if (sample_requests(req, 2, s)["prompt_tokens"] == 10**6).any()
    ]
    assert 0 < len(bad) < 6  # both kinds of case occur with these seeds
    res = run_study(
        cases=6,
        requests_per_case=2,
        requests=req,
        policies=("baseline", "hybrid"),
        workers=2,
        progress=False,
    )
    assert res.failures["case"].tolist() == bad
    assert res.failures["error"].str.startswith("ValueError").all()
    assert sorted(res.cases["case"].unique()) == [k for k in range(1, 7) if k not in bad]


def test_summarize_study_by_hand():
    """Tests summarize_study on a hand-made table: hybrid makespans 9, 10, 11 against a baseline of
    10 give 1 win, 1 tie, a mean makespan reduction of 0, and U gains of +10, 0 and -5 points."""
    cases = pd.DataFrame(
        {
            "case": [1, 2, 3, 1, 2, 3],
            "seed": [1, 2, 3, 1, 2, 3],
            "policy": ["baseline"] * 3 + ["hybrid"] * 3,
            "makespan_s": [10.0, 10.0, 10.0, 9.0, 10.0, 11.0],
            "utilization": [0.70, 0.80, 0.90, 0.80, 0.80, 0.85],
            "mean_batch": [1.0] * 6,
            "gap_to_lb": [0.0] * 6,
        }
    )
    s = summarize_study(cases).set_index("policy")
    assert s.loc["hybrid", "wins"] == 1 and s.loc["hybrid", "ties"] == 1
    assert s.loc["baseline", "wins"] == 0 and s.loc["baseline", "ties"] == 3
    assert s.loc["hybrid", "makespan_reduction_mean"] == pytest.approx(0.0, abs=1e-12)
    assert s.loc["hybrid", "utilization_gain_pp_mean"] == pytest.approx(5 / 3, rel=1e-9)
    assert s.loc["hybrid", "utilization_gain_pp_min"] == pytest.approx(-5.0, rel=1e-9)
    assert s.loc["hybrid", "utilization_gain_pp_max"] == pytest.approx(10.0, rel=1e-9)
    assert s.loc["hybrid", "makespan_min_s"] == 9.0 and s.loc["hybrid", "makespan_max_s"] == 11.0


def test_run_study_rejects_bad_arguments():
    """Tests that run_study raises ValueError for zero cases, zero workers, an unknown policy and a
    sample larger than the workload, before running anything."""
    with pytest.raises(ValueError, match="cases"):
        run_study(cases=0, progress=False)
    with pytest.raises(ValueError, match="workers"):
        run_study(cases=1, workers=0, progress=False)
    with pytest.raises(ValueError, match="unknown policy"):
        run_study(cases=1, policies=("baseline", "d"), progress=False)
    with pytest.raises(ValueError, match="requests_per_case"):
        run_study(cases=1, requests_per_case=2000, progress=False)


# --------------------------------------------------------------------------------------
# Regression: the default single case (all 1,319 requests, 2 clients tp=4, B=32)
# --------------------------------------------------------------------------------------

# Values of the current implementation (pinned so that any behaviour change is noticed; update
# them deliberately, with the reason, when the model changes). History: the hybrid gave
# 93.0762 s / U 0.87003 with the LPT-equal MMBPP incumbent; the LPT + local-search warm start
# (commit 05a2d2d) finds a better-balanced plan (MMBPP 91.15118569 s, gap 0) that simulates to
# 93.1113 s / U 0.86972.
PINNED = {
    "baseline": {"makespan_s": 104.04043463483345, "utilization": 0.7776324459926642},
    "hybrid": {"makespan_s": 93.11132070675673, "utilization": 0.8697155545043683},
    "lower_bound_s": 91.15118569312946,
    "volume_memory_s": 91.15118566181897,
}


@pytest.fixture(scope="module")
def default_case():
    """The default single case, baseline and hybrid, traces checked."""
    return run_single_case(policies=("baseline", "hybrid"))


def test_regression_default_single_case_hybrid_beats_baseline(default_case):
    """Tests that on the default single case the hybrid beats the baseline on makespan and on
    utilization and closes at least 75% of the baseline's gap to T_LB."""
    t = default_case.table.set_index("policy")
    assert default_case.instance.num_requests == 1319
    assert t.loc["hybrid", "makespan_s"] < t.loc["baseline", "makespan_s"]
    assert t.loc["hybrid", "utilization"] > t.loc["baseline", "utilization"]
    assert t.loc["hybrid", "gap_closed"] >= 0.75


def test_regression_default_single_case_pinned_values(default_case):
    """Tests that the default single case reproduces the pinned makespans, utilizations and T_LB to
    a relative 1e-6 (baseline 104.04 s / U 0.7776, hybrid 93.11 s / U 0.870, T_LB 91.15 s)."""
    t = default_case.table.set_index("policy")
    for p in ("baseline", "hybrid"):
        for col, value in PINNED[p].items():
            assert t.loc[p, col] == pytest.approx(value, rel=1e-6), (p, col)
    assert default_case.bound.lower_bound_s == pytest.approx(PINNED["lower_bound_s"], rel=1e-6)
    assert default_case.bound.volume_memory_s == pytest.approx(PINNED["volume_memory_s"], rel=1e-6)


def test_prediction_error_reaches_planners_but_not_the_simulator():
    """Tests that prediction_sigma > 0 changes only the predicted lengths (seeded), that
    the simulator still runs the true lengths (the trace checks pass against true o_i),
    and that sigma = 0 reproduces the exact-prediction run."""
    exact = run_single_case(num_requests=80, policies=["baseline", "hybrid"])
    same = run_single_case(num_requests=80, policies=["baseline", "hybrid"], prediction_sigma=0.0)
    pd.testing.assert_frame_equal(
        exact.table.drop(columns="simulate_s"), same.table.drop(columns="simulate_s")
    )
    noisy = run_single_case(
        num_requests=80, policies=["baseline", "hybrid"], prediction_sigma=0.5, prediction_seed=3
    )
    req, req0 = noisy.instance.requests, exact.instance.requests
    assert (req["output_tokens"] == req0["output_tokens"]).all()
    assert (req["predicted_output_tokens"] != req["output_tokens"]).any()
    again = run_single_case(
        num_requests=80, policies=["baseline", "hybrid"], prediction_sigma=0.5, prediction_seed=3
    )
    assert (
        again.instance.requests["predicted_output_tokens"] == req["predicted_output_tokens"]
    ).all()
    t = noisy.table.set_index("policy")["makespan_s"]
    t0 = exact.table.set_index("policy")["makespan_s"]
    assert t["baseline"] == pytest.approx(t0["baseline"])  # the baseline ignores predictions
    assert t["hybrid"] != pytest.approx(t0["hybrid"])  # the hybrid plans with them
    assert noisy.params["prediction_sigma"] == 0.5 and noisy.params["prediction_seed"] == 3


@pytest.mark.slow
def test_study_on_dask_equals_processes(dask_scheduler):
    """Tests that the study on a 2-worker Dask cluster gives the process pool's tables exactly."""
    kw = dict(cases=3, requests_per_case=40, time_limit=5.0, progress=False, workers=2)
    procs = run_study(engine="processes", **kw)
    dask = run_study(engine="dask", scheduler=dask_scheduler, **kw)
    pd.testing.assert_frame_equal(dask.cases, procs.cases)
    pd.testing.assert_frame_equal(dask.summary, procs.summary)
    assert dask.failures.empty and dask.params["engine"] == "dask"
