"""Tests of hybridsched.sweep: the sensitivity sweep and the ablation deltas."""

from __future__ import annotations

import pandas as pd
import pytest

from hybridsched.studies.sensitivity import STAGES, ablation_deltas, sweep
from hybridsched.studies.single_case import run_single_case


def test_sweep_rows_and_reference_baseline():
    """Tests that sweep gives one row per grid point and policy, that the baseline (the fixed
    reference) is identical at every knob value, and that gains are measured against it."""
    df = sweep(
        {"lambda_multiplier": [0.5, 2.0]}, {"num_requests": 40}, policies=("baseline", "hybrid")
    )
    assert len(df) == 4
    assert list(df["policy"]) == ["baseline", "hybrid"] * 2
    base = df[df["policy"] == "baseline"]
    assert base["makespan_s"].nunique() == 1 and (base["utilization_gain_pp"] == 0).all()
    hyb = df[df["policy"] == "hybrid"]
    expect = 100 * (hyb["utilization"].to_numpy() - base["utilization"].to_numpy())
    assert hyb["utilization_gain_pp"].to_numpy() == pytest.approx(expect)
    assert (df["makespan_s"] >= df["lower_bound_s"] * (1 - 1e-9)).all()


def test_sweep_matches_run_single_case():
    """Tests that a sweep point with default knobs reproduces run_single_case's makespans."""
    df = sweep(
        {"tp": [4]}, {"num_requests": 40, "clients": 2}, policies=("baseline", "c", "hybrid")
    )
    single = run_single_case(
        num_requests=40, policies=("baseline", "c", "hybrid"), check=False
    ).table
    got = df.set_index("policy")["makespan_s"]
    want = single.set_index("policy")["makespan_s"]
    assert got.to_dict() == pytest.approx(want.to_dict())


def test_sweep_rejects_unknown_names():
    """Tests that sweep names an unknown parameter, an unknown policy and an empty value list."""
    with pytest.raises(ValueError, match="lambda_mult"):
        sweep({"lambda_mult": [1.0]}, {"num_requests": 20})
    with pytest.raises(ValueError, match="nope"):
        sweep({"horizon": [8]}, {"num_requests": 20}, policies=("nope",))
    with pytest.raises(ValueError, match="no values"):
        sweep({"horizon": []}, {"num_requests": 20})


def test_ablation_deltas_hand_arithmetic():
    """Tests that ablation_deltas gives each stage's U gain (pp) and makespan change by hand
    arithmetic, per group, and skips stages whose policies are missing."""
    t = pd.DataFrame(
        {
            "g": [1, 1, 1, 2, 2],
            "policy": ["baseline", "c", "hybrid", "baseline", "hybrid"],
            "utilization": [0.80, 0.85, 0.88, 0.5, 0.6],
            "makespan_s": [100.0, 95.0, 90.0, 10.0, 8.0],
        }
    )
    d = ablation_deltas(t, by=["g"])
    g1 = d[d["g"] == 1].set_index("stage")
    assert list(g1.index) == ["online rule (MMBPP, sorted)", "total"]
    assert g1.loc["total", "utilization_gain_pp"] == pytest.approx(8.0)
    assert g1.loc["online rule (MMBPP, sorted)", "makespan_change_s"] == pytest.approx(-5.0)
    assert g1.loc["total", "makespan_change_pct"] == pytest.approx(-10.0)
    assert d[d["g"] == 2]["stage"].tolist() == ["total"]
    assert len(STAGES) == 9  # 7 ablation steps of the paper, 2 for chunked prefill


def test_sweep_on_a_process_pool_equals_serial():
    """Tests that the sensitivity sweep run on 2 pool processes (one job per cluster point)
    gives the serial table exactly, rows in grid order."""
    grid = {"clients": [1, 2], "lambda_multiplier": [0.5, 2.0]}
    kw = dict(base={"num_requests": 30}, policies=("baseline", "a"))
    serial = sweep(grid, **kw)
    pool = sweep(grid, engine="processes", workers=2, **kw)
    pd.testing.assert_frame_equal(pool, serial)
    assert list(serial["clients"]) == [1, 1, 1, 1, 2, 2, 2, 2]
