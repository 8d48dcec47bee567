"""An iteration trace as flat arrays: what ``check_trace`` and the request table read.

The trace's id columns (``request_ids``, ``chunk_ids``, ``chunk_tokens``: one tuple per
iteration) become flat arrays with one element per (iteration, request), in the order of
the rows sorted by ``(client, iteration)`` (CSR: the row of each element is ``pos``).
Request ids map to instance rows (``row``, ``-1`` for an id the instance does not have),
so per-request figures are ``np.bincount`` / ``np.minimum.at`` over ``row`` instead of
group-bys over exploded frames. ``seg`` counts the evictions of an element's request
before its iteration (an evicted request starts a new segment at its recompute).
"""

from __future__ import annotations

from itertools import chain

import numpy as np
import pandas as pd

# Rows, elements and segments are counted in int32 (a million requests make ~10^8
# elements, fewer than 2^31): half the memory of the flat arrays.
_IDX = np.int32


def flatten(col) -> tuple[np.ndarray, np.ndarray]:
    """A sequence of tuples as (row index per element, the elements), without ``explode``."""
    vals = col.to_numpy() if isinstance(col, pd.Series) else col
    lengths = np.fromiter(map(len, vals), dtype=np.int64, count=len(vals))
    flat = np.fromiter(chain.from_iterable(vals), dtype=np.int64, count=int(lengths.sum()))
    return np.repeat(np.arange(len(vals), dtype=_IDX), lengths), flat


def in_order(trace: pd.DataFrame) -> bool:
    """The rows are sorted by ``(client, iteration)`` already (an engine's trace is)."""
    c, k = trace["client"].to_numpy(), trace["iteration"].to_numpy()
    if len(c) < 2:
        return True
    dc = np.diff(c)
    return bool(((dc > 0) | ((dc == 0) & (np.diff(k) > 0))).all())


