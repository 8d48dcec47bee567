"""Tests for the serving metrics' definitions (docs/model.md section 11) on hand-made tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hybridsched.trace.metrics import serving_metrics, slo_attainment


@pytest.fixture
def table() -> pd.DataFrame:
    """Five requests: TTFT 0.1, 0.5, 0.2, 2.0, 0.3 s; TPOT 0.01, 0.01, 0.05, 0.01 s and none
    (o_i = 1); queueing 0, 0.4, 0.1, 1.5, 0.2 s; one preemption recomputing 30 tokens."""
    return pd.DataFrame(
        {
            "request_id": [0, 1, 2, 3, 4],
            "ttft_s": [0.1, 0.5, 0.2, 2.0, 0.3],
            "tpot_s": [0.01, 0.01, 0.05, 0.01, np.nan],
            "queue_s": [0.0, 0.4, 0.1, 1.5, 0.2],
            "preemptions": [0, 1, 0, 0, 0],
            "recomputed_tokens": [0, 30, 0, 0, 0],
        }
    )


def test_slo_attainment_counts_both_targets(table):
    """Tests that a request meets the SLO only with TTFT <= 0.3 s and TPOT <= 0.02 s
    (bounds inclusive; no TPOT meets the TPOT target): requests 0 and 4, 2 of 5."""
    assert slo_attainment(table, 0.3, 0.02) == pytest.approx(2 / 5)
    assert slo_attainment(table, 0.3, None) == pytest.approx(3 / 5)  # 0, 2, 4
    assert slo_attainment(table, None, 0.02) == pytest.approx(4 / 5)  # all but 2
    assert slo_attainment(table, 10.0, 1.0) == 1.0
    with pytest.raises(ValueError, match="slo_ttft_s must be a positive"):
        slo_attainment(table, 0.0, 0.0)  # an SLO of 0 s is no SLO: refused by name
    assert math.isnan(slo_attainment(table, None, None))


def test_goodput_is_requests_meeting_both_per_second_of_makespan(table):
    m = serving_metrics(table, makespan_s=4.0, slo_ttft_s=0.3, slo_tpot_s=0.02)
    assert m["goodput_rps"] == pytest.approx(2 / 4.0)
    assert m["slo_attainment"] == pytest.approx(0.4)
    assert m["throughput_rps"] == pytest.approx(5 / 4.0)
    assert m["num_preemptions"] == 1 and m["recomputed_tokens"] == 30
    q = np.array([0.0, 0.4, 0.1, 1.5, 0.2])
    assert m["queue_p50_s"] == pytest.approx(0.2)
    assert m["queue_p90_s"] == pytest.approx(np.percentile(q, 90))
    assert m["queue_mean_s"] == pytest.approx(q.mean())
    none = serving_metrics(table, makespan_s=4.0)
    assert math.isnan(none["slo_attainment"]) and math.isnan(none["goodput_rps"])
