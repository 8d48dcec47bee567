"""The iteration trace's columns and the eviction table's: what every engine run produces.

The iteration trace is a DataFrame, one row per iteration (``TRACE_COLUMNS``):

=====================  ====================================================================
``client``             client index ``j``
``iteration``          index of the iteration on its client (0, 1, ...)
``kind``               ``"prefill"``, ``"decode"`` or ``"mixed"``
``start_s``/``end_s``  wall-clock interval; iterations of a client never overlap
``duration_s``         ``end_s - start_s``, from the latency model
``num_requests``       requests processed: ``|P|`` for a prefill, ``|D|`` for a decode,
                       ``|D| + |chunks|`` for a mixed row
``num_running``        slots held during the iteration
``prefill_tokens``     prompt tokens processed (a recomputed request counts ``s_i + g_i``)
``context_tokens``     ``sum_{i in D} c_i`` for a decode step (0 for a prefill)
``kv_reserved_tokens`` reservation admission: reservations ``sum (s_i + ô_i)`` of the
                       requests holding slots; on-demand admission: KV tokens held
``kv_used_tokens``     KV tokens held: contexts of ``D``, prefilled prompt parts, and the
                       prompts being prefilled
``request_ids``        tuple of the ``request_id`` values processed (``P`` or ``D``)
``chunk_ids``          mixed iterations: ids whose prompt chunk is processed (else empty)
``chunk_tokens``       mixed iterations: the chunk sizes, parallel to ``chunk_ids``
=====================  ====================================================================

Preemptions are a separate event table (``EVICTION_COLUMNS``), one row per eviction:
the client, the index of the iteration the eviction made room for (the request is out
before it starts), its start time, the request, the tokens it had generated, and the tokens
of its (re)prefill it had processed when evicted (0 for a request that was decoding; more
for one evicted while its prompt was being chunked in, which vLLM does too).

With a prefix cache, admissions that found cached blocks are a third table
(``HIT_COLUMNS``): the client, the iteration that admitted the request, the request and
the prompt tokens its cached blocks held (not computed: its first chunk starts there).
"""

from __future__ import annotations

TRACE_COLUMNS = [
    "client",
    "iteration",
    "kind",
    "start_s",
    "end_s",
    "duration_s",
    "num_requests",
    "num_running",
    "prefill_tokens",
    "context_tokens",
    "kv_reserved_tokens",
    "kv_used_tokens",
    "request_ids",
    "chunk_ids",
    "chunk_tokens",
]

EVICTION_COLUMNS = [
    "client",
    "iteration",
    "time_s",
    "request_id",
    "generated_tokens",
    "prefilled_tokens",
]

HIT_COLUMNS = ["client", "iteration", "request_id", "cached_tokens"]
