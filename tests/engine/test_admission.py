"""Tests for on-demand KV admission and recompute preemption (docs/model.md section 11).

Hand-computed cases on one linear client: prefill ``1 + 0.01 s`` seconds, decode
``0.5 + 0.1 |D| + 0.001 sum(c)`` seconds; KV counted in tokens (block size 1) unless a
test says otherwise, so the arithmetic is by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridsched.engine.admission import Admission, parse_admission
from hybridsched.engine.loop import run
from hybridsched.instance import Client, Instance
from hybridsched.latency.linear import LinearLatency
from hybridsched.policies.chunked import ChunkedPrefill
from hybridsched.policies.lagrangian import Lagrangian
from hybridsched.policies.prefill_first import PrefillFirst
from hybridsched.policies.static import StaticRouter
from hybridsched.trace.io import check_run
from hybridsched.trace.metrics import request_table
from tests.strategies import TOKENS

LAT = LinearLatency(1.0, 0.01, 0.5, 0.1, 0.001)


def one_client(prompts, outputs, M, B=2, predicted=None, arrival=None, budget=2048) -> Instance:
    cols = {"prompt_tokens": prompts, "output_tokens": outputs}
    if predicted is not None:
        cols["predicted_output_tokens"] = predicted
    if arrival is not None:
        cols["arrival_s"] = arrival
    return Instance(pd.DataFrame(cols), (Client(B, M, LAT),), prefill_budget_tokens=budget)


def run_one(inst: Instance, rule=None, admission=TOKENS):
    router = StaticRouter(assignment=np.zeros(inst.num_requests, dtype=np.int64))
    res = run(inst, router, rule or PrefillFirst(), admission)
    check_run(res, inst)
    return res


# --------------------------------------------------------------------------------------
# the hand-computed eviction
# --------------------------------------------------------------------------------------


def test_two_requests_force_one_eviction():
    """Tests the whole run of two requests (s=5, o=10) on M=16, B=2, watermark 0.

    Both are admitted in one prefill (whole prompts 5 + 5 <= 16). A running request holds
    the KV of s + g - 1 tokens and its decode step writes one more: after the prefill they
    hold 10; decodes 1, 2, 3 take them to 12, 14, 16; decode 4 would need 18 > 16, so
    request 1 (admitted last: later in the prefill) is evicted with g = 4 tokens, and
    request 0 decodes alone to its 10th token (holding 8 + 1 per step). Request 1 waits
    for room (its recompute needs s + g = 9 tokens free), is re-prefilled on 9 tokens when
    request 0 is done (emitting its 5th token) and needs 10 - 5 = 5 more decode steps. Its
    TTFT is the end of the first prefill (1.1 s), not of the recompute.
    """
    inst = one_client([5, 5], [10, 10], M=16)
    res = run_one(inst)
    tr, ev = res.trace, res.evictions
    assert ev[["client", "iteration", "request_id", "generated_tokens"]].values.tolist() == [
        [0, 4, 1, 4]
    ]
    assert tr["kind"].tolist() == ["prefill"] + ["decode"] * 9 + ["prefill"] + ["decode"] * 5
    assert tr["request_ids"].tolist() == [(0, 1)] * 4 + [(0,)] * 6 + [(1,)] * 6
    assert tr["prefill_tokens"].tolist()[0] == 10
    assert tr["prefill_tokens"].tolist()[10] == 5 + 4
    # Contexts (KV after the step): both at 6, 7, 8; then request 0 alone at 9..14;
    # request 1 at 10..14 after its recompute.
    assert tr["context_tokens"].tolist() == [0, 12, 14, 16, *range(9, 15), 0, *range(10, 15)]
    assert ev["time_s"].iloc[0] == pytest.approx(tr["start_s"].iloc[4], abs=0)
    # The eviction's time: prefill 1.1 s, then decodes 0.5 + 0.2 + 0.001 x (12, 14, 16).
    assert ev["time_s"].iloc[0] == pytest.approx(1.1 + 0.712 + 0.714 + 0.716, rel=1e-12)
    assert tr["duration_s"].iloc[10] == pytest.approx(1.0 + 0.01 * 9, rel=1e-12)
    req = request_table(tr, inst, ev, res.dispatch_s).set_index("request_id")
    assert req.loc[1, "ttft_s"] == pytest.approx(1.1, rel=1e-12)
    assert req.loc[1, "preemptions"] == 1
    assert req.loc[1, "recomputed_tokens"] == 9
    assert req.loc[0, "preemptions"] == 0
    assert req.loc[1, "finish_s"] == pytest.approx(tr["end_s"].max(), rel=1e-15)
    # Every request emits exactly o_i tokens, one per row it is in (the recompute emits
    # token g + 1).
    for rid, o in ((0, 10), (1, 10)):
        assert tr["request_ids"].map(lambda ids, r=rid: r in ids).sum() == o
    # The KV after each decode step never exceeds M, and reaches it.
    dec = tr[tr["kind"] == "decode"]
    assert dec["context_tokens"].max() == 16


def test_blocks_round_up_and_the_step_that_starts_a_block_takes_it():
    """Tests KV in blocks of 4: two requests (s=5, o=10) on M=16 (4 blocks). After the
    prefill each holds 2 blocks (5 tokens); decode 1 writes token 6 into its second block,
    decodes 2 and 3 fill it, and decode 4 (KV 8 -> 9 tokens each) needs a third block each:
    4 + 2 > 4 blocks, so request 1 is evicted at iteration 4 with g = 4, as at block size 1
    but for a different reason (here decode 4 would hold 18 tokens in 6 blocks)."""
    inst = one_client([5, 5], [10, 10], M=16)
    res = run_one(inst, admission=Admission("on-demand", block_size=4))
    ev = res.evictions
    assert ev[["iteration", "request_id", "generated_tokens"]].values.tolist() == [[4, 1, 4]]
    # kv_reserved_tokens on demand: the KV slots held in whole blocks during the step.
    assert res.trace["kv_reserved_tokens"].tolist()[:4] == [16, 16, 16, 16]
    # Request 1's recompute needs 9 tokens = 3 blocks free: only when request 0 (holding up
    # to 13 tokens = 4 blocks) is done.
    tr = res.trace
    assert tr["request_ids"].tolist()[10] == (1,) and tr["kind"].tolist()[10] == "prefill"


def test_reservation_admission_never_evicts_the_same_pair():
    """Tests that under reservation admission the same two requests (reserving 15 each on
    M=16) run one after the other, with no eviction and no shared iteration."""
    inst = one_client([5, 5], [10, 10], M=16)
    res = run_one(inst, admission="reservation")
    assert res.evictions.empty
    assert all(len(ids) == 1 for ids in res.trace["request_ids"])
    assert res.trace["kv_reserved_tokens"].max() <= 16


def test_evicts_most_recently_admitted_first():
    """Tests the eviction order: three requests admitted in three separate prefills (B=3,
    budget 5 tokens, so one prompt per prefill) are evicted last-admitted first.

    Prompts 5, 5, 5 with o=30 on M=30 (limit 30 - 1 = 29): request 0 is admitted at t=0,
    then 1, then 2 (each prefill charges 6). Contexts grow until the batch no longer fits:
    the first eviction must take request 2, the next request 1, never request 0 while
    another runs.
    """
    inst = one_client([5, 5, 5], [20, 20, 20], M=30, B=3, budget=5)
    res = run_one(inst)
    ev = res.evictions
    assert len(ev) >= 2
    tr = res.trace
    admitted = {}  # request -> iteration of its latest (re)prefill
    for it, kind, ids in zip(tr["iteration"], tr["kind"], tr["request_ids"], strict=True):
        for e in ev[ev["iteration"] == it].itertuples():
            running = [r for r in admitted if admitted[r] < it and r not in done_before(tr, r, it)]
            victim = e.request_id
            assert admitted[victim] == max(admitted[r] for r in running), (it, running, victim)
            del admitted[victim]
        if kind == "prefill":
            for r in ids:
                admitted[r] = it
    assert ev["request_id"].iloc[0] == 2
    assert 0 not in ev["request_id"].tolist()[:2]


def done_before(tr: pd.DataFrame, rid: int, it: int) -> set:
    """``{rid}`` if request ``rid`` appears in no row from iteration ``it`` on (it finished)."""
    later = tr[tr["iteration"] >= it]["request_ids"]
    return set() if any(rid in ids for ids in later) else {rid}


def test_evicted_request_returns_to_the_queue_head():
    """Tests that an evicted request is re-admitted before requests that were waiting.

    Request 0 (s=5, o=12) and request 1 (s=5, o=12) fill M=20; request 2 (s=2, o=2)
    waits behind them (B=2). Request 1 is evicted; the next prefill must be request 1's
    recompute, not request 2 (which ranks ahead of nobody but was queued first).
    """
    inst = one_client([5, 5, 2], [12, 12, 2], M=20, B=2)
    res = run_one(inst)
    ev = res.evictions
    assert ev["request_id"].tolist()[:1] == [1]
    tr = res.trace
    pre = tr[(tr["kind"] == "prefill") & (tr["iteration"] > ev["iteration"].iloc[0])]
    assert pre["request_ids"].iloc[0][0] == 1
    assert pre["prefill_tokens"].iloc[0] >= 5 + ev["generated_tokens"].iloc[0]


def test_watermark_blocks_admission():
    """Tests the watermark: with M=100 and watermark 0.1 (int(0.1 x 101) = 10 tokens at block
    size 1) a request of prompt 86 cannot join a running request holding 4 tokens that its
    next step takes to 5 (5 + 86 > 90), but with watermark 0 (limit 100) it can."""
    inst = one_client([4, 86], [6, 2], M=100, B=2, arrival=[0.0, 0.5])
    strict = run_one(inst, admission=Admission("on-demand", 0.1, block_size=1))
    together = [ids for ids in strict.trace["request_ids"] if len(ids) == 2]
    assert together == []
    loose = run_one(inst, admission=Admission("on-demand", 0.0, block_size=1))
    assert any(len(ids) == 2 for ids in loose.trace["request_ids"])


def test_watermark_default_and_parsing():
    """Tests vLLM's defaults (watermark 0, blocks of 16), the watermark in blocks
    (``int(w x (N + 1))``, vLLM counts its null block) and the admission spec parser."""
    assert Admission("on-demand").watermark == 0.0 and Admission("on-demand").block_size == 16
    assert Admission("on-demand").kv_limit(100) == 96  # 6 whole blocks
    assert Admission("on-demand", block_size=1).kv_limit(100) == 100
    assert Admission("on-demand", 0.01, block_size=1).kv_limit(100) == 99  # int(1.01) = 1
    assert Admission("on-demand", 0.1).kv_limit(160) == 144  # int(1.1) = 1 block of 16
    assert Admission("reservation").kv_limit(100) == 100
    assert parse_admission("on-demand:0.25").kv_limit(160) == 128  # int(2.75) = 2 blocks
    with pytest.raises(ValueError, match="watermark must be a number.*'x'"):
        parse_admission("on-demand:x")
    with pytest.raises(ValueError, match="admission must be one of"):
        parse_admission("greedy")
    with pytest.raises(ValueError, match="watermark must be in"):
        Admission("on-demand", 1.0)
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        Admission("on-demand", block_size=0)


def test_prefill_row_kv_includes_running_contexts():
    """Tests that a prefill row's KV in use counts the running batch's contexts too.

    Request 0 (s=10, o=20) runs; request 1 (s=30, o=2) arrives at 1.5 s. Its prefill
    row holds request 0's context plus 30 prompt tokens.
    """
    inst = one_client([10, 30], [20, 2], M=200, B=2, arrival=[0.0, 1.5])
    res = run_one(inst)
    tr = res.trace
    row = tr[(tr["kind"] == "prefill") & tr["request_ids"].map(lambda ids: ids == (1,))].iloc[0]
    prev = tr[tr["iteration"] == row["iteration"] - 1].iloc[0]  # a decode of request 0
    assert row["kv_used_tokens"] == prev["context_tokens"] + 1 + 30


@pytest.mark.parametrize("rule", [PrefillFirst(), Lagrangian(), ChunkedPrefill(token_budget=8)])
def test_under_prediction_is_normal_under_on_demand(rule):
    """Tests that predicted lengths far below the true ones (ô = 1) run to completion under
    on-demand admission (evicting as needed) with every invariant, while reservation
    admission reports the overflow."""
    from hybridsched.engine.schema import KVOverflowError

    inst = one_client([6, 7, 8, 9], [30, 25, 20, 15], predicted=[1, 1, 1, 1], M=48, B=4)
    res = run_one(inst, rule)
    assert len(res.evictions) > 0
    assert res.trace["kv_used_tokens"].max() <= 48
    with pytest.raises(KVOverflowError, match="client 0"):
        run_one(inst, rule, admission="reservation")


def test_chunked_prefill_recompute_covers_prompt_and_generated():
    """Tests that under chunked prefill a recomputed request's chunks add up to s_i + g_i."""
    inst = one_client([6, 7, 8], [30, 25, 20], M=40, B=3, budget=8)
    res = run_one(inst, ChunkedPrefill(token_budget=8))
    ev = res.evictions
    assert len(ev) > 0
    tr = res.trace
    for e in ev.itertuples():
        later = tr[tr["iteration"] >= e.iteration]
        got = 0
        for cids, ctok in zip(later["chunk_ids"], later["chunk_tokens"], strict=True):
            got += sum(x for c, x in zip(cids, ctok, strict=True) if c == e.request_id)
            if got >= inst.prompt[e.request_id] + e.generated_tokens:
                break
        assert got == inst.prompt[e.request_id] + e.generated_tokens


def test_ttft_is_the_first_first_token_under_chunked_prefill():
    """Tests that an evicted request's TTFT is the end of the chunk that first completed
    its prompt, not of its recompute (here request 1, s=7: chunks 2 + 5 by iteration 1;
    it is evicted later and re-chunked)."""
    inst = one_client([6, 7, 8], [30, 25, 20], M=40, B=3, budget=8)
    res = run_one(inst, ChunkedPrefill(token_budget=8))
    assert 1 in res.evictions["request_id"].tolist()
    tr = res.trace
    for r in range(3):
        got, want = 0, None
        for end, cids, ctok in zip(tr["end_s"], tr["chunk_ids"], tr["chunk_tokens"], strict=True):
            got += sum(x for c, x in zip(cids, ctok, strict=True) if c == r)
            if got >= inst.prompt[r]:
                want = end
                break
        req = request_table(tr, inst, res.evictions).set_index("request_id")
        assert req.loc[r, "first_token_s"] == want
        assert req.loc[r, "ttft_s"] == want - inst.arrival[r]
    assert req.loc[1, "first_token_s"] == tr["end_s"].iloc[1]
