"""Tests for the serving invariants of ``check_trace`` (docs/model.md section 11): valid
runs pass, and a mutated trace fails with the invariant it breaks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridsched.engine.loop import run
from hybridsched.instance import Client, Instance
from hybridsched.latency.linear import LinearLatency
from hybridsched.policies.chunked import ChunkedPrefill
from hybridsched.policies.prefill_first import PrefillFirst
from hybridsched.policies.static import StaticRouter
from hybridsched.trace.check import check_trace
from hybridsched.trace.errors import TraceError
from hybridsched.trace.io import check_run
from tests.strategies import TOKENS

LAT = LinearLatency(1.0, 0.01, 0.5, 0.1, 0.001)


def instance(prompts, outputs, M, B=2, arrival=None, predicted=None, budget=2048) -> Instance:
    cols = {"prompt_tokens": prompts, "output_tokens": outputs}
    if arrival is not None:
        cols["arrival_s"] = arrival
    if predicted is not None:
        cols["predicted_output_tokens"] = predicted
    return Instance(pd.DataFrame(cols), (Client(B, M, LAT),), prefill_budget_tokens=budget)


def on_demand_run(inst: Instance, rule=None):
    a = np.zeros(inst.num_requests, dtype=np.int64)
    res = run(inst, StaticRouter(assignment=a), rule or PrefillFirst(), TOKENS)
    check_run(res, inst)
    return res


@pytest.fixture
def evicted():
    """Two requests (s=5, o=10) on M=16: request 1 is evicted at iteration 4 with g=4 and
    re-prefilled at iteration 10 on 9 tokens (test_admission.py computes it by hand)."""
    inst = instance([5, 5], [10, 10], M=16)
    res = on_demand_run(inst)
    assert res.evictions["iteration"].tolist() == [4]
    return inst, res.trace.copy(), res.evictions.copy()


def check(trace, inst, ev, admission="on-demand"):
    check_trace(trace, inst, evictions=ev, admission=admission)


def reprice(trace: pd.DataFrame, inst: Instance) -> pd.DataFrame:
    """Recompute durations and times from the (one-client, prefill/decode) rows'
    bookkeeping columns, so a mutation stays consistent everywhere else."""
    tr = trace.copy()
    lat = inst.clients[0].latency
    dur = np.where(
        tr["kind"] == "prefill",
        lat.prefill_time(tr["prefill_tokens"].to_numpy(), 0.0),
        lat.decode_time(tr["num_requests"].to_numpy(), tr["context_tokens"].to_numpy()),
    )
    start = tr["start_s"].iloc[0] + np.concatenate([[0.0], np.cumsum(dur)[:-1]])
    return tr.assign(start_s=start, end_s=start + dur, duration_s=dur)


def test_the_unmutated_run_passes(evicted):
    inst, tr, ev = evicted
    check(tr, inst, ev)


def test_dropping_a_re_prefill_fails(evicted):
    """Tests that removing the recompute of the evicted request fails."""
    inst, tr, ev = evicted
    tr = tr.drop(index=10).reset_index(drop=True)
    tr["iteration"] = np.arange(len(tr))
    with pytest.raises(TraceError, match="prefilled exactly once \\(and once more per eviction\\)"):
        check(tr, inst, ev)


def test_a_missing_eviction_record_fails(evicted):
    """Tests that a second prefill without an eviction record fails."""
    inst, tr, ev = evicted
    with pytest.raises(TraceError, match="prefilled exactly once"):
        check(tr, inst, ev.iloc[0:0])


def test_changing_the_recompute_count_fails(evicted):
    """Tests that an eviction record whose generated tokens disagree with the recompute fails."""
    inst, tr, ev = evicted
    ev.loc[0, "generated_tokens"] = 2
    with pytest.raises(TraceError):
        check(tr, inst, ev)


def test_a_consistent_wrong_recompute_count_fails(evicted):
    """Tests that a recompute of s + 2 tokens after 3 emitted tokens fails even when the
    eviction record, the prefill row and the durations all say 2: the evicted request
    had emitted 3 tokens (a prefill and two decodes) before iteration 3."""
    inst, tr, ev = evicted
    ev.loc[0, "generated_tokens"] = 2
    tr.loc[10, ["prefill_tokens", "kv_used_tokens", "kv_reserved_tokens"]] = 7
    tr = reprice(tr, inst)
    with pytest.raises(TraceError, match="evicted requests keep their tokens"):
        check(tr, inst, ev)


def test_an_eviction_of_a_request_not_running_fails(evicted):
    """Tests that an eviction recorded after the request had already left fails."""
    inst, tr, ev = evicted
    ev.loc[0, "request_id"] = 0  # request 0 is running at iteration 3 but never evicted
    with pytest.raises(TraceError):
        check(tr, inst, ev)


def test_an_evicted_request_that_keeps_decoding_fails(evicted):
    """Tests that a request listed in a decode row after its eviction, before its
    recompute, fails (the eviction frees its slot and KV)."""
    inst, tr, ev = evicted
    later = int(ev.loc[0, "iteration"]) + 1  # claim the eviction one iteration later
    ev.loc[0, "iteration"] = later
    ev.loc[0, "time_s"] = tr.loc[later, "start_s"]
    with pytest.raises(TraceError):
        check(tr, inst, ev)


def test_an_eviction_under_reservation_admission_fails(evicted):
    inst, tr, ev = evicted
    with pytest.raises(TraceError, match="no preemption under reservation admission"):
        check(tr, inst, ev, admission="reservation")


def test_a_row_before_its_arrival_fails():
    """Tests that a request's prefill moved before its arrival fails."""
    inst = instance([5, 6], [4, 3], M=100, arrival=[2.0, 2.0])
    res = on_demand_run(inst)
    tr = res.trace.copy()
    assert tr["start_s"].min() == 2.0
    tr[["start_s", "end_s"]] -= 0.5
    with pytest.raises(TraceError, match="no iteration before its inputs exist"):
        check(tr, inst, res.evictions)


