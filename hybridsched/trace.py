"""Trace invariants (docs/model.md section 9) and trace files.

``check_trace`` recomputes everything it checks from the instance and the request ids in
each row (not from the trace's own bookkeeping columns, which it also checks), so a
trace that was edited or produced by a buggy rule fails with the invariant named.
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd

from hybridsched.engine.schema import TRACE_COLUMNS
from hybridsched.instance import Instance


class TraceError(AssertionError):
    """A trace breaks an invariant; the message names which one and where."""


def _fail(invariant: str, detail: str) -> None:
    raise TraceError(f"{invariant}: {detail}")


def _flatten(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A column of tuples as (row index per element, the elements), without ``explode``."""
    lengths = np.fromiter((len(x) for x in col), dtype=np.int64, count=len(col))
    flat = np.fromiter(chain.from_iterable(col), dtype=np.int64, count=int(lengths.sum()))
    return np.repeat(np.arange(len(col)), lengths), flat


def per_request(trace: pd.DataFrame) -> pd.DataFrame:
    """One row per (iteration, request) in ``request_ids``: the exploded trace request metrics need.

    ``kind`` is the request's role: ``prefill`` (a prefill row) or ``decode`` (a decode
    row, or the decode step of a mixed row). Prompt chunks are in ``per_chunk``.
    """
    pos, ids = _flatten(trace["request_ids"])
    kind = np.where(trace["kind"].to_numpy() == "prefill", "prefill", "decode")
    out = {c: trace[c].to_numpy()[pos] for c in ("client", "iteration")}
    out["kind"] = pd.Categorical.from_codes(
        (kind[pos] == "decode").astype(np.int8), categories=["prefill", "decode"]
    )
    for c in ("start_s", "end_s"):
        out[c] = trace[c].to_numpy()[pos]
    out["request_id"] = ids
    return pd.DataFrame(out, index=trace.index[pos])


def per_chunk(trace: pd.DataFrame) -> pd.DataFrame:
    """One row per prompt chunk of a mixed iteration: ``request_id``, ``tokens``, and the row's time."""
    cols = ["client", "iteration", "start_s", "end_s"]
    if "chunk_ids" not in trace.columns:
        return pd.DataFrame(columns=[*cols, "request_id", "tokens"])
    pos, ids = _flatten(trace["chunk_ids"])
    _, toks = _flatten(trace["chunk_tokens"])
    out = {c: trace[c].to_numpy()[pos] for c in cols}
    out["request_id"] = ids
    out["tokens"] = toks
    return pd.DataFrame(out, index=trace.index[pos])


def first_tokens(trace: pd.DataFrame) -> pd.DataFrame:
    """Per request: the row that emits its first token (its prefill, or its last chunk)."""
    ex = per_request(trace)
    pre = ex[ex["kind"] == "prefill"].drop(columns="kind")
    ch = per_chunk(trace).sort_values(["client", "iteration"], kind="stable")
    last = ch.groupby("request_id").tail(1).drop(columns="tokens")
    return pd.concat([pre, last], ignore_index=True).set_index("request_id")


