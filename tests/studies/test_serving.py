"""The online-serving study's helpers: load sweeps, saturation read-off, TTFT CDFs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridsched.studies.serving import (
    load_sweep,
    offered_rate,
    saturation,
    ttft_by_output,
    ttft_cdf,
)

BASE = {
    "workload": "azure-conv",
    "window": "0:30",
    "fit_context": "drop",
    "model": "llama-2-70b",
    "hardware": "h100-sxm-splitwise2023",
    "tp": 2,
    "clients": 2,
    "slo_ttft": 2.0,
    "slo_tpot": 0.1,
}


def test_offered_rate_scales_with_rate_scale():
    """Tests that the offered rate is requests over window length / rate_scale."""
    assert offered_rate(60, {"window": "0:30", "rate_scale": 2.0}) == pytest.approx(4.0)
    assert offered_rate(60, {"window": "10:40"}) == pytest.approx(2.0)


def test_offered_rate_needs_a_bounded_window():
    """Tests that an unbounded window is refused with the field named."""
    with pytest.raises(ValueError, match="window"):
        offered_rate(10, {"window": "0:"})
    with pytest.raises(ValueError, match="window"):
        load_sweep({**BASE, "window": None}, {"c": {}}, ["vllm"], [1.0])


def test_load_sweep_rows_and_load_monotone_ttft():
    """Tests one row per cluster x policy x load, the offered rate, and that more load never
    lowers the TTFT p99 of a FCFS policy on the same requests."""
    t = load_sweep(BASE, {"a": {}, "b": {"clients": 1}}, ["vllm"], {"a": [1.0, 8.0], "b": [1.0]})
    assert list(t["cluster"]) == ["a", "a", "b"]
    assert (t["status"] == "ok").all()
    a = t[t["cluster"] == "a"]
    assert a["offered_rps"].iloc[1] == pytest.approx(8 * a["offered_rps"].iloc[0])
    assert a["num_requests"].nunique() == 1
    assert a["ttft_p99_s"].iloc[1] >= a["ttft_p99_s"].iloc[0]


def test_saturation_reads_the_highest_rate_meeting_the_target():
    """Tests the read-off on a hand-made table: highest offered rate at or above the target,
    NaN when none meets it, and the peak throughput."""
    t = pd.DataFrame(
        {
            "cluster": ["c"] * 3 + ["d"] * 2,
            "policy": ["p"] * 5,
            "status": ["ok"] * 5,
            "offered_rps": [1.0, 2.0, 4.0, 1.0, 2.0],
            "slo_attainment": [1.0, 0.95, 0.5, 0.3, 0.1],
            "throughput_rps": [1.0, 1.9, 2.5, 0.9, 1.2],
        }
    )
    s = saturation(t).set_index("cluster")
    assert s.loc["c", "sustained_rps"] == 2.0
    assert np.isnan(s.loc["d", "sustained_rps"])
    assert s.loc["c", "peak_throughput_rps"] == 2.5
    with pytest.raises(ValueError, match="target"):
        saturation(t, target=0.0)


def test_ttft_cdf_is_a_distribution():
    """Tests that each curve's shares rise to 1 over sorted TTFTs, one point per request."""
    cdf = ttft_cdf({"vllm": {**BASE, "policy": "vllm"}})
    assert cdf["share"].iloc[-1] == pytest.approx(1.0)
    assert cdf["ttft_s"].is_monotonic_increasing
    assert (cdf["ttft_s"] >= 0).all()
    assert cdf["output_tokens"].min() >= 1
    assert cdf["request_id"].is_unique


def test_ttft_by_output_medians_per_quartile():
    """Tests the per-quartile medians on a hand-made CDF: short requests waited, long did not."""
    cdf = pd.DataFrame(
        {
            "label": ["p"] * 8,
            "output_tokens": [7, 5, 1, 3, 8, 2, 6, 4],  # sorted by TTFT, as ttft_cdf gives
            "ttft_s": [0.1, 1.0, 10.0, 5.0, 0.3, 12.0, 3.0, 5.0],
        }
    )
    t = ttft_by_output(cdf)
    assert list(t.loc["p"]) == pytest.approx([11.0, 5.0, 2.0, 0.2])
    assert t.columns[0].startswith("Q1 (output <=") and t.columns[-1] == "Q4 (output <= 8 tok)"
