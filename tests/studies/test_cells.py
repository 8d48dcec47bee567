"""A cell: one simulation from a flat dict of options, the same run as `simulate`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hybridsched.cli import main
from hybridsched.studies.cells import cell_id, resolve, run_cell, simulate_cell
from hybridsched.studies.config import DEFAULTS
from hybridsched.trace.metrics import request_table, slo_attainment


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    from hybridsched.workloads.requests import load_gsm8k

    path = tmp_path_factory.mktemp("cells") / "req.csv"
    load_gsm8k().iloc[:40].to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "policy,arrivals", [("hybrid", "poisson:4"), ("baseline", "table"), ("chunked", "gamma:3,2")]
)
def test_cell_metrics_equal_simulate(tmp_path, small_csv, policy, arrivals):
    """Tests that run_cell's metrics equal those `simulate` writes with the same options."""
    out = tmp_path / "sim"
    argv = ["simulate", "--policy", policy, "--workload", str(small_csv), "--seed", "3"]
    argv += ["--arrivals", arrivals, "--rate-scale", "1.5", "--horizon", "16", "--out", str(out)]
    assert main(argv) == 0
    sim = json.loads((out / "metrics.json").read_text())
    row = run_cell(
        {
            "policy": policy,
            "workload": str(small_csv),
            "seed": 3,
            "arrivals": arrivals,
            "rate_scale": 1.5,
            "horizon": 16,
        }
    )
    assert row["status"] == "ok", row.get("error")
    for k in ("makespan_s", "utilization", "mean_batch", "ttft_p99_s", "tpot_p50_s", "e2e_p90_s"):
        assert row[k] == sim[k], k
    assert sim["arrivals"] == arrivals and sim["rate_scale"] == 1.5


def test_rate_scale_divides_arrival_times(small_csv):
    """Tests that rate_scale=2 halves every arrival time of the same Poisson draw."""
    a = simulate_cell({"workload": str(small_csv), "arrivals": "poisson:2", "seed": 1})
    b = simulate_cell(
        {"workload": str(small_csv), "arrivals": "poisson:2", "seed": 1, "rate_scale": 2}
    )
    np.testing.assert_allclose(b.instance.arrival, a.instance.arrival / 2)


def test_resolve_names_unknown_and_bad_options():
    """Tests that an unknown option lists the known ones and a bad value names its option."""
    with pytest.raises(ValueError, match="unknown option.*colour.*known: workload"):
        resolve({"colour": 1})
    with pytest.raises(ValueError, match="clients must be an integer, got 2.5"):
        resolve({"clients": 2.5})
    with pytest.raises(ValueError, match="horizon must be an integer, got 'x'"):
        resolve({"horizon": "x"})
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        resolve({"policy": "nope"})
    with pytest.raises(ValueError, match="arrivals"):
        resolve({"arrivals": "poisson:-1"})


def test_cell_id_is_stable_and_distinguishes_cells():
    """Tests that equal resolved options share an id (whatever the order or number type) and
    different ones do not."""
    a = resolve({"clients": 2, "seed": 1})
    assert cell_id(a) == cell_id(resolve({"seed": 1.0, "clients": 2}))
    assert cell_id(a) != cell_id(resolve({"clients": 2, "seed": 2}))
    assert cell_id(resolve({})) == cell_id(dict(DEFAULTS, arrivals="table"))


def test_failed_cell_is_a_row_with_its_error(tmp_path):
    """Tests that a cell that cannot run comes back as a failed row naming the problem."""
    row = run_cell({"workload": str(tmp_path / "missing.csv"), "policy": "hybrid"})
    assert row["status"] == "failed"
    assert "missing.csv" in row["error"] and row["policy"] == "hybrid"
    bad = run_cell({"clients": 0})
    assert bad["status"] == "failed" and "clients" in bad["error"]