def check_trace(
    trace: pd.DataFrame,
    instance: Instance,
    assignment=None,
    rtol: float = 1e-9,
    evictions: pd.DataFrame | None = None,
    admission: str = "reservation",
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
    kinds = tr["kind"].to_numpy()
    bad_kind = ~np.isin(kinds, ["prefill", "decode", "mixed"])
    if bad_kind.any():
        _fail("schema", f"unknown iteration kind {kinds[bad_kind][0]!r}")
    req = instance.requests
    ids = req["request_id"].to_numpy()
    row_of = pd.Series(np.arange(len(ids)), index=ids)
    ex = per_request(tr)
    ch = per_chunk(tr)
    for part in (ex, ch):
        unknown = ~part["request_id"].isin(ids)
        if unknown.any():
            _fail(
                "no request invented",
                f"request {part['request_id'][unknown].iloc[0]} is not in the instance",
            )
    prompt = pd.Series(instance.prompt, index=ids)
    ev = _check_evictions(evictions, admission, ids)
    n_ev = ev.groupby("request_id").size().reindex(ids, fill_value=0)
    g_sum = ev.groupby("request_id")["generated_tokens"].sum().reindex(ids, fill_value=0)
    ex_seg = _segments(ex, ev)
    ch_seg = _segments(ch, ev)

    # The prompt is processed exactly once: one prefill, or chunks that add up to s_i.
    pre = ex[ex["kind"] == "prefill"]
    counts = pre["request_id"].value_counts()
    twice = counts[counts.to_numpy() != 1 + n_ev[counts.index].to_numpy()]
    if len(twice):
        _fail(
            "prefilled exactly once (and once more per eviction)",
            f"request {twice.index[0]} is prefilled {twice.iloc[0]} times, evicted "
            f"{n_ev[twice.index[0]]} times",
        )
    chunk_sum = ch.groupby("request_id")["tokens"].sum()
    both = chunk_sum.index.intersection(counts.index)
    if len(both):
        _fail("prefilled exactly once", f"request {both[0]} is both prefilled and chunked")
    cover = (1 + n_ev[chunk_sum.index]) * prompt[chunk_sum.index] + g_sum[chunk_sum.index]
    short = chunk_sum[chunk_sum.to_numpy() != cover.to_numpy()]
    if len(short):
        _fail(
            "prefilled exactly once",
            f"request {short.index[0]}'s chunks cover {short.iloc[0]} of {cover[short.index[0]]} prompt tokens",
        )
    never = np.setdiff1d(ids, np.union1d(counts.index.to_numpy(), chunk_sum.index.to_numpy()))
    if len(never):
        _fail("prefilled exactly once", f"request {never[0]} is never prefilled (lost)")
    part = pd.concat([ex[["request_id", "client"]], ch[["request_id", "client"]]])
    clients_per = part.groupby("request_id")["client"].nunique()
    moved = clients_per[clients_per > 1]
    if len(moved):
        _fail("one client per request", f"request {moved.index[0]} runs on {moved.iloc[0]} clients")
    first_tok = first_tokens(tr)  # the rows that complete each prompt (one more per eviction)
    first_tok = first_tok.sort_values(["client", "iteration"], kind="stable")
    first_tok = first_tok[~first_tok.index.duplicated(keep="first")]
    first_in = pd.concat([pre.drop(columns="kind"), ch.drop(columns="tokens")])
    first_in = first_in.sort_values(["client", "iteration"]).groupby("request_id").head(1)
    first_in = first_in.set_index("request_id")  # the row where each request starts
    if assignment is not None:
        a = np.asarray(assignment)[row_of[first_in.index].to_numpy()]
        wrong = first_in["client"].to_numpy() != a
        if wrong.any():
            _fail(
                "assignment honoured",
                f"request {first_in.index[wrong][0]} runs on client {first_in['client'][wrong].iloc[0]}",
            )

    # Exactly o_i tokens, decoded in every decoding iteration from its first token to its last.
    dec = ex[ex["kind"] == "decode"]
    ndec = dec.groupby("request_id").size().reindex(ids, fill_value=0).to_numpy()
    out = req["output_tokens"].to_numpy()
    bad = ndec != out - 1 - n_ev.to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        _fail(
            "emits exactly o_i tokens",
            f"request {ids[i]} emits {1 + ndec[i]} tokens, o_i = {out[i]}",
        )
    # Number each client's decoding iterations (decode rows, mixed rows with a batch);
    # a request's decodes must be the consecutive decoding iterations after its first token.
    is_dec = (kinds == "decode") | (
        (kinds == "mixed") & (tr["request_ids"].map(len) > 0).to_numpy()
    )
    cum = pd.Series(is_dec.astype(np.int64)).groupby(tr["client"].to_numpy()).cumsum().to_numpy()
    key = pd.MultiIndex.from_frame(tr[["client", "iteration"]])
    pos_of = pd.Series(cum - 1, index=key)  # 0-based index of a decoding row
    after_of = pd.Series(cum, index=key)  # decoding rows up to and including a row
    dec_pos = pos_of.reindex(pd.MultiIndex.from_frame(dec[["client", "iteration"]])).to_numpy()
    first = pd.Series(
        after_of.reindex(pd.MultiIndex.from_frame(first_tok[["client", "iteration"]])).to_numpy(),
        index=first_tok.index,
    )
    expected = first[dec["request_id"].to_numpy()].to_numpy()
    dd = dec.assign(pos=dec_pos, first=expected)
    dd = dd.assign(step=dd.groupby("request_id").cumcount())
    gap = dd["pos"].to_numpy() != dd["first"].to_numpy() + dd["step"].to_numpy()
    gap &= n_ev[dd["request_id"].to_numpy()].to_numpy() == 0  # evicted: checked by segments
    if gap.any():
        r = dd[gap].iloc[0]
        _fail(
            "decodes in every decode iteration from prefill to completion",
            f"request {r['request_id']} skips or repeats a decode iteration on client {r['client']} (iteration {r['iteration']})",
        )

    # Time: no overlap, positive durations that match the latency model, arrivals respected.
    start, end = tr["start_s"].to_numpy(), tr["end_s"].to_numpy()
    cl = tr["client"].to_numpy()
    same = cl[1:] == cl[:-1]
    clock_tol = 1e-12 + 8 * np.finfo(float).eps * np.abs(end)  # relative to the clock
    overlap = same & (start[1:] < end[:-1] - clock_tol[:-1])
    if overlap.any():
        k = int(np.flatnonzero(overlap)[0]) + 1
        _fail(
            "iterations do not overlap",
            f"client {tr['client'].iloc[k]} iteration {tr['iteration'].iloc[k]} starts before the previous ends",
        )
    pa = instance.arrival[row_of[first_in.index].to_numpy()]
    early = first_in["start_s"].to_numpy() < pa - 1e-12
    if early.any():
        _fail(
            "no iteration before its inputs exist",
            f"request {first_in.index[early][0]} is prefilled before it arrives",
        )

    # Per row: prompt sums of prefills, decode contexts (the t-th decode step of i reads
    # s_i + t), chunk sizes, their causal-attention sums and prefixes.
    is_d = (ex["kind"] == "decode").to_numpy()
    s_ex = prompt[ex["request_id"].to_numpy()].to_numpy() + _recomputed(ex, ex_seg, ev)
    step = np.zeros(len(ex), dtype=np.int64)
    step[is_d] = ex[is_d].groupby("request_id").cumcount().to_numpy() + 1 + ex_seg[is_d]
    s_ex = np.where(is_d, prompt[ex["request_id"].to_numpy()].to_numpy(), s_ex)
    agg = (
        pd.DataFrame(
            {
                "client": ex["client"].to_numpy(),
                "iteration": ex["iteration"].to_numpy(),
                "s": np.where(is_d, 0, s_ex),
                "s2": np.where(is_d, 0, s_ex**2),
                "c": np.where(is_d, s_ex + step, 0),
                "n": 1,
                "nd": is_d.astype(np.int64),
            }
        )
        .groupby(["client", "iteration"])
        .sum()
    )
    chs = ch.assign(seg=ch_seg).sort_values(["client", "iteration"], kind="stable")
    before = (
        chs.groupby(["request_id", "seg"])["tokens"].cumsum().to_numpy() - chs["tokens"].to_numpy()
    )
    after = before + chs["tokens"].to_numpy()
    cagg = (
        pd.DataFrame(
            {
                "client": chs["client"].to_numpy(),
                "iteration": chs["iteration"].to_numpy(),
                "ct": chs["tokens"].to_numpy(),
                "csq": after**2 - before**2,
                "cpre": before,
                "cn": 1,
            }
        )
        .groupby(["client", "iteration"])
        .sum()
    )
    agg = agg.join(cagg, how="outer").fillna(0).astype(np.int64)
    agg = agg.reindex(key, fill_value=0)
    nrow = agg["n"].to_numpy() + agg["cn"].to_numpy()
    empty = nrow == 0
    if empty.any():
        _fail(
            "no empty iteration",
            f"client {cl[int(np.flatnonzero(empty)[0])]} runs an iteration with no request",
        )
    dur = end - start
    expect = np.empty(len(tr))
    f = {c: agg[c].to_numpy().astype(float) for c in ("s", "s2", "c", "nd", "ct", "csq", "cpre")}
    for j, c in enumerate(instance.clients):
        on = cl == j
        pf = on & (kinds == "prefill")
        dc = on & (kinds == "decode")
        mx = on & (kinds == "mixed")
        expect[pf] = c.latency.prefill_time(f["s"][pf], f["s2"][pf])
        expect[dc] = c.latency.decode_time(f["nd"][dc], f["c"][dc])
        if mx.any():
            expect[mx] = c.latency.mixed_time(
                f["nd"][mx], f["c"][mx], f["ct"][mx], f["csq"][mx], f["cpre"][mx]
            )
    off = np.abs(dur - expect) > rtol * np.abs(expect) + clock_tol
    if off.any():
        k = int(np.flatnonzero(off)[0])
        _fail(
            "durations follow the latency model",
            f"client {cl[k]} iteration {tr['iteration'].iloc[k]} lasts {dur[k]:.9f}s, the model says {expect[k]:.9f}s",
        )

    # Capacity: slots and reserved KV memory, recomputed from who holds a slot.
    # A request holds its slot from its first prefill or chunk to its last token (inclusive).
    rows_all = pd.concat(
        [
            ex[["request_id", "client", "iteration"]].assign(seg=ex_seg),
            ch[["request_id", "client", "iteration"]].assign(seg=ch_seg),
        ]
    )
    seg = rows_all.groupby(["request_id", "seg"]).agg(
        client=("client", "first"), first=("iteration", "min"), last=("iteration", "max")
    )
    spans = seg.reset_index(level="seg", drop=True)
    res = pd.Series(instance.reservation, index=ids)
    held_n = np.zeros(len(tr), dtype=np.int64)
    held_kv = np.zeros(len(tr), dtype=np.int64)
    iters_all = tr["iteration"].to_numpy()
    for j, g in spans.groupby("client"):
        on = np.flatnonzero(cl == int(j))
        iters = iters_all[on]
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
    over = (held_kv > M) & (admission == "reservation")
    if over.any():
        k = int(np.flatnonzero(over)[0])
        _fail(
            "KV reserved never exceeds M",
            f"client {cl[k]} iteration {tr['iteration'].iloc[k]} reserves {held_kv[k]} > M={M[k]}",
        )
    used = np.maximum(agg["c"].to_numpy(), tr["kv_used_tokens"].to_numpy())
    if (used > M).any():
        k = int(np.flatnonzero(used > M)[0])
        _fail(
            "KV used never exceeds M",
            f"client {cl[k]} iteration {tr['iteration'].iloc[k]} uses {used[k]} > M={M[k]}",
        )

    # The bookkeeping columns must agree with what was recomputed.
    checks = [
        ("num_requests", nrow),
        ("num_running", held_n),
        ("prefill_tokens", agg["s"].to_numpy() + agg["ct"].to_numpy()),
        ("context_tokens", agg["c"].to_numpy()),
    ]
    if admission == "reservation":
        checks.append(("kv_reserved_tokens", held_kv))
    for col, val in checks:
        bad = tr[col].to_numpy() != val
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            _fail(
                f"trace column {col} is consistent",
                f"client {cl[k]} iteration {tr['iteration'].iloc[k]}: {tr[col].iloc[k]} != {val[k]}",
            )
    if not np.allclose(tr["duration_s"].to_numpy(), dur, rtol=1e-9, atol=1e-12):
        _fail("trace column duration_s is consistent", "duration_s != end_s - start_s")


def _check_evictions(evictions: pd.DataFrame | None, admission: str, ids) -> pd.DataFrame:
    """The eviction table, checked: known requests, none under reservation admission."""
    if evictions is None or len(evictions) == 0:
        return pd.DataFrame(
            {c: pd.Series(dtype=np.int64) for c in ("client", "iteration", "request_id")}
            | {"generated_tokens": pd.Series(dtype=np.int64), "time_s": pd.Series(dtype=float)}
        )
    ev = evictions.sort_values(["request_id", "iteration"], kind="stable")
    if admission == "reservation":
        _fail(
            "no preemption under reservation admission",
            f"request {ev['request_id'].iloc[0]} is evicted",
        )
    unknown = ~ev["request_id"].isin(ids)
    if unknown.any():
        _fail("no request invented", f"evicted request {ev['request_id'][unknown].iloc[0]}")
    # Generated tokens grow from eviction to eviction: each is re-prefilled, then decodes.
    g = ev["generated_tokens"].to_numpy()
    same = ev["request_id"].to_numpy()[1:] == ev["request_id"].to_numpy()[:-1]
    if (g < 1).any() or (same & (g[1:] <= g[:-1])).any():
        _fail("evicted requests keep their tokens", "generated tokens do not grow per eviction")
    return ev


def _segments(part: pd.DataFrame, ev: pd.DataFrame) -> np.ndarray:
    """Per row of ``part``: how many evictions of its request came before the row's iteration."""
    seg = np.zeros(len(part), dtype=np.int64)
    if len(ev) == 0 or len(part) == 0:
        return seg
    evicted = part["request_id"].isin(ev["request_id"]).to_numpy()
    if not evicted.any():
        return seg
    sub = part[evicted]
    by_req = ev.groupby("request_id")["iteration"].apply(np.sort)
    out = np.empty(len(sub), dtype=np.int64)
    for k, (r, it) in enumerate(
        zip(sub["request_id"].to_numpy(), sub["iteration"].to_numpy(), strict=True)
    ):
        out[k] = np.searchsorted(by_req[r], it, side="right")
    seg[evicted] = out
    return seg


def _recomputed(ex: pd.DataFrame, seg: np.ndarray, ev: pd.DataFrame) -> np.ndarray:
    """Per row: the generated tokens a (re)prefill recomputes (``g`` of the eviction before it)."""
    out = np.zeros(len(ex), dtype=np.int64)
    if len(ev) == 0:
        return out
    g = {
        (r, k + 1): x
        for r, grp in ev.groupby("request_id")
        for k, x in enumerate(grp.sort_values("iteration")["generated_tokens"].to_numpy())
    }
    has = seg > 0
    ids = ex["request_id"].to_numpy()
    out[has] = [g.get((r, k), 0) for r, k in zip(ids[has], seg[has], strict=True)]
    return out


_TUPLE_COLUMNS = ("request_ids", "chunk_ids", "chunk_tokens")


def write_trace(trace: pd.DataFrame, path: str | Path) -> None:
    """CSV with the tuple columns (``request_ids``, ``chunk_ids``, ``chunk_tokens``) space-separated."""
    out = trace.copy()
    for c in _TUPLE_COLUMNS:
        if c in out.columns:
            out[c] = [" ".join(map(str, r)) for r in out[c]]
    out.to_csv(path, index=False)


def read_trace(path: str | Path) -> pd.DataFrame:
    tr = pd.read_csv(path, keep_default_na=False)
    for c in _TUPLE_COLUMNS:
        if c in tr.columns:
            tr[c] = [tuple(int(x) for x in str(r).split()) for r in tr[c]]
    return tr


def check_run(result, instance: Instance, assignment=None, rtol: float = 1e-9) -> None:
    """``check_trace`` on an ``EngineResult``: the trace with its evictions and admission mode."""
    check_trace(
        result.trace,
        instance,
        assignment=assignment,
        rtol=rtol,
        evictions=result.evictions,
        admission=result.admission,
    )
