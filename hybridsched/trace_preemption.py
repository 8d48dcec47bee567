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
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def emitting_rows(ex: pd.DataFrame, first_tok: pd.DataFrame) -> pd.DataFrame:
    """Every (request, client, iteration) that emits one of the request's tokens (unsorted)."""
    dec = ex.loc[ex["kind"] == "decode", ["request_id", "client", "iteration"]]
    ft = first_tok.reset_index()[["request_id", "client", "iteration"]]
    return pd.concat([dec, ft], ignore_index=True)


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
        since = int(after_of[(j, k - 1)]) - int(first_of[(r, m)]) if k > 0 else -1
        if since != int(dec_count.get((r, m), 0)):
            fail(
                "an evicted request runs until its eviction",
                f"{where} skipped decoding iterations before it",
            )


def kv_held(tr, emit, chunks, spans, prompt, evicted) -> np.ndarray:
    """Per row of ``tr`` (sorted by client, iteration): the KV tokens held (module docstring).

    ``chunks``: prompt chunks with ``request_id``, ``client``, ``iteration``, ``tokens`` and
    their segment ``seg``; ``spans``: per (request, segment) ``client``, ``first``, ``last``;
    ``evicted``: the ids of evicted requests (counted one segment at a time).
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
        held[a : b + 1] += val
    return held
