"""``check_trace``: every invariant of docs/model.md sections 9 and 11, on flat arrays.

It recomputes everything it checks from the instance and the request ids in each row
(not from the trace's own bookkeeping columns, which it also checks), so a trace that
was edited or produced by a buggy rule fails with the invariant named. The id columns
are read once into flat arrays (``trace_flat.FlatTrace``); per-request figures are
bincounts over them, so a trace of millions of (iteration, request) pairs checks in
seconds. Evicted requests (few) go through the segment-by-segment checks of
``trace_preemption``.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from hybridsched.instance import Instance
from hybridsched.trace.decodes import check_decodes
from hybridsched.trace.errors import TraceError
from hybridsched.trace.errors import fail as _fail
from hybridsched.trace.flat import FlatTrace, groups, max_at, min_at, segment_key
from hybridsched.trace.preemption import (
    check_eviction_table,
    check_evictions_against_rows,
    evicted_frames,
    held_once,
    kv_held,
    spans,
)
from hybridsched.trace.prefix_hits import at, by_id, hits_by_segment, per_request
from hybridsched.trace.prefix_hits import held as hit_held
from hybridsched.trace.schema import TRACE_COLUMNS

__all__ = ["TraceError", "check_trace"]


def check_trace(
    trace: pd.DataFrame,
    instance: Instance,
    assignment=None,
    rtol: float = 1e-9,
    evictions: pd.DataFrame | None = None,
    admission: str = "reservation",
    flat: FlatTrace | None = None,
    hits: pd.DataFrame | None = None,
) -> None:
    """Assert every invariant of docs/model.md section 9; raise ``TraceError`` naming the first broken one.

    ``T >= T_LB`` is checked where the bound is computed (``bounds.py``), since the bound
    needs more than the trace. ``flat``: this trace already read into flat arrays
    (``FlatTrace(trace, request ids)``, as ``run_policy`` keeps it), read instead of the
    id tuples; it must have been read from this very frame, unchanged since (a frame
    changed in place after it was read would be checked as it was). It is not modified.
    ``hits``: a prefix cache's hits table (``schema.HIT_COLUMNS``; ``prefix_hits.py``).
    """
    missing = [c for c in TRACE_COLUMNS if c not in trace.columns]
    if missing:
        _fail("schema", f"missing column(s) {', '.join(missing)}")
    if trace[["client", "iteration"]].duplicated().any():
        _fail("schema", "(client, iteration) pairs must be unique")
    kinds = trace["kind"].to_numpy()
    bad_kind = ~np.isin(kinds, ["prefill", "decode", "mixed"])
    if bad_kind.any():
        _fail("schema", f"unknown iteration kind {kinds[bad_kind][0]!r}")
    cl = trace["client"].to_numpy()
    if len(cl) and (cl.min() < 0 or cl.max() >= instance.num_clients):
        bad = cl[(cl < 0) | (cl >= instance.num_clients)][0]
        _fail("schema", f"client {bad} is not in the cluster (0..{instance.num_clients - 1})")
    ids = instance.requests["request_id"].to_numpy()
    if flat is not None and not flat.matches(trace, ids):
        raise ValueError("check_trace: flat was not read from this trace and instance")
    f = FlatTrace(trace, ids) if flat is None else copy.copy(flat)
    if not f.chunks_match:
        _fail("schema", "chunk_ids and chunk_tokens differ in length")
    for row, rid in ((f.row, f.rid), (f.crow, f.cid)):
        if (row < 0).any():
            _fail("no request invented", f"request {rid[row < 0][0]} is not in the instance")
    del f.rid  # ids[row] from here on
    ev = check_eviction_table(evictions, admission, ids, _fail)
    ev_row = f.row_of(ev["request_id"].to_numpy()) if len(ev) else np.zeros(0, np.int64)
    f.set_evictions(ev_row, ev["iteration"].to_numpy(), _prefilled(ev))
    ctx = _Context(f, instance, ev, ev_row)
    ctx.hit = hits_by_segment(hits, f, ev_row, ev["iteration"].to_numpy() if len(ev) else ev_row)
    _check_prompts(ctx)
    _check_placement(ctx, assignment)
    check_decodes(ctx)
    _check_times(ctx)
    agg = _row_sums(ctx)
    _check_durations(ctx, agg, rtol)
    _check_capacity(ctx, agg, admission)


class _Context:
    """What the checks share: the flat trace, per-request figures, the eviction table."""

    def __init__(self, f: FlatTrace, instance: Instance, ev: pd.DataFrame, ev_row: np.ndarray):
        self.f, self.inst, self.ev, self.ev_row = f, instance, ev, ev_row
        self.hit: dict = {}  # (row, segment) -> cached prompt tokens (prefix_hits.py)
        n = f.n
        self.ids = f.ids
        self.prompt = instance.prompt.astype(np.int64)
        self.n_ev = np.bincount(ev_row, minlength=n).astype(np.int64)
        g = ev["generated_tokens"].to_numpy() if len(ev) else np.zeros(0)
        self.g_sum = np.bincount(ev_row, weights=g, minlength=n).astype(np.int64)
        # A request evicted while its (re)prefill was being chunked in had processed only
        # ``prefilled_tokens`` of its s_i + g_i: its chunks fall short of that by the rest.
        p = _prefilled(ev)
        gap = np.where(p > 0, self.prompt[ev_row] + g - p, 0) if len(ev) else np.zeros(0)
        self.p_gap = np.bincount(ev_row, weights=gap, minlength=n).astype(np.int64)
        # Evictions of a decoding request: each is followed by a recompute that emits a token.
        self.ev_run = p == 0
        self.n_ev_run = np.bincount(ev_row[self.ev_run], minlength=n).astype(np.int64)
        self.evicted = self.n_ev > 0
        self.clock_tol = 1e-12 + 8 * np.finfo(float).eps * np.abs(f.end)
        self.S = int(max(f.seg.max(initial=0), f.cseg.max(initial=0))) + 1  # segments per request


def _prefilled(ev: pd.DataFrame) -> np.ndarray:
    """The eviction table's ``prefilled_tokens`` (0 where a table predates the column)."""
    if "prefilled_tokens" in ev.columns:
        return ev["prefilled_tokens"].to_numpy(np.int64)
    return np.zeros(len(ev), dtype=np.int64)


