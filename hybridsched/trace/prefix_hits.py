"""A prefix cache's hits, placed on the trace: which (re)prefill started from cached tokens.

The engine's hits table (``schema.HIT_COLUMNS``) names the iteration that admitted a request
and the prompt tokens its cached blocks held. A request's prefills are numbered by the
evictions before them (``FlatTrace``'s segments): the hit of an admission at iteration ``k``
belongs to segment ``#evictions of that request at iterations <= k``. The checks then start
that segment's chunks at the cached tokens (their attention spans them), count its prefill
as the uncached part, and expect the chunks to cover the prompt less the cached part.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def hits_by_segment(hits: pd.DataFrame | None, f, ev_row: np.ndarray, ev_it: np.ndarray):
    """``{(row, segment): cached tokens}`` for the flat trace ``f`` (empty without hits)."""
    if hits is None or not len(hits):
        return {}
    rows = f.row_of(hits["request_id"].to_numpy())
    its = hits["iteration"].to_numpy()
    out = {}
    by_row: dict[int, list[int]] = {}
    for r, k in zip(ev_row.tolist(), ev_it.tolist(), strict=True):
        by_row.setdefault(r, []).append(k)
    for r, k, x in zip(rows.tolist(), its.tolist(), hits["cached_tokens"].tolist(), strict=True):
        seg = sum(1 for e in by_row.get(r, ()) if e <= k)
        out[(r, seg)] = out.get((r, seg), 0) + int(x)
    return out


def at(hit: dict, rows: np.ndarray, segs: np.ndarray) -> np.ndarray:
    """The cached tokens of each ``(row, segment)`` entry (0 where none)."""
    if not hit:
        return np.zeros(len(rows), dtype=np.int64)
    return np.fromiter(
        (hit.get(k, 0) for k in zip(rows.tolist(), segs.tolist(), strict=True)),
        dtype=np.int64,
        count=len(rows),
    )


def per_request(hit: dict, n: int) -> np.ndarray:
    """Cached tokens per request, over all its admissions."""
    out = np.zeros(n, dtype=np.int64)
    for (r, _), x in hit.items():
        out[r] += x
    return out


def held(c, span) -> np.ndarray:
    """Per trace row: the cached tokens that chunked requests never evicted hold (a span's
    first row to its last), which ``kv_used_tokens`` counts like the tokens their chunks
    computed (``preemption.kv_held`` counts those of evicted requests)."""
    f, R = c.f, c.f.nrows
    r, seg, a, b = span
    x = at(c.hit, r, seg)
    # A whole prefill counts s_i already; evicted requests are counted by segment elsewhere.
    x = np.where((np.bincount(f.crow, minlength=f.n)[r] > 0) & ~c.evicted[r], x, 0)
    diff = np.bincount(a, weights=x, minlength=R + 1) - np.bincount(
        b + 1, weights=x, minlength=R + 1
    )
    return np.cumsum(diff.astype(np.int64))[:-1]


def by_id(hit: dict, ids: np.ndarray) -> dict:
    """``{(request id, segment): cached tokens}``: ``hit`` keyed as the eviction frames are."""
    return {(ids[r], seg): x for (r, seg), x in hit.items()}