def test_router_option_is_refused_by_a_simulator_without_it(small_csv):
    """Tests that a router is passed to run_policy only when set, and a simulator that has
    no router option gives a clear failed row rather than a silent default."""
    import inspect

    from hybridsched.studies.run import run_policy

    row = run_cell({"workload": str(small_csv), "router": "least-loaded"})
    if "router" in inspect.signature(run_policy).parameters:
        pytest.skip("this simulator has routers")
    assert row["status"] == "failed" and "router" in row["error"]
    assert run_cell({"workload": str(small_csv)})["status"] == "ok"


def test_slo_attainment_counts_requests_meeting_both():
    """Tests slo_attainment on a hand-made request table: both limits, inclusive, and a
    one-token request (no TPOT) judged on TTFT alone."""
    req = pd.DataFrame(
        {"ttft_s": [0.5, 1.0, 2.0, 0.1, 0.2], "tpot_s": [0.05, 0.1, 0.01, 0.2, np.nan]}
    )
    assert slo_attainment(req, 1.0, 0.1) == pytest.approx(3 / 5)
    assert slo_attainment(req, 10.0, 1.0) == 1.0
    with pytest.raises(ValueError, match="slo_ttft_s must be a positive"):
        slo_attainment(req, 0, 0.1)


def test_cell_slo_columns_match_request_table(small_csv):
    """Tests that a cell's slo_attainment is computed from its own request table and
    goodput is the attaining requests per second of makespan."""
    p = {"workload": str(small_csv), "arrivals": "poisson:3", "slo_ttft": 2.0, "slo_tpot": 0.05}
    c = simulate_cell(p)
    req = request_table(c.run.trace, c.instance)
    att = float(((req["ttft_s"] <= 2.0) & (req["tpot_s"].fillna(0) <= 0.05)).mean())
    assert c.slo["slo_attainment"] == pytest.approx(att)
    assert c.slo["goodput_rps"] == pytest.approx(att * 40 / c.run.metrics["makespan_s"])


def test_preloaded_table_honours_fit_context_drop():
    """Tests that a workload table sent to workers (``tables``) still drops the requests
    longer than the model's context when fit_context='drop' (and fails the cell otherwise)."""
    from hybridsched.workloads.requests import load_gsm8k

    df = load_gsm8k().iloc[:30].reset_index(drop=True)
    df.loc[3, "prompt_tokens"] = 5000  # LLaMA-65B's context is 2,048 tokens
    tables = {"w": df}
    ok = run_cell({"workload": "w", "fit_context": "drop"}, tables)
    assert ok["status"] == "ok" and ok["num_requests"] == 29
    bad = run_cell({"workload": "w"}, tables)
    assert bad["status"] == "failed" and "context" in bad["error"]


@pytest.mark.parametrize(
    "options",
    [
        {"workload": "gsm8k", "max_requests": 300},
        {
            "workload": "azure-conv",
            "window": "0:60",
            "fit_context": "drop",
            "model": "llama-3.1-8b",
        },
        {"workload": "azure-code", "window": "0:120", "max_requests": 50, "model": "llama-3.1-8b"},
    ],
)
def test_a_preloaded_table_is_shaped_as_the_named_workload(options):
    """Tests that a sweep's preloaded table (``workload_tables``) gives each cell the same
    requests as loading the workload by name: the window, ``max_requests`` and
    ``fit_context`` apply (they were once skipped, so a 300-request cell ran 1,319)."""
    from hybridsched.studies.cells import requests_of, resolve
    from hybridsched.studies.grid import workload_tables

    p = resolve(options)
    by_name = requests_of(p)
    preloaded = requests_of(p, workload_tables([p]))
    pd.testing.assert_frame_equal(by_name, preloaded)
    if p["max_requests"]:
        assert len(preloaded) == p["max_requests"]
    if p["window"]:
        assert preloaded["arrival_s"].max() < 60 * (2 if "code" in p["workload"] else 1)
