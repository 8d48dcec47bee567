"""Tests for hybridsched.metrics: hand arithmetic on a tiny trace; metrics read only the trace."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridsched.instance import Client, Instance
from hybridsched.latency.linear import LinearLatency
from hybridsched.policies.lagrangian import Lagrangian
from hybridsched.policies.prefill_first import PrefillFirst
from hybridsched.policies.static import round_robin, simulate
from hybridsched.trace.metrics import metrics, request_table


@pytest.fixture
def hand(two_requests) -> dict:
    """The baseline's schedule of two_requests, by hand from the linear coefficients.

    Requests (s=10, o=3) and (s=20, o=2), B=2: one prefill of both, a decode of both at
    contexts 11 and 21 (request 1 then leaves), a decode of request 0 at context 12.
    """
    lat = two_requests.clients[0].latency
    t_pre = lat.a_p + lat.b_p * (10 + 20)
    t_d1 = lat.a_d + lat.b_d * 2 + lat.c_d * (11 + 21)
    t_d2 = lat.a_d + lat.b_d * 1 + lat.c_d * 12
    T = t_pre + t_d1 + t_d2
    return {"t_pre": t_pre, "t_d1": t_d1, "t_d2": t_d2, "T": T, "B": 2, "M": 1000}


@pytest.fixture
def result(two_requests):
    trace = simulate(two_requests, [0, 0], PrefillFirst(), check=True)
    return trace, metrics(trace, two_requests)


def test_hand_values_are_the_documented_ones(hand):
    """Tests that the hand schedule itself matches the round numbers of the fixture's docstring
    (prefill 1.3 s, decodes 0.732 s and 0.612 s), so the arithmetic below is anchored."""
    assert (hand["t_pre"], hand["t_d1"], hand["t_d2"]) == pytest.approx(
        (1.3, 0.732, 0.612), rel=1e-12
    )


def test_makespan_and_counts(result, hand):
    """Tests that makespan T = prefill + both decodes and that there are 1 prefill and 2 decodes."""
    _, m = result
    assert m["makespan_s"] == pytest.approx(hand["T"], rel=1e-12)
    assert m["num_prefill_iterations"] == 1
    assert m["num_decode_iterations"] == 2
    assert m["mean_prefill_size"] == 2.0
    assert m["num_requests"] == 2 and m["num_output_tokens"] == 5


def test_utilization(result, hand):
    """Tests that U = sum_decode (|D|/B) t / (|J| T) = (2/2 t_d1 + 1/2 t_d2) / T."""
    _, m = result
    U = (2 / hand["B"] * hand["t_d1"] + 1 / hand["B"] * hand["t_d2"]) / (1 * hand["T"])
    assert m["utilization"] == pytest.approx(U, rel=1e-12)
    assert m["utilization"] == pytest.approx(1.038 / 2.644, rel=1e-12)


def test_batch_busy_prefill_share_kv(result, hand):
    """Tests that mean_batch (time-weighted |D| over decodes), busy fraction (1: no idle
    time), prefill share and KV occupancy equal their hand values."""
    _, m = result
    dec = hand["t_d1"] + hand["t_d2"]
    assert m["mean_batch"] == pytest.approx((2 * hand["t_d1"] + 1 * hand["t_d2"]) / dec, rel=1e-12)
    assert m["busy_fraction"] == pytest.approx(1.0, rel=1e-12)
    assert m["prefill_share"] == pytest.approx(hand["t_pre"] / hand["T"], rel=1e-12)
    kv = (32 / hand["M"] * hand["t_d1"] + 12 / hand["M"] * hand["t_d2"]) / dec
    assert m["kv_occupancy"] == pytest.approx(kv, rel=1e-12)


def test_throughput_and_balance(result, hand):
    """Tests that token throughput is 5 tokens / T, request throughput 2 / T, and that one
    client has zero imbalance."""
    _, m = result
    assert m["token_throughput"] == pytest.approx(5 / hand["T"], rel=1e-12)
    assert m["request_throughput"] == pytest.approx(2 / hand["T"], rel=1e-12)
    assert (
        m["client_makespan_min_s"]
        == m["client_makespan_max_s"]
        == pytest.approx(hand["T"], rel=1e-12)
    )
    assert m["imbalance"] == 0.0


def test_latency_percentiles(result, hand):
    """Tests that TTFT (both first tokens at the prefill's end), e2e (2.032 s and 2.644 s) and
    TPOT percentiles equal hand values, linearly interpolated between the two requests."""
    _, m = result
    t1 = hand["t_pre"]
    e2e = sorted([t1 + hand["t_d1"], hand["T"]])
    tpot = sorted([(hand["T"] - t1) / 2, (t1 + hand["t_d1"] - t1) / 1])
    for q in (50, 90, 99):
        assert m[f"ttft_p{q}_s"] == pytest.approx(t1, rel=1e-12)
        assert m[f"e2e_p{q}_s"] == pytest.approx(e2e[0] + q / 100 * (e2e[1] - e2e[0]), rel=1e-12)
        assert m[f"tpot_p{q}_s"] == pytest.approx(
            tpot[0] + q / 100 * (tpot[1] - tpot[0]), rel=1e-12
        )


def test_request_table(result, two_requests, hand):
    """Tests that the per-request table (client, first/last token times, TPOT) matches hand values."""
    trace, _ = result
    rt = request_table(trace, two_requests).set_index("request_id")
    assert rt.loc[0, "client"] == 0 and rt.loc[1, "client"] == 0
    assert rt.loc[0, "last_token_s"] == pytest.approx(hand["T"], rel=1e-12)
    assert rt.loc[1, "last_token_s"] == pytest.approx(hand["t_pre"] + hand["t_d1"], rel=1e-12)
    assert rt.loc[0, "tpot_s"] == pytest.approx((hand["T"] - hand["t_pre"]) / 2, rel=1e-12)
    assert rt.loc[1, "tpot_s"] == pytest.approx(hand["t_d1"], rel=1e-12)


def test_request_table_reads_a_kept_flat_trace_and_refuses_another(result, two_requests):
    """Tests that the table read from a kept FlatTrace is the table read afresh, and that
    a FlatTrace read from another frame (even an equal copy) is refused."""
    from hybridsched.trace.flat import FlatTrace

    trace, _ = result
    ids = two_requests.requests["request_id"].to_numpy()
    pd.testing.assert_frame_equal(
        request_table(trace, two_requests, flat=FlatTrace(trace, ids)),
        request_table(trace, two_requests),
    )
    with pytest.raises(ValueError, match="not read from this trace"):
        request_table(trace, two_requests, flat=FlatTrace(trace.copy(), ids))


def test_arrivals_shift_latencies(linear_client):
    """Tests that TTFT and e2e are measured from each request's arrival and that idle time
    before an arrival lowers the busy fraction: one request (s=10, o=2) arriving at 4 s."""
    req = pd.DataFrame({"prompt_tokens": [10], "output_tokens": [2], "arrival_s": [4.0]})
    inst = Instance(req, (linear_client,))
    m = metrics(simulate(inst, [0], PrefillFirst(), check=True), inst)
    t_pre, t_dec = 1.0 + 0.01 * 10, 0.5 + 0.1 + 0.001 * 11
    assert m["makespan_s"] == pytest.approx(4.0 + t_pre + t_dec, rel=1e-12)
    assert m["ttft_p50_s"] == pytest.approx(t_pre, rel=1e-12)
    assert m["e2e_p99_s"] == pytest.approx(t_pre + t_dec, rel=1e-12)
    assert m["busy_fraction"] == pytest.approx((t_pre + t_dec) / (4.0 + t_pre + t_dec), rel=1e-12)
    assert m["utilization"] == pytest.approx((1 / 2) * t_dec / (4.0 + t_pre + t_dec), rel=1e-12)


def test_idle_client_counts_against_utilization(linear_client, two_requests):
    """Tests that a second client with no work halves U and busy fraction (|J| = 2) and gives
    imbalance 1."""
    inst = two_requests.replace(clients=(linear_client, linear_client))
    tr = simulate(inst, [0, 0], PrefillFirst(), check=True)
    one = metrics(simulate(two_requests, [0, 0], PrefillFirst()), two_requests)
    two = metrics(tr, inst)
    assert two["utilization"] == pytest.approx(one["utilization"] / 2, rel=1e-12)
    assert two["busy_fraction"] == pytest.approx(0.5, rel=1e-12)
    assert two["imbalance"] == 1.0
    assert two["client_makespan_min_s"] == 0.0


def test_all_output_one_has_no_tpot(linear_client):
    """Tests that when every request has o_i = 1 there is no decode: U = 0, mean batch 0,
    prefill share 1, and TPOT is NaN."""
    inst = Instance(
        pd.DataFrame({"prompt_tokens": [5, 6], "output_tokens": [1, 1]}), (linear_client,)
    )
    m = metrics(simulate(inst, [0, 0], PrefillFirst()), inst)
    assert m["utilization"] == 0.0 and m["mean_batch"] == 0.0
    assert m["prefill_share"] == pytest.approx(1.0)
    assert math.isnan(m["tpot_p50_s"])


# --------------------------------------------------------------------------------------
# metrics come from the trace only
# --------------------------------------------------------------------------------------


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if a[k] is None:  # an SLO target that was not given
            assert b[k] is None, k
        elif isinstance(a[k], float) and math.isnan(a[k]):
            assert math.isnan(b[k]), k
        else:
            assert b[k] == pytest.approx(a[k], rel=1e-12, abs=1e-15), k


@pytest.mark.parametrize("rule", [PrefillFirst(), Lagrangian()], ids=lambda r: r.name)
def test_permuted_rows_same_metrics(gsm8k_small, rule):
    """Tests that shuffling the trace's rows (and resetting its index) leaves every metric unchanged."""
    tr = simulate(gsm8k_small, round_robin(gsm8k_small), rule)
    base = metrics(tr, gsm8k_small)
    for seed in (0, 1):
        _assert_same(
            base,
            metrics(tr.sample(frac=1.0, random_state=seed).reset_index(drop=True), gsm8k_small),
        )


def test_metrics_recompute_from_trace_columns(gsm8k_small):
    """Tests that on a GSM8K trace U, mean batch, busy fraction, prefill share and makespan
    equal their definitions evaluated directly on the trace's columns."""
    tr = simulate(gsm8k_small, round_robin(gsm8k_small), Lagrangian())
    m = metrics(tr, gsm8k_small)
    d = tr[tr["kind"] == "decode"]
    T = tr.groupby("client")["end_s"].max().max()
    J = gsm8k_small.num_clients
    assert m["makespan_s"] == pytest.approx(T, rel=1e-12)
    assert m["utilization"] == pytest.approx(
        (d["num_requests"] / 32 * d["duration_s"]).sum() / (J * T), rel=1e-12
    )
    assert m["mean_batch"] == pytest.approx(
        (d["num_requests"] * d["duration_s"]).sum() / d["duration_s"].sum(), rel=1e-12
    )
    assert m["busy_fraction"] == pytest.approx(tr["duration_s"].sum() / (J * T), rel=1e-12)
    assert m["prefill_share"] == pytest.approx(
        1 - d["duration_s"].sum() / tr["duration_s"].sum(), rel=1e-12
    )
    assert m["num_prefill_iterations"] + m["num_decode_iterations"] == len(tr)


def test_metrics_follow_the_trace_not_the_latency_model(two_requests, hand):
    """Tests that metrics use the trace's times: a trace with every time doubled gives twice
    the makespan and the same U, while swapping the instance's latency model changes nothing."""
    tr = simulate(two_requests, [0, 0], PrefillFirst())
    slow = tr.assign(
        start_s=2 * tr["start_s"], end_s=2 * tr["end_s"], duration_s=2 * tr["duration_s"]
    )
    m, m2 = metrics(tr, two_requests), metrics(slow, two_requests)
    assert m2["makespan_s"] == pytest.approx(2 * hand["T"], rel=1e-12)
    assert m2["utilization"] == pytest.approx(m["utilization"], rel=1e-12)
    other = two_requests.replace(clients=(Client(2, 1000, LinearLatency(9.0, 0.5, 9.0, 0.5, 0.5)),))
    _assert_same(m, metrics(tr, other))


@st.composite
def small_instances(draw):
    n = draw(st.integers(1, 15))
    req = pd.DataFrame(
        {
            "prompt_tokens": draw(st.lists(st.integers(1, 50), min_size=n, max_size=n)),
            "output_tokens": draw(st.lists(st.integers(1, 30), min_size=n, max_size=n)),
        }
    )
    clients = tuple(
        Client(draw(st.integers(1, 6)), 10_000, LinearLatency(1.0, 0.01, 0.5, 0.1, 0.001))
        for _ in range(draw(st.integers(1, 3)))
    )
    return Instance(req, clients)


@given(inst=small_instances(), rule=st.sampled_from([PrefillFirst(), Lagrangian()]))
def test_metric_ranges(inst, rule):
    """Tests that on random schedules 0 <= U <= busy_fraction * (1 - prefill_share) <= 1
    (U counts only decode time, weighted by |D|/B <= 1), mean batch <= max B, TTFT <= e2e,
    and the output-token count equals sum o_i."""
    tr = simulate(inst, round_robin(inst), rule)
    m = metrics(tr, inst)
    eps = 1e-12
    assert 0 <= m["utilization"] <= m["busy_fraction"] * (1 - m["prefill_share"]) + eps
    assert m["busy_fraction"] <= 1 + eps
    assert m["mean_batch"] <= max(c.max_batch for c in inst.clients) + eps
    assert m["ttft_p50_s"] <= m["e2e_p50_s"] + eps
    assert m["num_output_tokens"] == int(inst.output.sum())
    assert m["num_prefill_iterations"] == int((tr["kind"] == "prefill").sum())
    rt = request_table(tr, inst)
    assert (rt["ttft_s"] <= rt["e2e_s"] + eps).all()
    assert np.isfinite(rt["e2e_s"]).all()
