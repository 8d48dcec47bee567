"""Steady-state measurement of a rate: run length, warm-up, the sustain rule, the interval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hybridsched.studies.steady_state import (
    SteadyState,
    half_width,
    rate_interval,
    steady_attainment,
    sustained,
    tiled,
)


def test_runs_span_the_minimum_duration():
    """Tests that a run at rate r has max(minimum, ceil(r * min_duration)) requests, capped,
    one cell per seed with Poisson arrivals at r."""
    s = SteadyState(min_duration_s=600, seeds=(4, 5, 6), min_requests=200, max_run_requests=9000)
    assert s.num_requests(10.0) == 6000
    assert s.num_requests(0.1) == 200
    assert s.num_requests(100.0) == 9000
    cells = s.cells({"model": "m", "workload": "w"}, 2.5)
    assert [c["seed"] for c in cells] == [4, 5, 6]
    assert {c["arrivals"] for c in cells} == {"poisson:2.5"}
    assert {c["num_requests"] for c in cells} == {1500}


def test_a_window_keeps_its_arrivals_compressed_to_the_rate():
    """Tests that with a trace window a run keeps the table's arrivals, scaled to the rate."""
    s = SteadyState(seeds=(0,), native_rates={"m": 4.0})
    (cell,) = s.cells({"model": "m", "workload": "w", "seed": 0}, 10.0)
    assert cell["arrivals"] == "table" and cell["rate_scale"] == 2.5
    assert cell["num_requests"] is None


def test_warmup_requests_are_not_counted():
    """Tests that requests arriving in the first 20% of the arrival span do not count: every
    early request misses the TTFT SLO, every later one meets it."""
    t = np.linspace(0.0, 100.0, 101)
    req = pd.DataFrame({"arrival_s": t, "ttft_s": np.where(t < 20, 5.0, 0.1), "tpot_s": 0.01})
    got = steady_attainment(req, 1.0, 0.05, warmup=0.2)
    assert got["steady_attainment"] == 1.0 and got["counted"] == 81
    assert got["warmup_s"] == pytest.approx(20.0) and got["span_s"] == pytest.approx(100.0)
    whole = steady_attainment(req, 1.0, 0.05, warmup=0.0)
    assert whole["steady_attainment"] == pytest.approx(81 / 101)


def test_sustained_means_every_seed_meets_the_target():
    """Tests the rule: one seed under the target fails the rate, whatever the mean."""
    assert sustained([0.95, 0.91, 0.90], 0.9)
    assert not sustained([0.99, 0.99, 0.89], 0.9)  # mean 0.957 >= 0.9, one seed below
    assert not sustained([], 0.9)


def test_interval_is_the_bracket_with_one_seed_and_wider_with_spread():
    """Tests the interval: one seed gives [max_rate, rate_upper] (a linear crossing between
    them); seed spread widens it to the tested rates its t-band cannot separate from the
    target; with no failing rate the top is infinite."""
    one = {1.0: [1.0], 2.0: [0.95], 3.0: [0.5]}
    assert rate_interval(one, 0.9, 2.0, 3.0) == (2.0, 3.0)
    spread = {1.0: [1.0, 1.0, 1.0], 2.0: [0.99, 0.91, 0.95], 3.0: [0.93, 0.6, 0.8]}
    low, high = rate_interval(spread, 0.9, 2.0, 3.0)
    assert low < 2.0 and high == math.inf  # 3.0's upper band still reaches 0.9
    assert half_width([0.99, 0.91, 0.95]) == pytest.approx(2.919986 * 0.04 / math.sqrt(3), 1e-4)
    capped = rate_interval({1.0: [1.0], 2.0: [1.0]}, 0.9, 2.0, math.inf)
    assert capped == (2.0, math.inf)


def test_tiled_workload_has_unique_ids_and_enough_rows():
    """Tests that a workload repeated for a long run has new ids and keeps its rows."""
    t = pd.DataFrame({"request_id": [3, 7], "prompt_tokens": [5, 6], "arrival_s": [0.0, 1.0]})
    out = tiled(t, 5)
    assert len(out) == 6 and out["request_id"].is_unique
    assert list(out["prompt_tokens"]) == [5, 6] * 3
    assert tiled(t, 2) is t


def test_a_run_longer_than_the_workload_draws_from_its_repeats():
    """Tests a real run that needs more requests than the shaped workload holds (50 kept by
    max_requests, 120 drawn): it runs on the workload repeated, counting after the warm-up."""
    from hybridsched.studies.steady_state import base_tables, steady_job

    cell = {
        "workload": "gsm8k",
        "model": "llama-3.1-8b",
        "hardware": "h100-80gb-sxm",
        "tp": 1,
        "clients": 1,
        "max_batch": 8,
        "policy": "vllm",
        "slo_ttft": 2.0,
        "slo_tpot": 0.1,
    }
    (c,) = SteadyState(min_duration_s=40, seeds=(0,), min_requests=10).cells(cell, 3.0)
    tables = base_tables([c], {})
    row = steady_job({"cell": c, "warmup": 0.2, "max_requests": 50}, tables)
    assert row["status"] == "ok", row.get("error")
    assert row["num_requests"] == 120 and row["pool_requests"] == 50
    assert 0 < row["counted"] < 120 and 0 <= row["steady_attainment"] <= 1
