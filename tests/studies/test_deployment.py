"""My deployment (deployment.py): every policy on one setup, the winner, the highest load in the SLO."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from hybridsched.studies import deployment

# A small deployment: 20 s of the conversation trace on one client of Llama-2-70B.
CELL = {
    "model": "llama-2-70b",
    "hardware": "h100-sxm-splitwise2023",
    "clients": 1,
    "tp": 2,
    "max_batch": 16,
    "workload": "azure-conv",
    "window": "0:20",
    "fit_context": "drop",
    "rate_scale": 1.0,
    "slo_ttft": 2.0,
    "slo_tpot": 0.1,
    "time_limit": 2.0,
}


def _table(rows):
    return pd.DataFrame(rows).assign(status="ok", error=None)


def test_compare_gives_one_ok_row_per_policy_with_consistent_metrics():
    """Tests that compare runs every policy on the same requests, goodput <= throughput and
    the attainment is a share."""
    t = deployment.compare(CELL, ["vllm", "baseline"])
    assert list(t["policy"]) == ["vllm", "baseline"]
    assert (t["status"] == "ok").all()
    assert set(deployment.HEADLINE) <= set(t.columns)
    assert (t["goodput_rps"] <= t["throughput_rps"] + 1e-12).all()
    assert t["slo_attainment"].between(0, 1).all()


def test_compare_keeps_a_failing_policy_as_a_row_with_its_error():
    """Tests that a cluster too small for the model gives failed rows naming the error, and
    verdict then says no policy ran."""
    t = deployment.compare({**CELL, "tp": 1, "hardware": "a100-80gb-sxm"}, ["vllm"])
    assert list(t["status"]) == ["failed"] and t["error"].iloc[0]
    with pytest.raises(ValueError, match="no policy ran: vllm"):
        deployment.verdict(t)


@pytest.mark.parametrize(
    "cell, match",
    [
        ({**CELL, "policy": "vllm"}, "not 'policy'"),
        ({**CELL, "slo_tpot": None}, "slo_ttft and slo_tpot"),
        ({**CELL, "clientz": 2}, "unknown option.*clientz"),
    ],
)
def test_bad_deployment_cell_is_refused_naming_the_field(cell, match):
    """Tests that a cell with a policy, without an SLO or with an unknown option is refused."""
    with pytest.raises(ValueError, match=match):
        deployment.compare(cell, ["vllm"])


def test_verdict_picks_highest_goodput_then_shortest_makespan_and_compares_with_reference():
    """Tests the winner rule and the ratios against the reference on a hand-made table."""
    t = _table(
        [
            {"policy": "vllm", "goodput_rps": 2.0, "makespan_s": 100.0, "ttft_p99_s": 4.0},
            {"policy": "a", "goodput_rps": 3.0, "makespan_s": 90.0, "ttft_p99_s": 1.0},
            {"policy": "b", "goodput_rps": 3.0, "makespan_s": 80.0, "ttft_p99_s": 2.0},
        ]
    )
    v = deployment.verdict(t, "vllm")
    assert v["winner"] == "b"
    assert v["goodput_ratio"] == pytest.approx(1.5)
    assert v["makespan_reduction"] == pytest.approx(0.2)
    assert v["ttft_p99_ratio"] == pytest.approx(0.5)
    assert math.isnan(deployment.verdict(t, "missing")["goodput_ratio"])


def test_max_load_brackets_the_slo_threshold():
    """Tests that the load found holds (attainment >= target when rerun) and the upper end
    of the bracket misses, within the tolerance."""
    target = 0.9
    r = deployment.max_load(CELL, "vllm", target=target, rel_tol=0.2, max_doublings=5)
    assert r["error"] is None and not r["capped"]
    lo, hi = r["max_rate_scale"], r["rate_scale_upper"]
    assert 0 < lo < hi and hi - lo <= 0.2 * hi
    at = deployment.compare({**CELL, "rate_scale": lo}, ["vllm"]).iloc[0]
    above = deployment.compare({**CELL, "rate_scale": hi}, ["vllm"]).iloc[0]
    assert at["slo_attainment"] >= target > above["slo_attainment"]
    assert r["max_rate_rps"] == pytest.approx(lo * deployment.base_rate(CELL))


def test_max_load_refuses_a_bad_target():
    """Tests that a target share outside (0, 1] is refused naming it."""
    with pytest.raises(ValueError, match="target"):
        deployment.max_load(CELL, "vllm", target=1.5)


def test_reading_names_the_winner_its_margin_and_the_highest_load():
    """Tests the generated reading on hand-made tables."""
    t = _table(
        [
            {
                "policy": "vllm",
                "goodput_rps": 2.0,
                "makespan_s": 100.0,
                "ttft_p99_s": 4.0,
                "slo_attainment": 0.8,
            },
            {
                "policy": "b",
                "goodput_rps": 3.0,
                "makespan_s": 80.0,
                "ttft_p99_s": 2.0,
                "slo_attainment": 0.95,
            },
        ]
    )
    loads = pd.DataFrame(
        [
            {"policy": "vllm", "max_rate_scale": 0.5, "capped": False},
            {"policy": "b", "max_rate_scale": 1.25, "capped": False},
        ]
    )
    text = deployment.reading(t, deployment.verdict(t), loads, CELL, 0.9)
    assert "**b wins**" in text and "50.0% more goodput than vllm: 3.00 against 2.00" in text
    assert "makespan is 20.0% shorter" in text and "TTFT p99 50% lower than vllm's" in text
    assert "1 of 2 policies" in text and ": b." in text
    assert "rate_scale 1.25, reached by b; vllm up to 0.5" in text
    assert "b holds the SLO up to rate_scale 1.25, 150.0% more load than vllm" in text
    assert "margin under 5%" not in text


def test_verdict_table_puts_the_winner_beside_the_reference():
    """Tests the metric-by-metric table: values of both policies and the relative change."""
    t = _table(
        [
            {"policy": "vllm", "goodput_rps": 2.0, "makespan_s": 100.0, "ttft_p99_s": 4.0},
            {"policy": "b", "goodput_rps": 3.0, "makespan_s": 80.0, "ttft_p99_s": 2.0},
        ]
    )
    vt = deployment.verdict_table(t, deployment.verdict(t)).set_index("metric")
    assert list(vt.columns) == ["b (winner)", "vllm (reference)", "change"]
    assert vt.loc["goodput (req/s within the SLO)", "change"] == pytest.approx(0.5)
    assert vt.loc["makespan (s)", "b (winner)"] == 80.0
    assert vt.loc["TTFT p99 (s)", "change"] == pytest.approx(-0.5)


def test_reading_and_table_when_the_reference_wins_name_the_runner_up():
    """Tests that when vllm itself wins, the reading and the verdict table compare it with the
    best other policy instead of with itself."""
    t = _table(
        [
            {"policy": "vllm", "goodput_rps": 4.0, "makespan_s": 90.0, "ttft_p99_s": 1.0},
            {"policy": "b", "goodput_rps": 3.0, "makespan_s": 80.0, "ttft_p99_s": 2.0},
            {"policy": "c", "goodput_rps": 2.0, "makespan_s": 70.0, "ttft_p99_s": 3.0},
        ]
    ).assign(slo_attainment=0.95)
    v = deployment.verdict(t)
    vt = deployment.verdict_table(t, v)
    assert list(vt.columns) == ["metric", "vllm (winner, reference)", "b (runner-up)", "change"]
    assert vt.set_index("metric").loc["makespan (s)", "b (runner-up)"] == 80.0
    loads = pd.DataFrame([{"policy": "vllm", "max_rate_scale": 1.0, "capped": False}])
    text = deployment.reading(t, v, loads, CELL, 0.9)
    assert "**vllm wins**" in text and "the runner-up, b, serves 25.0% less goodput (3.00" in text