def _check_prompts(c: _Context) -> None:
    """The prompt is processed exactly once (once more per eviction): one prefill, or chunks."""
    f, n = c.f, c.f.n
    pre = ~f.dec
    counts = np.bincount(f.row[pre], minlength=n)
    twice = (counts > 0) & (counts != 1 + c.n_ev)
    if twice.any():
        i = int(np.flatnonzero(twice)[0])
        _fail(
            "prefilled exactly once (and once more per eviction)",
            f"request {c.ids[i]} is prefilled {counts[i]} times, evicted {c.n_ev[i]} times",
        )
    chunked = np.bincount(f.crow, minlength=n) > 0
    chunk_sum = np.bincount(f.crow, weights=f.ctok, minlength=n).astype(np.int64)
    both = chunked & (counts > 0)
    if both.any():
        i = int(np.flatnonzero(both)[0])
        _fail("prefilled exactly once", f"request {c.ids[i]} is both prefilled and chunked")
    cover = (1 + c.n_ev) * c.prompt + c.g_sum - c.p_gap - per_request(c.hit, n)
    short = chunked & (chunk_sum != cover)
    if short.any():
        i = int(np.flatnonzero(short)[0])
        _fail(
            "prefilled exactly once",
            f"request {c.ids[i]}'s chunks cover {chunk_sum[i]} of {cover[i]} prompt tokens",
        )
    never = ~chunked & (counts == 0)
    if never.any():
        _fail("prefilled exactly once", f"request {c.ids[never].min()} is never prefilled (lost)")


def _check_placement(c: _Context, assignment) -> None:
    """One client per request; the assignment (if given) honoured."""
    f, n = c.f, c.f.n
    ecl, ccl = f.client[f.pos], f.client[f.cpos]
    lo = min_at(n, f.row, ecl, np.iinfo(np.int64).max)
    np.minimum.at(lo, f.crow, ccl)
    hi = max_at(n, f.row, ecl, -1)
    np.maximum.at(hi, f.crow, ccl)
    moved = (hi >= 0) & (hi != lo)
    if moved.any():
        i = int(np.flatnonzero(moved)[0])
        k = len(np.unique(np.concatenate([ecl[f.row == i], ccl[f.crow == i]])))
        _fail("one client per request", f"request {c.ids[i]} runs on {k} clients")
    c.first_pos = f.first_start_pos()  # every request has one (checked above)
    c.req_client = f.client[c.first_pos]
    if assignment is not None:
        wrong = c.req_client != np.asarray(assignment)
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            _fail("assignment honoured", f"request {c.ids[i]} runs on client {c.req_client[i]}")


