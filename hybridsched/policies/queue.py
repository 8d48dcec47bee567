"""The queue's order and its head: sort keys, and how many head requests fit a limit.

Every rule takes its queue order from a sort key (``SORT_KEYS``), applied once; the
engine breaks ties by row (arrival order)."""

from __future__ import annotations

import bisect
from itertools import accumulate

import numpy as np

from hybridsched.engine.state import ClientState
from hybridsched.instance import Instance

SORT_KEYS = ("fcfs", "longest", "shortest", "prompt", "random")


def queue_key(instance: Instance, sort: str, seed: int = 0) -> np.ndarray:
    """One key per request, smaller first; the simulator breaks ties by row (arrival order).

    ``longest`` (the default of the hybrid) is LPT on the client's slots: predicted output
    longest first, so the client's tail holds short requests.
    """
    if sort == "fcfs":
        return instance.arrival.astype(float)
    if sort == "longest":
        return -instance.predicted.astype(float)
    if sort == "shortest":
        return instance.predicted.astype(float)
    if sort == "prompt":
        return -instance.prompt.astype(float)
    if sort == "random":
        return np.random.default_rng(seed).permutation(instance.num_requests).astype(float)
    raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}, got {sort!r}")


class QueueHead:
    """Prefix sums over the head of the queue: how many requests fit a slot, memory and token limit."""

    __slots__ = ("rows", "cum_s", "cum_s2", "cum_res", "k_budget")

    def __init__(self, st: ClientState, limit: int):
        rows = st.queue[:limit]
        p, r = st.prompt, st.charge
        self.rows = rows
        self.cum_s = list(accumulate(p[i] for i in rows))
        self.cum_s2 = list(accumulate(p[i] * p[i] for i in rows))
        self.cum_res = list(accumulate(r[i] for i in rows))
        # The budget caps tokens per prefill, but one oversized prompt may run alone.
        self.k_budget = max(1, bisect.bisect_right(self.cum_s, st.prefill_budget_tokens))

    def size(self, slots: int, kv_free: int) -> int:
        """The largest head (no skipping) that fits ``slots`` and ``kv_free`` admission tokens."""
        return min(slots, self.k_budget, bisect.bisect_right(self.cum_res, kv_free))
