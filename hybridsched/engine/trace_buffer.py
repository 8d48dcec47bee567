"""A client's iteration trace as it is written: flat typed arrays, one entry per iteration.

The engine appends one iteration at a time (``add``); ``trace_frame`` turns the
buffers of all clients into the trace DataFrame (``schema.TRACE_COLUMNS``). Numbers go
into ``array.array`` buffers (raw machine values, contiguous, no Python object per
value), so a run of a million iterations leaves no million row tuples for the garbage
collector to walk and no transposition at the end; ``end_s`` is ``start_s +
duration_s`` computed by numpy, the same IEEE sum the engine's clock makes.
"""

from __future__ import annotations

from array import array
from itertools import chain

import numpy as np
import pandas as pd

from hybridsched.trace.schema import TRACE_COLUMNS

KINDS = ("prefill", "decode", "mixed")
PREFILL, DECODE, MIXED = 0, 1, 2
_INTS = (
    "num_requests",
    "num_running",
    "prefill_tokens",
    "context_tokens",
    "kv_reserved_tokens",
    "kv_used_tokens",
)
_NI = len(_INTS)


class TraceBuffer:
    """One client's iterations so far (module docstring)."""

    __slots__ = ("client", "kind", "times", "ints", "ids", "add")

    def __init__(self, client: int):
        self.client = client
        self.kind = array("b")
        self.times = array("d")  # start_s, duration_s of each iteration
        self.ints = array("q")  # _INTS of each iteration
        self.ids: list[tuple] = []  # request_ids, chunk_ids, chunk_tokens of each iteration
        kind, times, ints, ids = (
            self.kind.append,
            self.times.extend,
            self.ints.extend,
            self.ids.extend,
        )

        def add(k, start, dur, nreq, nrun, pt, ct, kv_reserved, kvu, rids, cids, ctok):
            kind(k)
            times((start, dur))
            ints((nreq, nrun, pt, ct, kv_reserved, kvu))
            ids((rids, cids, ctok))

        self.add = add

    def __len__(self) -> int:
        return len(self.kind)


def trace_frame(buffers: list[TraceBuffer], rule_name: str) -> pd.DataFrame:
    """The trace of every client, clients in order, each client's iterations in order."""
    lens = [len(b) for b in buffers]
    n = sum(lens)
    kinds = np.concatenate([np.frombuffer(b.kind, dtype=np.int8) for b in buffers] or [[]])
    times = np.concatenate([np.frombuffer(b.times, dtype=float) for b in buffers] or [[]])
    ints = np.concatenate([np.frombuffer(b.ints, dtype=np.int64) for b in buffers] or [[]])
    times, ints = times.reshape(n, 2), ints.astype(np.int64).reshape(n, _NI)
    data = {
        "client": np.repeat(np.array([b.client for b in buffers], dtype=np.int64), lens),
        "iteration": np.concatenate([np.arange(k, dtype=np.int64) for k in lens] or [[]]).astype(
            np.int64
        ),
        "kind": np.array(KINDS, dtype=object)[kinds.astype(np.intp)],
        "start_s": times[:, 0].copy(),
        "end_s": times[:, 0] + times[:, 1],
        "duration_s": times[:, 1].copy(),
    }
    for k, name in enumerate(_INTS):
        data[name] = ints[:, k].copy()
    for k, name in enumerate(("request_ids", "chunk_ids", "chunk_tokens")):
        col = chain.from_iterable(b.ids[k::3] for b in buffers)
        data[name] = np.fromiter(col, dtype=object, count=n)
    trace = pd.DataFrame({c: data[c] for c in TRACE_COLUMNS})
    trace.attrs["rule"] = rule_name
    return trace