def _check_times(c: _Context) -> None:
    """No overlap on a client; no request starts before it arrives."""
    f = c.f
    same = f.client[1:] == f.client[:-1]
    overlap = same & (f.start[1:] < f.end[:-1] - c.clock_tol[:-1])
    if overlap.any():
        k = int(np.flatnonzero(overlap)[0]) + 1
        _fail(
            "iterations do not overlap",
            f"client {f.client[k]} iteration {f.iteration[k]} starts before the previous ends",
        )
    early = f.start[c.first_pos] < c.inst.arrival - 1e-12
    if early.any():
        i = int(np.flatnonzero(early)[0])
        _fail(
            "no iteration before its inputs exist",
            f"request {c.ids[i]} is prefilled before it arrives",
        )


def _recomputed(c: _Context) -> np.ndarray:
    """Per prefill element: the generated tokens its (re)prefill recomputes."""
    f = c.f
    out = np.zeros(len(f.pos), dtype=np.int64)
    has = np.flatnonzero((f.seg > 0) & ~f.dec)
    if len(has) == 0:
        return out
    ev = pd.DataFrame(
        {
            "row": c.ev_row,
            "it": c.ev["iteration"].to_numpy(),
            "g": c.ev["generated_tokens"].to_numpy(),
        }
    )
    ev = ev.sort_values(["row", "it"], kind="stable")
    ev["k"] = ev.groupby("row").cumcount() + 1
    g = {(r, k): x for r, k, x in zip(ev["row"], ev["k"], ev["g"], strict=True)}
    out[has] = [
        g.get((r, k), 0) for r, k in zip(f.row[has].tolist(), f.seg[has].tolist(), strict=True)
    ]
    return out


def _row_sums(c: _Context) -> dict[str, np.ndarray]:
    """Per row: prompt sums of prefills, decode contexts, chunk sizes and their attention sums."""
    f, R = c.f, c.f.nrows
    pre = ~f.dec
    full = np.where(pre, c.prompt[f.row] + _recomputed(c), 0)
    cached = np.where(pre, at(c.hit, f.row, f.seg), 0)  # a prefix cache's part: not computed
    s_ex = full - cached

    def per_row(pos, w=None):
        return np.bincount(pos, weights=w, minlength=R).astype(np.int64)

    agg = {
        "s": per_row(f.pos, s_ex),
        "s2": per_row(f.pos, full**2 - cached**2),
        "spre": per_row(f.pos, cached),
        "c": per_row(f.pos, c.context),
        "n": per_row(f.pos),
        "nd": per_row(f.pos[f.dec]),
    }
    # Chunks: before/after within each (request, segment), in time order.
    o = np.lexsort((f.cpos, f.cseg, f.crow))
    key = segment_key(f.crow[o], f.cseg[o], c.S)
    tok = f.ctok[o]
    cs = np.cumsum(tok)
    gstart, _ = groups(key)
    base = np.repeat(cs[gstart] - tok[gstart], np.diff(np.r_[gstart, len(o)]))
    before = np.empty(len(o), dtype=np.int64)
    before[o] = cs - tok - base
    before += at(c.hit, f.crow, f.cseg)  # a chunk after cached blocks starts past them
    after = before + f.ctok
    agg.update(
        ct=per_row(f.cpos, f.ctok),
        csq=per_row(f.cpos, after**2 - before**2),
        cpre=per_row(f.cpos, before),
        cn=per_row(f.cpos),
    )
    c.chunk_before = before
    return agg


def _check_durations(c: _Context, agg: dict, rtol: float) -> None:
    f = c.f
    nrow = agg["n"] + agg["cn"]
    empty = nrow == 0
    if empty.any():
        _fail(
            "no empty iteration",
            f"client {f.client[int(np.flatnonzero(empty)[0])]} runs an iteration with no request",
        )
    c.nrow = nrow
    dur = f.end - f.start
    expect = np.empty(f.nrows)
    x = {k: agg[k].astype(float) for k in ("s", "s2", "c", "nd", "ct", "csq", "cpre", "spre")}
    clients = c.inst.clients
    group = np.empty(len(clients), dtype=np.int64)  # clients with equal latency models
    reps: list[int] = []
    for j, cl in enumerate(clients):
        g = next((k for k, r in enumerate(reps) if clients[r].latency == cl.latency), None)
        if g is None:
            g = len(reps)
            reps.append(j)
        group[j] = g
    grow = group[f.client]
    for g, j in enumerate(reps):
        lat = clients[j].latency
        on = grow == g
        pf, dc, mx = on & f.is_prefill, on & f.is_decode, on & f.is_mixed
        expect[pf] = lat.prefill_time(x["s"][pf], x["s2"][pf])
        hp = pf & (agg["spre"] > 0)  # after cached blocks: a mixed step without decodes
        if hp.any():
            z = np.zeros(int(hp.sum()))
            expect[hp] = lat.mixed_time(z, z, x["s"][hp], x["s2"][hp], x["spre"][hp])
        expect[dc] = lat.decode_time(x["nd"][dc], x["c"][dc])
        if mx.any():
            expect[mx] = lat.mixed_time(
                x["nd"][mx], x["c"][mx], x["ct"][mx], x["csq"][mx], x["cpre"][mx]
            )
    off = np.abs(dur - expect) > rtol * np.abs(expect) + c.clock_tol
    if off.any():
        k = int(np.flatnonzero(off)[0])
        _fail(
            "durations follow the latency model",
            f"client {f.client[k]} iteration {f.iteration[k]} lasts {dur[k]:.9f}s, the model says {expect[k]:.9f}s",
        )
    c.dur = dur


