"""Validation against real runs: the replay uses the run's requests and settings, the
comparison's arithmetic is right, and overheads are never scored on the run they were
fitted on (leave one run out)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hybridsched.cli import main
from hybridsched.studies import validation as V
from hybridsched.workloads.real_runs import load_run

RUN = "RTXPRO6000/Llama-3.1-8B"


@pytest.fixture(scope="module")
def run():
    return load_run(RUN)


def test_replay_serves_every_request_with_the_runs_settings(run):
    """Tests that the replay keeps the run's order, lengths and arrivals, runs one replica per
    vLLM engine with its max_num_seqs and token budget, and that a simulated request can
    never finish before its first token."""
    inst = V.instance_of(run, "llama-3.1-8b", "rtx-pro-6000-vllm", V.Overheads())
    assert inst.num_clients == 1 and inst.clients[0].max_batch == 128
    assert inst.prefill_budget_tokens == 2048
    sim = V.replay(run, "llama-3.1-8b", "rtx-pro-6000-vllm")
    assert sim["request_id"].tolist() == run.requests["request_id"].tolist()
    assert (sim["ttft_s"] <= sim["e2e_s"]).all() and (sim["ttft_s"] > 0).all()


def test_comparison_arithmetic():
    measured = pd.DataFrame(
        {"request_id": [0, 1], "arrival_s": [0.0, 1.0], "output_tokens": [3, 1],
         "ttft_s": [1.0, 2.0], "tpot_s": [0.5, np.nan], "e2e_s": [2.0, 2.0]}
    )  # fmt: skip
    sim = pd.DataFrame({"ttft_s": [1.5, 1.0], "tpot_s": [0.5, np.nan], "e2e_s": [2.5, 1.0]})
    per = V.compare(measured, sim)
    assert per["ttft_rel_error"].tolist() == [0.5, -0.5]
    summary, errors = V.summarize(per)
    assert errors["ttft_mape"] == pytest.approx(0.5)
    assert errors["ttft_mean_rel_error"] == pytest.approx((1.25 - 1.5) / 1.5)
    assert errors["tpot_mean_rel_error"] == 0.0  # the one-token request has no TPOT
    assert set(summary["stat"]) == set(V.STATS)


def test_in_process_runs_have_no_api_time(run):
    """Tests that a run driven in-process gets no per-request overhead, whatever the
    profile's (the vLLM profiles carry an HTTP server's)."""
    a = V.instance_of(run, "llama-3.1-8b", "rtx-pro-6000-vllm", V.Overheads())
    assert a.clients[0].request_overhead_s == 0.0
    b = V.instance_of(run, "llama-3.1-8b", "rtx-pro-6000-vllm", V.Overheads(None, 0.03))
    assert b.clients[0].request_overhead_s == 0.03


def scaled(run, name: str, k: float):
    """``run`` as if every measured time were ``k`` times as long."""
    m = run.measured.assign(**{c: run.measured[c] * k for c in ("ttft_s", "tpot_s", "e2e_s")})
    return type(run)(name, run.requests, m, run.settings, run.source)


def test_leave_one_run_out_never_scores_a_run_with_its_own_fit(run):
    """Tests the hold-out: of two runs that want different overheads (one measured 0.8x, one
    1.3x as long), each is scored with the overhead the other one wants."""
    grid = (0.0, 0.006)
    fast, slow = scaled(run, "fast", 0.8), scaled(run, "slow", 1.3)

    def alone(r):
        return min(grid, key=lambda x: V.objective(V.validate(r, overheads=V.Overheads(x)).errors))

    assert alone(fast) == 0.0 and alone(slow) == 0.006
    table, held = V.leave_one_run_out([fast, slow], iteration_grid=grid)
    fits = dict(zip(table["run"], table["fitted_iteration_overhead_s"], strict=True))
    assert fits == {"fast": 0.006, "slow": 0.0}
    assert [v.overheads.iteration_s for v in held] == [0.006, 0.0]


def test_validate_command_writes_its_files(tmp_path):
    out = tmp_path / "v"
    code = main(["validate", "--run", RUN, "--out", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {
        "requests.csv",
        "summary.csv",
        "metrics.json",
        "cdf.png",
    }
    m = json.loads((out / "metrics.json").read_text())
    for key in ("ttft_mean_rel_error", "tpot_p99_rel_error", "e2e_mape", "settings", "versions"):
        assert key in m
    per = pd.read_csv(out / "requests.csv")
    assert len(per) == 300 and {"ttft_real_s", "ttft_sim_s", "e2e_rel_error"} <= set(per.columns)
    assert (out / "cdf.png").read_bytes()[:4] == b"\x89PNG"
