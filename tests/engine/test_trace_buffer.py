"""The engine's trace buffers become the trace frame: columns, types, order, end times."""

from __future__ import annotations

import numpy as np

from hybridsched.engine.trace_buffer import DECODE, MIXED, PREFILL, TraceBuffer, trace_frame
from hybridsched.trace.schema import TRACE_COLUMNS


def test_empty_trace_has_every_column_and_type():
    tr = trace_frame([TraceBuffer(0), TraceBuffer(1)], "r")
    assert list(tr.columns) == TRACE_COLUMNS and len(tr) == 0
    assert tr["client"].dtype == np.int64 and tr["kv_used_tokens"].dtype == np.int64
    assert tr["start_s"].dtype == float and tr.attrs["rule"] == "r"


def test_rows_in_client_then_iteration_order():
    a, b = TraceBuffer(3), TraceBuffer(1)
    a.add(PREFILL, 0.1, 0.2, 2, 2, 30, 0, 40, 30, (7, 8), (), ())
    a.add(DECODE, 0.1 + 0.2, 0.05, 2, 2, 0, 32, 40, 32, (7, 8), (), ())
    b.add(MIXED, 5.0, 0.3, 3, 3, 9, 4, 12, 13, (2,), (5, 6), (4, 5))
    tr = trace_frame([a, b], "r")
    assert tr["client"].tolist() == [3, 3, 1]
    assert tr["iteration"].tolist() == [0, 1, 0]
    assert tr["kind"].tolist() == ["prefill", "decode", "mixed"]
    assert tr["end_s"].tolist() == [0.1 + 0.2, (0.1 + 0.2) + 0.05, 5.0 + 0.3]  # the engine's sum
    assert tr["request_ids"].tolist() == [(7, 8), (7, 8), (2,)]
    assert tr["chunk_tokens"].tolist() == [(), (), (4, 5)]
    assert tr.loc[2, ["num_requests", "prefill_tokens", "context_tokens"]].tolist() == [3, 9, 4]
    assert tr.loc[1, ["kv_reserved_tokens", "kv_used_tokens"]].tolist() == [40, 32]