def row_index(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The position of each of ``values`` in ``ids`` (unique), ``-1`` where absent."""
    n = len(ids)
    if n and ids[0] == 0 and ids[-1] == n - 1 and (np.diff(ids) == 1).all():
        out = values.astype(_IDX)
        out[(values < 0) | (values >= n)] = -1
        return out
    return pd.Index(ids).get_indexer(values).astype(_IDX)


def segment_key(row: np.ndarray, seg: np.ndarray, S: int) -> np.ndarray:
    """One int64 key per (request row, segment), ``S`` segments per request at most."""
    return row.astype(np.int64) * S + seg


def min_at(n: int, idx: np.ndarray, val: np.ndarray, fill) -> np.ndarray:
    out = np.full(n, fill, dtype=val.dtype)
    np.minimum.at(out, idx, val)
    return out


def max_at(n: int, idx: np.ndarray, val: np.ndarray, fill) -> np.ndarray:
    out = np.full(n, fill, dtype=val.dtype)
    np.maximum.at(out, idx, val)
    return out


def groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of equal ``key``: the start of each run, and each element's rank within its run."""
    if len(key) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    return starts, np.arange(len(key)) - np.repeat(starts, np.diff(np.r_[starts, len(key)]))


class FlatTrace:
    """A trace sorted by ``(client, iteration)``, its id columns flat (module docstring).

    Rows: ``tr`` (the sorted frame, index 0..), ``client``, ``iteration``, ``is_prefill``,
    ``is_decode``, ``is_mixed`` (the kind), ``start``, ``end``. Request elements (``request_ids``): ``pos``, ``rid`` (the id),
    ``row``, ``dec`` (the element decodes: a decode row, or the batch of a mixed row).
    Chunk elements: ``cpos``, ``cid``, ``crow``, ``ctok``.
    """

    def __init__(self, trace: pd.DataFrame, ids: np.ndarray, presorted: bool = False):
        self.source = trace  # the frame it was read from (``matches``)
        ordered = presorted or in_order(trace)
        tr = trace if ordered else trace.sort_values(["client", "iteration"], kind="stable")
        self.tr = tr = tr.reset_index(drop=True)
        self.nrows = len(tr)
        self.client = tr["client"].to_numpy()
        self.iteration = tr["iteration"].to_numpy()
        codes, names = pd.factorize(tr["kind"])  # compare a few names, not every row's string
        names = np.asarray(names, dtype=object)
        self.is_prefill, self.is_decode, self.is_mixed = (
            np.isin(codes, np.flatnonzero(names == k)) for k in ("prefill", "decode", "mixed")
        )
        self.start = tr["start_s"].to_numpy()
        self.end = tr["end_s"].to_numpy()
        self.ids = np.asarray(ids)
        self.n = len(self.ids)
        self.pos, self.rid = flatten(tr["request_ids"])
        self.row = row_index(self.ids, self.rid)
        self.dec = ~self.is_prefill[self.pos]
        if "chunk_ids" in tr.columns:
            self.cpos, self.cid = flatten(tr["chunk_ids"])
            cp, self.ctok = flatten(tr["chunk_tokens"])
            self.chunks_match = len(cp) == len(self.cpos) and bool((cp == self.cpos).all())
        else:
            self.cpos = np.zeros(0, dtype=_IDX)
            self.cid = self.ctok = np.zeros(0, dtype=np.int64)
            self.chunks_match = True
        self.crow = row_index(self.ids, self.cid)
        self.seg = np.zeros(len(self.pos), dtype=_IDX)
        self.cseg = np.zeros(len(self.cpos), dtype=_IDX)

    def matches(self, trace: pd.DataFrame, ids: np.ndarray) -> bool:
        """It was read from ``trace`` (the same object) with these instance ids."""
        return self.source is trace and len(self.ids) == len(ids) and bool((self.ids == ids).all())

    def row_of(self, values: np.ndarray) -> np.ndarray:
        """Instance rows of request ids (``-1`` for an unknown id)."""
        return row_index(self.ids, np.asarray(values, dtype=np.int64))

    def set_evictions(
        self, ev_row: np.ndarray, ev_iteration: np.ndarray, ev_prefilled=None
    ) -> None:
        """Number the segments: per element, the evictions of its request up to its iteration.

        ``ev_prefilled`` (per eviction, > 0 when the request was evicted while its prompt was
        being chunked in): those segments end without a first token (``cut``). The segment
        arrays are new ones: a shallow copy of a flat trace numbers its own."""
        self.seg = np.zeros(len(self.pos), dtype=_IDX)
        self.cseg = np.zeros(len(self.cpos), dtype=_IDX)
        self.cut = np.zeros(0, dtype=np.int64)
        if len(ev_row) == 0:
            return
        K = int(max(self.iteration.max(initial=0), ev_iteration.max())) + 2
        keys = np.sort(ev_row.astype(np.int64) * K + ev_iteration)
        if ev_prefilled is not None and (np.asarray(ev_prefilled) > 0).any():
            o = np.lexsort((ev_iteration, ev_row))
            rows = ev_row[o].astype(np.int64)
            _, rank = groups(rows)  # the m-th eviction ends segment m (0-based)
            p = np.asarray(ev_prefilled)[o] > 0
            self.cut_mul = len(ev_row) + 1  # more than any request's segments
            self.cut = np.sort(rows[p] * self.cut_mul + rank[p])
        evicted = np.zeros(self.n, dtype=bool)
        evicted[ev_row] = True
        for row, pos, seg in ((self.row, self.pos, self.seg), (self.crow, self.cpos, self.cseg)):
            m = np.flatnonzero(evicted[row])
            r = row[m].astype(np.int64)
            k = r * K + self.iteration[pos[m]]
            seg[m] = np.searchsorted(keys, k, "right") - np.searchsorted(keys, r * K, "left")

    def first_token_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, pos, seg) of every element that emits a request's first token: each
        prefill, and the last chunk of each (request, segment) (its prompt completes)."""
        pre = ~self.dec
        if len(self.cpos):
            o = np.lexsort((self.cpos, self.cseg, self.crow))
            r, s = self.crow[o], self.cseg[o]
            last = np.ones(len(o), dtype=bool)
            last[:-1] = (r[1:] != r[:-1]) | (s[1:] != s[:-1])
            o = o[last]
            cut = getattr(self, "cut", None)
            if cut is not None and len(cut):  # segments evicted before their prompt completed
                key = self.crow[o].astype(np.int64) * self.cut_mul + self.cseg[o]
                o = o[~np.isin(key, cut)]
            cr, cp, cs = self.crow[o], self.cpos[o], self.cseg[o]
        else:
            cr = cp = cs = np.zeros(0, dtype=_IDX)
        return (
            np.concatenate([self.row[pre], cr]),
            np.concatenate([self.pos[pre], cp]),
            np.concatenate([self.seg[pre], cs]),
        )

    def first_start_pos(self) -> np.ndarray:
        """Per instance row: the first trace row that processes its prompt (``nrows`` if none)."""
        pre = ~self.dec
        out = min_at(self.n, self.row[pre], self.pos[pre], self.nrows)
        np.minimum.at(out, self.crow, self.cpos)
        return out
