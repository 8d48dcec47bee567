"""Capacity planning: the bisection, the choice of the cheapest cluster, a tiny real plan."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridsched.cli import main
from hybridsched.reports.capacity_plots import capacity_claim, rates_table
from hybridsched.studies.capacity import (
    Bisection,
    bisect_max,
    candidate_cells,
    cheapest,
    default_policies,
    frontier,
    gpus_needed,
    is_clairvoyant,
    plan_capacity,
    read_prices,
)


@given(
    threshold=st.floats(0.02, 60.0),
    start=st.floats(0.1, 10.0),
    tol=st.sampled_from([0.01, 0.05, 0.2]),
)
def test_bisection_brackets_the_threshold_of_a_monotone_function(threshold, start, tol):
    """Tests that on ok(x) = x <= threshold the search ends with lo <= threshold < hi and
    the bracket within tol (or at the range's edge), testing only what it needs."""
    b = bisect_max(lambda x: x <= threshold, start, rel_tol=tol)
    assert b.lo <= threshold < b.hi
    lo_edge, hi_edge = start / 64, start * 64
    if lo_edge <= threshold < hi_edge:
        assert b.lo > 0 and b.hi - b.lo <= tol * b.hi
    assert all((x <= threshold) == ok for x, ok in b.tested)
    assert len(b.tested) <= 7 + math.ceil(math.log2(1 / tol)) + 1


def test_bisection_edges():
    """Tests the range edges: always ok stops capped at 64x the start, never ok gives 0."""
    up = bisect_max(lambda x: True, 2.0)
    assert up.lo == 128.0 and up.capped and up.hi == math.inf
    down = bisect_max(lambda x: False, 2.0)
    assert down.lo == 0.0 and not down.capped and down.hi == pytest.approx(2.0 / 64)
    with pytest.raises(ValueError, match="start must be a positive"):
        Bisection(0.0)


def _table() -> pd.DataFrame:
    rows = [
        # candidate, hardware, policy, gpus, max_rate, cost_per_hour
        (0, "a100", "baseline", 8, 10.0, 16.0),
        (1, "a100", "hybrid", 4, 6.0, 8.0),
        (2, "h100", "hybrid", 4, 9.0, 12.0),
        (3, "h100", "baseline", 4, 4.0, 12.0),
        (4, "a100", "baseline", 2, 3.0, 4.0),
    ]
    t = pd.DataFrame(rows, columns=["candidate", "hardware", "policy", "gpus", "max_rate", "cost"])
    return t.rename(columns={"cost": "cost_per_hour"})


def test_cheapest_prefers_fewest_gpus_then_cost():
    """Tests the choice: fewest GPUs among those that sustain the rate, then the lowest cost."""
    t = _table()
    assert cheapest(t, 5.0)["candidate"] == 1  # 4 GPUs; a100 cheaper than h100
    assert cheapest(t, 7.0)["candidate"] == 2
    assert cheapest(t, 3.0)["candidate"] == 4
    assert cheapest(t, 11.0) is None
    no_prices = t.assign(cost_per_hour=math.nan)
    assert cheapest(no_prices, 5.0)["candidate"] == 2  # tie on GPUs: the higher max_rate


def test_gpus_needed_and_frontier():
    """Tests GPUs needed per policy for a rate and the cumulative best rate per GPU count."""
    t = _table()
    need = gpus_needed(t, 5.0).set_index("policy")["gpus_needed"]
    assert need["hybrid"] == 4 and need["baseline"] == 8
    f = frontier(t, by=("policy",))
    base = f[f["policy"] == "baseline"].set_index("gpus")["max_rate"]
    assert base.to_dict() == {2: 3.0, 4: 4.0, 8: 10.0}


def test_read_prices_names_bad_rows(tmp_path):
    """Tests that a price table needs its two columns and non-negative numbers."""
    p = tmp_path / "p.csv"
    p.write_text("hardware,usd_per_gpu_hour\na100,2.5\nh100,lots\n")
    with pytest.raises(
        ValueError, match="usd_per_gpu_hour must be a number >= 0, got 'lots' in row 1"
    ):
        read_prices(p)
    p.write_text("hardware,usd\na100,2.5\n")
    with pytest.raises(ValueError, match="lacks column"):
        read_prices(p)
    p.write_text("hardware,usd_per_gpu_hour\na100,2.5\n")
    assert read_prices(p) == {"a100": 2.5}


def test_plan_on_a_tiny_real_cluster(tmp_path):
    """Tests a plan on one small cluster (B=4, so queues build near 1 req/s): the reported
    rate was measured to meet the target in steady state, the next tested rate above it was
    measured to miss it, and the CLI writes the choice."""
    out = tmp_path / "cap"
    argv = ["capacity", "--slo-ttft", "2.0", "--slo-tpot", "0.05", "--rate", "2"]
    argv += ["--tp", "4", "--clients", "1", "--max-batch", "4", "--policies", "baseline"]
    argv += ["--num-requests", "30", "--min-duration", "20", "--seeds", "1"]
    argv += ["--rel-tol", "0.1", "--engine", "serial", "--quiet", "--out", str(out)]
    code = 0
    try:
        main(argv)
    except SystemExit as e:  # no candidate sustains the rate: still a valid plan
        code = e.code
    cand = pd.read_csv(out / "candidates.csv")
    ev = pd.read_csv(out / "evaluations.csv")
    assert len(cand) == 1 and cand["gpus"].iloc[0] == 4
    r, hi = cand["max_rate"].iloc[0], cand["rate_upper"].iloc[0]
    assert 0 < r < hi < math.inf and hi - r <= 0.1 * hi
    at = ev.set_index("rate")["steady_attainment"]
    assert at[r] >= 0.9 and at[hi] < 0.9
    assert (ev["num_requests"] >= ev["rate"] * 20 - 1e-9).all()  # runs span --min-duration
    plan = json.loads((out / "capacity.json").read_text())
    assert (plan["choice"] is not None) == (r >= 2) and code == (0 if r >= 2 else 1)
    assert plan["params"]["target"] == 0.9 and plan["params"]["seed"] == 0


SMALL = {
    "models": ["llama-3.1-8b"],
    "hardware": ["h100-80gb-sxm"],
    "tp": [1],
    "max_batch": [8],
    "policies": ["vllm"],
    "engine": "serial",
    "min_duration_s": 30.0,
    "seeds": 2,
    "rel_tol": 0.1,
}


def test_a_cluster_sustains_no_more_than_its_saturated_throughput():
    """Tests that the sustained rate of a cluster is at most the throughput it reaches when
    flooded (4x that rate, twice as long), and that the larger cluster is not searched once
    the smaller one sustains the target."""
    from hybridsched.studies.cells import simulate_cell

    res = plan_capacity("azure-conv", 1.0, 0.05, 1.0, clients=[1, 2], **SMALL)
    (row,) = res.candidates.itertuples()
    assert row.clients == 1 and row.sustains and not row.at_search_bound
    assert [s["clients"] for s in res.skipped] == [2]
    assert "not searched" in res.skipped[0]["reason"]
    flood = 4 * row.max_rate
    c = simulate_cell(
        {
            "workload": "azure-conv",
            "model": "llama-3.1-8b",
            "hardware": "h100-80gb-sxm",
            "tp": 1,
            "clients": 1,
            "max_batch": 8,
            "policy": "vllm",
            "num_requests": round(flood * 60),
            "arrivals": f"poisson:{flood}",
        }
    )
    assert row.max_rate <= c.run.metrics["throughput_rps"]


def test_rates_do_not_fall_with_more_identical_clients():
    """Tests that with the full frontier searched, the sustained rate does not fall as
    identical clients are added (beyond the bisection's tolerance)."""
    res = plan_capacity(
        "azure-conv", 1.0, 0.05, 2.0, clients=[1, 2, 3], stop_at_target=False, **SMALL
    )
    t = res.candidates.sort_values("clients")
    assert list(t["clients"]) == [1, 2, 3] and t["error"].isna().all()
    rates = t["max_rate"].to_numpy()
    assert (rates[1:] >= rates[:-1] * (1 - SMALL["rel_tol"])).all()
    assert rates[-1] > rates[0]
    f = frontier(res.candidates, by=("policy",))
    assert f["max_rate"].is_monotonic_increasing


def test_a_rate_at_the_search_bound_is_flagged_and_not_shown_as_measured(tmp_path, capsys):
    """Tests that a cluster meeting any SLO at every rate tried stops at the top of the
    range, flagged, with an open-ended bracket, and the command prints it as '>= X'."""
    out = tmp_path / "cap"
    argv = ["capacity", "--slo-ttft", "1000", "--slo-tpot", "10", "--rate", "0.75"]
    argv += ["--models", "llama-3.1-8b", "--hardware", "h100-80gb-sxm", "--tp", "1"]
    argv += ["--clients", "1", "--policies", "vllm", "--num-requests", "20"]
    argv += ["--min-duration", "2", "--seeds", "1", "--engine", "serial", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    cand = pd.read_csv(out / "candidates.csv")
    (row,) = cand.itertuples()
    assert row.at_search_bound and row.capped and row.max_rate == 0.75 * 2**6
    assert row.rate_upper == math.inf and row.max_rate_ci_high == math.inf
    assert rates_table(cand)["max_rate"].tolist() == [">= 48"]
    printed = capsys.readouterr().out
    table_line = next(line for line in printed.splitlines() if "h100-80gb-sxm" in line)
    assert ">= 48" in table_line and "sustains >= 48 req/s" in printed
    assert " 48 " not in table_line.replace(">= 48", "")  # never the bare number


def test_capacity_takes_a_trace_window(tmp_path):
    """Tests that --window keeps the window's requests and arrivals, compressed to each
    tested rate (rate_scale = rate / the window's own rate)."""
    from hybridsched.workloads.tables import requests_for

    out = tmp_path / "cap"
    argv = ["capacity", "--slo-ttft", "1", "--slo-tpot", "0.05", "--rate", "8"]
    argv += ["--workload", "azure-conv", "--window", "0:60", "--models", "llama-3.1-8b"]
    argv += ["--hardware", "h100-80gb-sxm", "--tp", "1", "--clients", "1", "--policies"]
    argv += ["vllm", "--rel-tol", "0.2", "--engine", "serial", "--quiet", "--out", str(out)]
    with contextlib.suppress(SystemExit):  # exit 1: no cluster sustains 8 req/s
        main(argv)
    ev = pd.read_csv(out / "evaluations.csv")
    n = len(requests_for("azure-conv", workload_options={"window": "0:60"}))
    assert (ev["arrivals"] == "table").all() and (ev["window"] == "0:60").all()
    assert ev["rate_scale"].to_numpy() == pytest.approx(ev["rate"].to_numpy() / (n / 60))
    assert (ev["counted"] < n).all() and ev["seed"].nunique() == 1
    notes = json.loads((out / "capacity.json").read_text())["params"]["notes"]
    assert any("one set of arrivals" in x for x in notes)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--policies", "hybrid", "vllm"], "--allow-clairvoyant"),
        (["--rate-scale", "2"], "rate-scale must be 1"),
    ],
)
def test_capacity_refuses_clairvoyant_policies_and_a_rate_scale(tmp_path, capsys, extra, needle):
    """Tests that a clairvoyant policy without --allow-clairvoyant, or a --rate-scale, exits
    2 with one line, before any simulation."""
    argv = ["capacity", "--slo-ttft", "1", "--slo-tpot", "0.05", "--rate", "1", *extra]
    assert main([*argv, "--out", str(tmp_path / "cap")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
    assert not (tmp_path / "cap").exists()


def test_clairvoyance_and_the_default_policies_and_grid():
    """Tests which policies read future arrivals, that the defaults are online ones, and the
    default grid: every client count per tp that holds the model, in order of GPUs."""
    assert is_clairvoyant("hybrid") and is_clairvoyant("hybrid-chunked")
    assert not is_clairvoyant("vllm") and not is_clairvoyant("baseline")
    assert not is_clairvoyant("online-hybrid")
    assert is_clairvoyant("baseline", router=None) is False
    assert not any(is_clairvoyant(p) for p in default_policies())
    assert "vllm" in default_policies() and "online-hybrid" in default_policies()
    fixed = {"workload": "gsm8k", "seed": 0, "slo_ttft": 1.0, "slo_tpot": 0.1}
    space = {"model": ["llama-3.1-70b"], "hardware": ["h100-80gb-sxm"], "max_batch": [32]}
    cells, skipped = candidate_cells(
        {**fixed}, {**space, "policy": ["vllm"]}, [1, 2, 4, 8], None, 8
    )
    got = [(c["tp"], c["clients"]) for c in cells]
    assert sorted(got) == [(2, 1), (2, 2), (2, 3), (2, 4), (4, 1), (4, 2), (8, 1)]
    gpus = [t * n for t, n in got]
    assert gpus == sorted(gpus)
    assert [s["tp"] for s in skipped] == [1] and "KV" in skipped[0]["reason"]


def test_plan_skips_clusters_over_max_gpus_and_rejects_bad_slo():
    """Tests that candidates over max_gpus are skipped with the reason and bad SLOs are errors."""
    with pytest.raises(ValueError, match="slo_ttft must be a positive number"):
        plan_capacity("gsm8k", -1.0, 0.1, 1.0)
    res = plan_capacity(
        "gsm8k",
        1.0,
        0.1,
        1.0,
        tp=[8],
        clients=[4],
        policies=["baseline"],
        max_gpus=16,
        engine="serial",
        num_requests=10,
    )
    assert res.candidates.empty and res.choice is None
    assert res.skipped and "max_gpus=16" in res.skipped[0]["reason"]


def test_frontier_plot_draws_bound_points_open_with_an_arrow():
    """Tests the frontier figure: measured points filled, search-bound points open with an
    upward arrow, and axes in GPUs and req/s."""
    import matplotlib

    matplotlib.use("Agg")
    from hybridsched.reports.capacity_plots import plot_frontier

    t = _table().assign(
        at_search_bound=[True, False, False, False, False],
        max_rate_ci_low=[10.0, 5.5, 8.0, 3.5, 2.5],
        max_rate_ci_high=[math.inf, 6.5, 10.0, 4.5, 3.5],
    )
    ax = plot_frontier(t, 5.0)
    opened = [ln for ln in ax.lines if ln.get_markerfacecolor() == "none"]
    assert len(opened) == 1 and opened[0].get_ydata()[0] == 10.0
    (arrow,) = ax.texts
    assert arrow.xy[1] > 10.0 and ax.get_ylim()[1] > arrow.xy[1]
    assert "GPUs" in ax.get_xlabel() and "req/s" in ax.get_ylabel()


def test_capacity_claim_is_built_from_the_plan():
    """Tests the index's line of a capacity plan: model, workload, SLO and measurement from
    the plan's parameters, the cheapest cluster with its rates, the analytic GPUs; and the
    line when no cluster sustains the rate."""
    params = {
        "workload": "azure-conv",
        "slo_ttft": 1.0,
        "slo_tpot": 0.05,
        "target": 0.9,
        "rate": 20.0,
        "max_gpus": 8,
        "seeds": [0, 1, 2],
        "min_duration_s": 600.0,
        "search_space": {"model": ["llama-3.1-8b"]},
    }
    choice = {
        "clients": 3,
        "tp": 1,
        "hardware": "h100-sxm-vllm",
        "gpus": 3,
        "max_batch": 32,
        "policy": "vllm",
        "at_search_bound": False,
        "max_rate": 28.84,
        "rate_upper": 30.1,
        "max_rate_ci_low": 27.5,
        "max_rate_ci_high": 29.9,
    }
    claim = capacity_claim(params, choice, 2.0)
    assert claim.startswith(
        "llama-3.1-8b on azure-conv, TTFT <= 1 s and TPOT <= 0.05 s for 90% of requests, "
        "steady state (3 seeds, runs of 600 s): cheapest for 20 req/s: 3 x tp=1 h100-sxm-vllm "
        "(3 GPUs), B=32, policy vllm: sustains 28.8 req/s"
    )
    assert claim.endswith("; the analytic estimate asks for 2 GPUs.")
    assert capacity_claim(params, choice, np.int64(1)).endswith("asks for 1 GPU.")
    assert capacity_claim(params, choice, np.float64(3.0)).endswith("asks for 3 GPUs.")
    none = capacity_claim({**params, "seeds": [0]}, None, math.nan)
    assert none.endswith("(1 seed, runs of 600 s): no candidate sustains 20 req/s within 8 GPUs.")


def test_capacity_defaults_to_the_measured_h100_vllm_profile():
    """Tests that `capacity` and `plan_capacity` plan on the H100 vLLM kernel profile unless
    told otherwise (not the paper's guessed A100 roofline)."""
    import inspect

    from hybridsched.cli import build_parser
    from hybridsched.studies.capacity import plan_capacity

    args = build_parser().parse_args(
        ["capacity", "--workload", "gsm8k", "--slo-ttft", "1", "--slo-tpot", "0.1",
         "--rate", "2", "--out", "x"]
    )  # fmt: skip
    assert args.hardware == ["h100-sxm-vllm"]
    assert tuple(inspect.signature(plan_capacity).parameters["hardware"].default) == (
        "h100-sxm-vllm",
    )
