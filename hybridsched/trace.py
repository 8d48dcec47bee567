"""Trace invariants (docs/model.md section 9) and trace files.

``check_trace`` recomputes everything it checks from the instance and the request ids in
each row (not from the trace's own bookkeeping columns, which it also checks), so a
trace that was edited or produced by a buggy rule fails with the invariant named.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hybridsched.instance import Instance
from hybridsched.simulator import TRACE_COLUMNS


class TraceError(AssertionError):
    """A trace breaks an invariant; the message names which one and where."""


def _fail(invariant: str, detail: str) -> None:
    raise TraceError(f"{invariant}: {detail}")


def per_request(trace: pd.DataFrame) -> pd.DataFrame:
    """One row per (iteration, request): the exploded trace that request metrics need."""
    ex = trace[["client", "iteration", "kind", "start_s", "end_s", "request_ids"]].explode(
        "request_ids"
    )
    ex = ex.rename(columns={"request_ids": "request_id"}).dropna(subset=["request_id"])
    ex["request_id"] = ex["request_id"].astype(np.int64)
    return ex


def check_trace(
    trace: pd.DataFrame, instance: Instance, assignment=None, rtol: float = 1e-9
) -> None:
    """Assert every invariant of docs/model.md section 9; raise ``TraceError`` naming the first broken one.

    ``T >= T_LB`` is checked where the bound is computed (``bounds.py``), since the bound
    needs more than the trace.
    """
    missing = [c for c in TRACE_COLUMNS if c not in trace.columns]
    if missing:
        _fail("schema", f"missing column(s) {', '.join(missing)}")
    if trace[["client", "iteration"]].duplicated().any():
        _fail("schema", "(client, iteration) pairs must be unique")
    tr = trace.sort_values(["client", "iteration"], kind="stable").reset_index(drop=True)
    req = instance.requests
    ids = req["request_id"].to_numpy()
    row_of = pd.Series(np.arange(len(ids)), index=ids)
    ex = per_request(tr)
    unknown = ~ex["request_id"].isin(ids)
    if unknown.any():
        _fail(
            "no request invented",
            f"request {ex['request_id'][unknown].iloc[0]} is not in the instance",
        )

    # Prefilled exactly once, on exactly one client.
    pre = ex[ex["kind"] == "prefill"]
    counts = pre["request_id"].value_counts()
    twice = counts[counts > 1]
    if len(twice):
        _fail(
            "prefilled exactly once", f"request {twice.index[0]} is prefilled {twice.iloc[0]} times"
        )
    never = np.setdiff1d(ids, counts.index.to_numpy())
    if len(never):
        _fail("prefilled exactly once", f"request {never[0]} is never prefilled (lost)")
    clients_per = ex.groupby("request_id")["client"].nunique()
    moved = clients_per[clients_per > 1]
    if len(moved):
        _fail("one client per request", f"request {moved.index[0]} runs on {moved.iloc[0]} clients")
    pre = pre.set_index("request_id")
    if assignment is not None:
        a = np.asarray(assignment)[row_of[pre.index].to_numpy()]
        wrong = pre["client"].to_numpy() != a
        if wrong.any():
            _fail(
                "assignment honoured",
                f"request {pre.index[wrong][0]} runs on client {pre['client'][wrong].iloc[0]}",
            )

    # Exactly o_i tokens, decoded in every decode iteration from its prefill to its completion.
    dec = ex[ex["kind"] == "decode"]
    ndec = dec.groupby("request_id").size().reindex(ids, fill_value=0).to_numpy()
    out = req["output_tokens"].to_numpy()
    bad = ndec != out - 1
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        _fail(
            "emits exactly o_i tokens",
            f"request {ids[i]} emits {1 + ndec[i]} tokens, o_i = {out[i]}",
        )
    # Per client, number the decode iterations; a request's decodes must be the consecutive
    # decode iterations right after its prefill.
    is_dec = (tr["kind"] == "decode").to_numpy()
    dec_rank = pd.Series(
        np.cumsum(is_dec) - 1 * is_dec, index=pd.MultiIndex.from_frame(tr[["client", "iteration"]])
    )
    # dec_rank at a prefill = number of decodes before it; at a decode = its own 0-based index.
    dec_pos = dec_rank.reindex(pd.MultiIndex.from_frame(dec[["client", "iteration"]])).to_numpy()
    first_ok = dec_rank.reindex(pd.MultiIndex.from_frame(pre[["client", "iteration"]])).to_numpy()
    first = pd.Series(first_ok, index=pre.index)
    expected = first[dec["request_id"].to_numpy()].to_numpy()
    dd = dec.assign(pos=dec_pos, first=expected)
    dd = dd.assign(step=dd.groupby("request_id").cumcount())
    gap = dd["pos"].to_numpy() != dd["first"].to_numpy() + dd["step"].to_numpy()
    if gap.any():
        r = dd[gap].iloc[0]
        _fail(
            "decodes in every decode iteration from prefill to completion",
            f"request {r['request_id']} skips or repeats a decode iteration on client {r['client']} (iteration {r['iteration']})",
        )

    # Time: no overlap, positive durations that match the latency model, arrivals respected.
    start, end = tr["start_s"].to_numpy(), tr["end_s"].to_numpy()
    same = tr["client"].to_numpy()[1:] == tr["client"].to_numpy()[:-1]
    overlap = same & (start[1:] < end[:-1] - 1e-12)
    if overlap.any():
        k = int(np.flatnonzero(overlap)[0]) + 1
        _fail(
            "iterations do not overlap",
            f"client {tr['client'].iloc[k]} iteration {tr['iteration'].iloc[k]} starts before the previous ends",
        )
    pa = instance.arrival[row_of[pre.index].to_numpy()]
    early = pre["start_s"].to_numpy() < pa - 1e-12
    if early.any():
        _fail(
            "no iteration before its inputs exist",
            f"request {pre.index[early][0]} is prefilled before it arrives",
        )

    prompt = instance.prompt
    p_of = pd.Series(prompt, index=ids)
    s_ex = p_of[ex["request_id"].to_numpy()].to_numpy()
    # Context of the t-th decode step is s_i + t.
    ctx = s_ex.copy()
    is_d = (ex["kind"] == "decode").to_numpy()
    step = (
        ex.groupby("request_id").cumcount().to_numpy()
    )  # prefill is step 0 (rows are in time order per client)
    ctx = np.where(is_d, s_ex + step, 0)
    key = [ex["client"].to_numpy(), ex["iteration"].to_numpy()]
    agg = (
        pd.DataFrame(
            {
                "client": key[0],
                "iteration": key[1],
                "s": np.where(is_d, 0, s_ex),
                "s2": np.where(is_d, 0, s_ex**2),
                "c": ctx,
                "n": 1,
            }
        )
        .groupby(["client", "iteration"])
        .sum()
    )
    agg = agg.reindex(pd.MultiIndex.from_frame(tr[["client", "iteration"]]), fill_value=0)
    kinds = tr["kind"].to_numpy()
    if not np.isin(kinds, ["prefill", "decode"]).all():
        _fail(
            "schema", f"unknown iteration kind {kinds[~np.isin(kinds, ['prefill', 'decode'])][0]!r}"
        )
    empty = agg["n"].to_numpy() == 0
    if empty.any():
        _fail(
            "no empty iteration",
            f"client {tr['client'].iloc[int(np.flatnonzero(empty)[0])]} runs an iteration with no request",
        )
    dur = end - start
    expect = np.empty(len(tr))
    cl = tr["client"].to_numpy()
    for j, c in enumerate(instance.clients):
        on = cl == j
        pf = on & (kinds == "prefill")
        dc = on & (kinds == "decode")
        expect[pf] = c.latency.prefill_time(
            agg["s"].to_numpy()[pf].astype(float), agg["s2"].to_numpy()[pf].astype(float)
        )
        expect[dc] = c.latency.decode_time(
            agg["n"].to_numpy()[dc].astype(float), agg["c"].to_numpy()[dc].astype(float)
        )
    off = ~np.isclose(dur, expect, rtol=rtol, atol=1e-12)
    if off.any():
        k = int(np.flatnonzero(off)[0])
        _fail(
            "durations follow the latency model",
            f"client {cl[k]} iteration {tr['iteration'].iloc[k]} lasts {dur[k]:.9f}s, the model says {expect[k]:.9f}s",
        )

    # Capacity: slots and reserved KV memory, recomputed from who holds a slot.
    # A request holds its slot from its prefill to its last decode (inclusive).
    last = ex.groupby("request_id")["iteration"].max()
    firsti = pre["iteration"]
    spans = pd.DataFrame(
        {"client": pre["client"], "first": firsti, "last": last.reindex(pre.index)}
    )
    res = pd.Series(instance.reservation, index=ids)
    held_n = np.zeros(len(tr), dtype=np.int64)
    held_kv = np.zeros(len(tr), dtype=np.int64)
    pos_of = {}
    for j in range(instance.num_clients):
        on = np.flatnonzero(cl == j)
        pos_of[j] = on
    for j, g in spans.groupby("client"):
        on = pos_of[int(j)]
        iters = tr["iteration"].to_numpy()[on]
        n_diff = np.zeros(len(on) + 1, dtype=np.int64)
        kv_diff = np.zeros(len(on) + 1, dtype=np.int64)
        a = np.searchsorted(iters, g["first"].to_numpy())
        b = np.searchsorted(iters, g["last"].to_numpy()) + 1
        np.add.at(n_diff, a, 1)
        np.add.at(n_diff, b, -1)
        r = res[g.index].to_numpy()
        np.add.at(kv_diff, a, r)
        np.add.at(kv_diff, b, -r)
        held_n[on] = np.cumsum(n_diff)[:-1]
        held_kv[on] = np.cumsum(kv_diff)[:-1]
    B = np.array([c.max_batch for c in instance.clients])[cl]
    M = np.array([c.kv_capacity_tokens for c in instance.clients])[cl]
    over = held_n > B
    if over.any():
        k = int(np.flatnonzero(over)[0])
        _fail(
            "batch never exceeds B",
            f"client {cl[k]} iteration {tr['iteration'].iloc[k]} holds {held_n[k]} > B={B[k]}",
        )
    over = held_kv > M
    if over.any():
        k = int(np.flatnonzero(over)[0])
        _fail(
            "KV reserved never exceeds M",
            f"client {cl[k]} iteration {tr['iteration'].iloc[k]} reserves {held_kv[k]} > M={M[k]}",
        )
    used = np.where(kinds == "decode", agg["c"].to_numpy(), 0)
    if (used > M).any():
        k = int(np.flatnonzero(used > M)[0])
        _fail(
            "KV used never exceeds M",
            f"client {cl[k]} iteration {tr['iteration'].iloc[k]} uses {used[k]} > M={M[k]}",
        )

    # The bookkeeping columns must agree with what was recomputed.
    for col, val in (
        ("num_requests", agg["n"].to_numpy()),
        ("num_running", held_n),
        ("prefill_tokens", agg["s"].to_numpy()),
        ("context_tokens", np.where(kinds == "decode", agg["c"].to_numpy(), 0)),
        ("kv_reserved_tokens", held_kv),
    ):
        bad = tr[col].to_numpy() != val
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            _fail(
                f"trace column {col} is consistent",
                f"client {cl[k]} iteration {tr['iteration'].iloc[k]}: {tr[col].iloc[k]} != {val[k]}",
            )
    if not np.allclose(tr["duration_s"].to_numpy(), dur, rtol=1e-9, atol=1e-12):
        _fail("trace column duration_s is consistent", "duration_s != end_s - start_s")


def write_trace(trace: pd.DataFrame, path: str | Path) -> None:
    """CSV with ``request_ids`` as space-separated ids."""
    out = trace.copy()
    out["request_ids"] = [" ".join(map(str, r)) for r in out["request_ids"]]
    out.to_csv(path, index=False)


def read_trace(path: str | Path) -> pd.DataFrame:
    tr = pd.read_csv(path, keep_default_na=False)
    tr["request_ids"] = [tuple(int(x) for x in str(r).split()) for r in tr["request_ids"]]
    return tr