def test_kv_used_raised_above_M_on_a_prefill_row_fails(evicted):
    inst, tr, ev = evicted
    tr.loc[10, "kv_used_tokens"] = 17
    with pytest.raises(TraceError, match="KV used never exceeds M"):
        check(tr, inst, ev)


def test_a_prefill_row_over_M_is_caught_from_the_requests():
    """Tests the prefill-row overflow the column can hide: request 0 (s=10, o=20) runs
    when request 1 (s=30, o=1) is prefilled, so that row holds request 0's context
    (10 + its tokens so far) plus 30 prompt tokens, over M = 35; the trace's own
    kv_used_tokens is lowered to 30, so only a recount from the request ids catches it."""
    inst = instance([10, 30], [20, 1], M=200, arrival=[0.0, 1.5])
    res = on_demand_run(inst)
    tr = res.trace.copy()
    k = int(np.flatnonzero(tr["request_ids"].map(lambda ids: ids == (1,)).to_numpy())[0])
    assert tr.loc[k, "kv_used_tokens"] > 35
    small = instance([10, 30], [20, 1], M=35, arrival=[0.0, 1.5])
    tr.loc[k, ["kv_used_tokens", "kv_reserved_tokens"]] = 30
    with pytest.raises(TraceError, match="KV used never exceeds M"):
        check(tr, small, res.evictions)


def test_kv_used_column_must_match_the_requests(evicted):
    """Tests that the kv_used_tokens column is recounted from who holds KV."""
    inst, tr, ev = evicted
    tr.loc[5, "kv_used_tokens"] -= 1
    with pytest.raises(TraceError, match="trace column kv_used_tokens is consistent"):
        check(tr, inst, ev)


def test_a_finished_request_finishes_once(evicted):
    """Tests that a request listed in one more decode row than o_i allows fails."""
    inst, tr, ev = evicted
    last = len(tr) - 1  # request 1's last decode: request 0 has finished before it
    assert tr.at[last, "request_ids"] == (1,)
    tr.at[last, "request_ids"] = (1, 0)
    tr.loc[last, ["num_requests", "num_running"]] = 2
    with pytest.raises(TraceError):
        check(tr, inst, ev)