def _check_capacity(c: _Context, agg: dict, admission: str) -> None:
    """Slots and KV memory, recomputed from who holds a slot; then the bookkeeping columns."""
    f, R = c.f, c.f.nrows
    span = spans(c)
    r, _, a, b = span
    res = c.inst.reservation.astype(np.int64)
    held_n = np.cumsum(np.bincount(a, minlength=R + 1) - np.bincount(b + 1, minlength=R + 1))[:-1]
    kv = np.bincount(a, weights=res[r], minlength=R + 1) - np.bincount(
        b + 1, weights=res[r], minlength=R + 1
    )
    held_kv = np.cumsum(kv.astype(np.int64))[:-1]
    B = np.array([x.max_batch for x in c.inst.clients])[f.client]
    M = np.array([x.kv_capacity_tokens for x in c.inst.clients])[f.client]
    over = held_n > B
    if over.any():
        k = int(np.flatnonzero(over)[0])
        _fail(
            "batch never exceeds B",
            f"client {f.client[k]} iteration {f.iteration[k]} holds {held_n[k]} > B={B[k]}",
        )
    over = (held_kv > M) & (admission == "reservation")
    if over.any():
        k = int(np.flatnonzero(over)[0])
        _fail(
            "KV reserved never exceeds M",
            f"client {f.client[k]} iteration {f.iteration[k]} reserves {held_kv[k]} > M={M[k]}",
        )
    once = ~c.evicted[r]
    lo = np.zeros(f.n, np.int64)
    hi = np.zeros(f.n, np.int64)
    lo[r[once]], hi[r[once]] = a[once], b[once]
    held_used = held_once(c, lo, hi)
    if c.evicted.any():
        fr = evicted_frames(c, span)
        check_evictions_against_rows(
            f.tr, c.ev, fr["emit"], fr["first"], fr["after_of"], fr["dec_count"], _fail
        )
        prompt = pd.Series(c.prompt, index=c.ids)
        held_used = held_used + kv_held(
            f.tr,
            fr["emit"],
            fr["chunks"],
            fr["spans"],
            prompt,
            set(c.ev["request_id"]),
            by_id(c.hit, c.ids),
        )
    if c.hit:
        held_used = held_used + hit_held(c, span)
    tr = f.tr
    used = np.maximum(held_used, tr["kv_used_tokens"].to_numpy())
    if c.hit:  # requests share cached blocks: the blocks held are the physical bound
        used = tr["kv_reserved_tokens"].to_numpy()
    if (used > M).any():
        k = int(np.flatnonzero(used > M)[0])
        _fail(
            "KV used never exceeds M",
            f"client {f.client[k]} iteration {f.iteration[k]} uses {used[k]} > M={M[k]}",
        )
    checks = [
        ("kv_used_tokens", held_used),
        ("num_requests", c.nrow),
        ("num_running", held_n),
        ("prefill_tokens", agg["s"] + agg["ct"]),
        ("context_tokens", agg["c"]),
    ]
    if admission == "reservation":
        checks.append(("kv_reserved_tokens", held_kv))
    for col, val in checks:
        bad = tr[col].to_numpy() != val
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            _fail(
                f"trace column {col} is consistent",
                f"client {f.client[k]} iteration {f.iteration[k]}: {tr[col].iloc[k]} != {val[k]}",
            )
    if (np.abs(tr["duration_s"].to_numpy() - c.dur) > 1e-9 * np.abs(c.dur) + c.clock_tol).any():
        _fail("trace column duration_s is consistent", "duration_s != end_s - start_s")
