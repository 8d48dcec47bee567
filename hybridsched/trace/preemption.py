"""Serving invariants of an iteration trace, recounted from the request ids (docs/model.md 11).

``trace.check_trace`` calls these on the exploded trace: the eviction records against
the rows (each eviction takes a running request, after exactly the tokens it had
emitted, at the start of a row of its client) and the KV tokens each row holds, from who
holds a slot (so a prefill row's running batch counts too, whatever the trace's own
``kv_used_tokens`` column says).

KV held by request ``i`` at row ``k`` of its client, while it holds a slot: its
prefilled prompt chunks up to and including ``k`` while its (re)prefill is in chunks,
then ``s_i`` plus the tokens it emitted before ``k`` (a recompute covers ``s_i + g_i``,
so tokens emitted before an eviction still count). A prefill row thus holds the running
contexts plus the prompts it processes; a decode row the contexts ``c_i`` it reads.

The functions taking ``c`` read the check's context (``trace_check._Context``): the flat
trace ``c.f`` and the per-request figures; requests never evicted are interval sums over
flat arrays, evicted ones (few) go segment by segment through the frames of
``evicted_frames``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hybridsched.trace.flat import max_at, min_at, segment_key


def check_evictions_against_rows(tr, ev, emit, first_of, after_of, dec_count, fail) -> None:
    """Each eviction: at a row of the request's client, after exactly ``generated_tokens``
    emitted tokens, and with the request decoding in every decoding row since its last
    (re)prefill (it held its slot up to the eviction)."""
    if len(ev) == 0:
        return
    key = pd.MultiIndex.from_frame(tr[["client", "iteration"]])
    start = pd.Series(tr["start_s"].to_numpy(), index=key)
    client_of = emit.groupby("request_id")["client"].first()
    by_req = {
        r: np.sort(g["iteration"].to_numpy())
        for r, g in emit[emit["request_id"].isin(ev["request_id"])].groupby("request_id")
    }
    ev = ev.sort_values(["request_id", "iteration"], kind="stable")
    seg = ev.groupby("request_id").cumcount().to_numpy()
    for e, m in zip(ev.itertuples(index=False), seg, strict=True):
        r, j, k = int(e.request_id), int(e.client), int(e.iteration)
        where = f"request {r} evicted on client {j} at iteration {k}"
        if client_of.get(r) != j or (j, k) not in start.index:
            fail("evictions happen on the request's client", f"{where}: no such row of its client")
        t = float(start[(j, k)])
        if abs(float(e.time_s) - t) > 1e-12 + 8 * np.finfo(float).eps * abs(t):
            fail("evictions happen on the request's client", f"{where}: time {e.time_s} != {t}")
        emitted = int(np.searchsorted(by_req[r], k))
        if emitted != int(e.generated_tokens):
            fail(
                "evicted requests keep their tokens",
                f"{where} had emitted {emitted} tokens, the record says {e.generated_tokens}",
            )
        if int(getattr(e, "prefilled_tokens", 0) or 0) > 0:
            continue  # evicted while its prompt was chunked in: it was not decoding yet
        since = int(after_of[(j, k - 1)]) - int(first_of[(r, m)]) if k > 0 else -1
        if since != int(dec_count.get((r, m), 0)):
            fail(
                "an evicted request runs until its eviction",
                f"{where} skipped decoding iterations before it",
            )


def kv_held(tr, emit, chunks, spans, prompt, evicted, cached=None) -> np.ndarray:
    """Per row of ``tr`` (sorted by client, iteration): the KV tokens held (module docstring).

    ``chunks``: prompt chunks with ``request_id``, ``client``, ``iteration``, ``tokens`` and
    their segment ``seg``; ``spans``: per (request, segment) ``client``, ``first``, ``last``;
    ``evicted``: the ids of evicted requests (counted one segment at a time); ``cached``:
    ``{(request id, segment): prompt tokens a prefix cache held}`` (held while chunking too).
    """
    idx = pd.MultiIndex.from_frame(tr[["client", "iteration"]])

    def pos(frame, col="iteration"):
        return idx.get_indexer(pd.MultiIndex.from_arrays([frame["client"], frame[col]]))

    sp = spans.reset_index()
    once = ~sp["request_id"].isin(evicted).to_numpy()
    diff = np.zeros(len(tr) + 1, dtype=np.int64)
    # Requests never evicted: interval sums. Each emitted token counts from the next row to
    # the request's last; each chunk from its row; a whole prompt over the whole span.
    one = sp[once]
    end = pd.Series(pos(one, "last") + 1, index=one["request_id"].to_numpy())
    e = emit[~emit["request_id"].isin(evicted).to_numpy()]
    np.add.at(diff, pos(e) + 1, 1)
    np.add.at(diff, end[e["request_id"].to_numpy()].to_numpy(), -1)
    c = chunks[~chunks["request_id"].isin(evicted).to_numpy()]
    x = c["tokens"].to_numpy()
    np.add.at(diff, pos(c), x)
    np.add.at(diff, end[c["request_id"].to_numpy()].to_numpy(), -x)
    whole = one[~one["request_id"].isin(c["request_id"]).to_numpy()]
    s = prompt[whole["request_id"].to_numpy()].to_numpy()
    np.add.at(diff, pos(whole, "first"), s)
    np.add.at(diff, pos(whole, "last") + 1, -s)
    held = np.cumsum(diff)[:-1]
    # Evicted requests, one segment at a time.
    ev_emit = emit[emit["request_id"].isin(evicted).to_numpy()]
    em = {r: np.sort(g["iteration"].to_numpy()) for r, g in ev_emit.groupby("request_id")}
    ev_chunks = chunks[chunks["request_id"].isin(evicted).to_numpy()]
    chk = {k: g for k, g in ev_chunks.groupby(["request_id", "seg"])}
    it = tr["iteration"].to_numpy()
    for r, m, a, b in zip(
        sp["request_id"][~once],
        sp["seg"][~once],
        pos(sp[~once], "first"),
        pos(sp[~once], "last"),
        strict=True,
    ):
        iters = it[a : b + 1]
        val = prompt[r] + np.searchsorted(em.get(r, np.zeros(0)), iters)
        g = chk.get((r, m))
        if g is not None:  # chunked (re)prefill: the chunks so far, until the prompt is done
            ci = g["iteration"].to_numpy()
            cum = np.cumsum(g["tokens"].to_numpy())
            phase = iters <= ci[-1]
            val[phase] = cum[np.searchsorted(ci, iters[phase], side="right") - 1]
            val[phase] += (cached or {}).get((r, m), 0)
        held[a : b + 1] += val
    return held


def spans(c) -> tuple[np.ndarray, ...]:
    """Per (request, segment): row, segment, first and last trace row holding its slot."""
    f, n = c.f, c.f.n
    lo = min_at(n, f.row, f.pos, f.nrows)
    np.minimum.at(lo, f.crow, f.cpos)
    hi = max_at(n, f.row, f.pos, -1)
    np.maximum.at(hi, f.crow, f.cpos)
    once = np.flatnonzero(~c.evicted)
    rows, segs, first, last = [once], [np.zeros(len(once), np.int64)], [lo[once]], [hi[once]]
    if c.evicted.any():
        e, ce = c.evicted[f.row], c.evicted[f.crow]
        key = np.concatenate(
            [segment_key(f.row[e], f.seg[e], c.S), segment_key(f.crow[ce], f.cseg[ce], c.S)]
        )
        pos = np.concatenate([f.pos[e], f.cpos[ce]])
        ukey, inv = np.unique(key, return_inverse=True)
        rows.append(ukey // c.S)
        segs.append(ukey % c.S)
        first.append(min_at(len(ukey), inv, pos, f.nrows))
        last.append(max_at(len(ukey), inv, pos, -1))
    return tuple(np.concatenate(x) for x in (rows, segs, first, last))


def held_once(c, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """KV held per row by requests never evicted (trace_preemption's rule, as interval sums)."""
    f, R = c.f, c.f.nrows
    end = hi + 1
    diff = np.zeros(R + 1, dtype=np.int64)
    keep = ~c.evicted
    fr, fp, _ = c.ft
    d = f.dec & keep[f.row]
    k = keep[fr]
    # Each emitted token counts from the next row to the request's last.
    diff += np.bincount(np.concatenate([f.pos[d], fp[k]]) + 1, minlength=R + 1)
    diff -= np.bincount(end[np.concatenate([f.row[d], fr[k]])], minlength=R + 1)
    ck = keep[f.crow]
    x = f.ctok[ck]
    diff += np.bincount(f.cpos[ck], weights=x, minlength=R + 1).astype(np.int64)
    diff -= np.bincount(end[f.crow[ck]], weights=x, minlength=R + 1).astype(np.int64)
    whole = keep & (np.bincount(f.crow, minlength=f.n) == 0)
    s = c.prompt[whole]
    diff += np.bincount(lo[whole], weights=s, minlength=R + 1).astype(np.int64)
    diff -= np.bincount(end[whole], weights=s, minlength=R + 1).astype(np.int64)
    return np.cumsum(diff)[:-1]


def evicted_frames(c, span) -> dict:
    """The evicted requests' rows as the frames ``trace_preemption`` reads."""
    f, ids = c.f, c.ids
    fr, fp, fs = c.ft
    d = f.dec & c.evicted[f.row]
    k = c.evicted[fr]
    epos = np.concatenate([f.pos[d], fp[k]])
    emit = pd.DataFrame(
        {
            "request_id": ids[np.concatenate([f.row[d], fr[k]])],
            "client": f.client[epos],
            "iteration": f.iteration[epos],
        }
    )
    ck = c.evicted[f.crow]
    chunks = pd.DataFrame(
        {
            "request_id": f.cid[ck],
            "client": f.client[f.cpos[ck]],
            "iteration": f.iteration[f.cpos[ck]],
            "tokens": f.ctok[ck],
            "seg": f.cseg[ck],
        }
    )
    r, s, a, b = (x[c.evicted[span[0]]] for x in span)
    spans = pd.DataFrame(
        {"seg": s, "client": f.client[a], "first": f.iteration[a], "last": f.iteration[b]},
        index=pd.Index(ids[r], name="request_id"),
    )
    key = pd.MultiIndex.from_arrays([f.client, f.iteration])
    after_of = pd.Series(c.after, index=key)
    fkey, fafter = c.first_key, c.first_after
    fe = c.evicted[fkey // c.S]
    first = pd.Series(
        fafter[fe], index=pd.MultiIndex.from_arrays([ids[fkey[fe] // c.S], fkey[fe] % c.S])
    )
    gk, gn = c.dec_groups
    ge = c.evicted[gk // c.S]
    dec_count = pd.Series(
        gn[ge], index=pd.MultiIndex.from_arrays([ids[gk[ge] // c.S], gk[ge] % c.S])
    )
    return dict(
        emit=emit, chunks=chunks, spans=spans, after_of=after_of, first=first, dec_count=dec_count
    )


def check_eviction_table(evictions: pd.DataFrame | None, admission: str, ids, fail) -> pd.DataFrame:
    """The eviction table, checked: known requests, none under reservation admission."""
    if evictions is None or len(evictions) == 0:
        return pd.DataFrame(
            {c: pd.Series(dtype=np.int64) for c in ("client", "iteration", "request_id")}
            | {"generated_tokens": pd.Series(dtype=np.int64), "time_s": pd.Series(dtype=float)}
        )
    ev = evictions.sort_values(["request_id", "iteration"], kind="stable")
    if admission == "reservation":
        fail(
            "no preemption under reservation admission",
            f"request {ev['request_id'].iloc[0]} is evicted",
        )
    unknown = ~ev["request_id"].isin(ids)
    if unknown.any():
        fail("no request invented", f"evicted request {ev['request_id'][unknown].iloc[0]}")
    # Generated tokens never shrink from eviction to eviction: a request is re-prefilled,
    # then decodes; one evicted while (re)prefilling had emitted no token since.
    g = ev["generated_tokens"].to_numpy()
    same = ev["request_id"].to_numpy()[1:] == ev["request_id"].to_numpy()[:-1]
    if (g < 0).any() or (same & (g[1:] < g[:-1])).any():
        fail("evicted requests keep their tokens", "generated tokens do not grow per eviction")
    return ev