FAST = LinearLatency(0.002, 1e-5, 0.001, 1e-4, 1e-7)  # iterations of about a millisecond


@pytest.mark.parametrize("lat", [LAT, FAST], ids=["slow", "fast"])
@pytest.mark.parametrize("rule", [PrefillFirst(), ChunkedPrefill(token_budget=8)])
@pytest.mark.parametrize("at", [1e6, 1e9])
def test_a_schedule_far_from_zero_passes(rule, lat, at):
    """Tests that a valid run with every arrival after ``at`` seconds passes, and so does
    the same trace shifted by ``at`` once more: the time tolerances follow the clock (a
    millisecond iteration at 1e9 s is a few hundred ulps of the clock)."""
    base = [0.0, 0.37, 0.9, 1.3, 4.1]
    req = pd.DataFrame(
        {
            "prompt_tokens": [6, 7, 8, 9, 5],
            "output_tokens": [30, 25, 20, 15, 9],
            "arrival_s": [at + a * lat.a_p for a in base],
        }
    )
    inst = Instance(req, (Client(3, 48, lat),), prefill_budget_tokens=8)
    res = on_demand_run(inst, rule)
    assert len(res.evictions) > 0
    assert res.trace["start_s"].min() >= at
    shifted = res.trace.copy()
    shifted[["start_s", "end_s"]] += at
    moved = inst.replace(requests=inst.requests.assign(arrival_s=inst.arrival + at))
    check(shifted, moved, res.evictions.assign(time_s=res.evictions["time_s"] + at))


def random_evicting_run(seed: int, rule):
    """A seeded one-client run under on-demand admission with predictions far too short."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 12))
    o = rng.integers(5, 40, n)
    req = pd.DataFrame(
        {
            "prompt_tokens": rng.integers(2, 20, n),
            "output_tokens": o,
            "predicted_output_tokens": np.maximum(1, o // 4),
            "arrival_s": np.round(rng.uniform(0, 3, n), 2),
        }
    )
    inst = Instance(req, (Client(int(rng.integers(2, 6)), 70, LAT),), prefill_budget_tokens=12)
    return inst, on_demand_run(inst, rule)


MUTATIONS = ["generated+1", "generated-1", "drop-eviction", "eviction-later", "prefill-kv"]


@pytest.mark.parametrize("rule", [PrefillFirst(), ChunkedPrefill(token_budget=12)])
@pytest.mark.parametrize("mutation", MUTATIONS)
def test_random_runs_fail_every_mutation(rule, mutation):
    """Tests, on seeded random runs with evictions, that each mutation of an eviction record
    or of a prefill row's KV fails check_trace (and the unmutated run passes)."""
    tried = 0
    for seed in range(8):
        inst, res = random_evicting_run(seed, rule)
        tr, ev = res.trace.copy(), res.evictions.copy()
        if ev.empty:
            continue
        k = int(np.random.default_rng(seed).integers(len(ev)))
        if mutation == "generated+1":
            ev.loc[k, "generated_tokens"] += 1
        elif mutation == "generated-1":
            if ev.loc[k, "generated_tokens"] <= 1:
                continue
            ev.loc[k, "generated_tokens"] -= 1
        elif mutation == "drop-eviction":
            ev = ev.drop(index=k)
        elif mutation == "eviction-later":
            it = ev.loc[k, "iteration"] + 1
            if it not in set(tr["iteration"]):
                continue
            ev.loc[k, "iteration"] = it
            ev.loc[k, "time_s"] = tr.loc[tr["iteration"] == it, "start_s"].iloc[0]
        else:
            rows = np.flatnonzero(tr["prefill_tokens"].to_numpy() > 0)
            r = rows[seed % len(rows)]
            tr.loc[r, "kv_used_tokens"] = 71
        tried += 1
        with pytest.raises(TraceError):
            check(tr, inst, ev)
    assert tried >= 3
