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

from hybridsched.instance import Instance
from hybridsched.trace.check import check_trace
from hybridsched.trace.csv_writer import write_csv
from hybridsched.trace.errors import TraceError
from hybridsched.trace.flat import in_order

__all__ = [
    "TraceError",
    "check_run",
    "check_trace",
    "first_tokens",
    "per_chunk",
    "per_request",
    "read_trace",
    "write_trace",
]


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


def first_tokens(trace: pd.DataFrame, evictions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per request: the rows that emit a first token (its prefill, or the last chunk of its
    prompt), one more per eviction (the recompute's). Chunks are split at the request's
    ``evictions``: an evicted request's earlier chunks completed an earlier prompt."""
    ex = per_request(trace)
    pre = ex[ex["kind"] == "prefill"].drop(columns="kind")
    ch = per_chunk(trace).sort_values(["client", "iteration"], kind="stable")
    ev = evictions if evictions is not None else pd.DataFrame(columns=["request_id", "iteration"])
    ch = ch.assign(seg=_segments(ch, ev))
    last = ch.groupby(["request_id", "seg"]).tail(1).drop(columns=["tokens", "seg"])
    return pd.concat([pre, last], ignore_index=True).set_index("request_id")


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


_TUPLE_COLUMNS = ("request_ids", "chunk_ids", "chunk_tokens")


def write_trace(
    trace: pd.DataFrame, path: str | Path, request_ids_flat: np.ndarray | None = None
) -> None:
    """CSV with the tuple columns (``request_ids``, ``chunk_ids``, ``chunk_tokens``) space-separated.

    The bytes are those of ``DataFrame.to_csv`` (floats as numpy prints them, the tuple
    columns joined), written through pyarrow when every column allows it (``csv_writer``).
    ``request_ids_flat``: ``request_ids`` one after the other in row order (the ``rid``
    of the trace's ``FlatTrace``, as ``RunResult.flat`` keeps it), used when the rows are
    in ``(client, iteration)`` order.
    """
    flat = None
    if request_ids_flat is not None and in_order(trace):
        flat = {"request_ids": request_ids_flat}
    write_csv(trace, path, _TUPLE_COLUMNS, flat)


def read_trace(path: str | Path) -> pd.DataFrame:
    tr = pd.read_csv(path, keep_default_na=False)
    for c in _TUPLE_COLUMNS:
        if c in tr.columns:
            tr[c] = [tuple(int(x) for x in str(r).split()) for r in tr[c]]
    return tr


def check_run(result, instance: Instance, assignment=None, rtol: float = 1e-9, flat=None) -> None:
    """``check_trace`` on an ``EngineResult`` (or a ``RunResult``): the trace with its
    evictions and admission mode; ``flat``: the trace's ``FlatTrace`` (``check_trace``)."""
    check_trace(
        result.trace,
        instance,
        assignment=assignment,
        rtol=rtol,
        evictions=result.evictions,
        admission=result.admission,
        flat=flat,
        hits=getattr(result, "hits", None),
    )
