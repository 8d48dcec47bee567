"""The global clock: arrivals, routing and every client's iterations, in time order.

``run(instance, router, rule, admission)`` keeps one event heap keyed by each busy
client's next iteration boundary, and walks the arrivals in time order beside it
(docs/model.md section 11). At a time ``t`` the arrivals with ``r_i <= t`` come first:
the router maps them to clients (or holds them); then the client whose boundary is
earliest runs its next iteration (ties: the lower client index). A router that holds
requests is asked again at every boundary and whenever a client runs dry. An idle client
wakes when a request is dispatched to it.

With every arrival at 0, a static router and reservation admission, each client's
iterations are exactly those of the paper's per-client loop (sections 2 and 7).
"""

from __future__ import annotations

import bisect
import gc
import heapq
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hybridsched.engine.admission import Admission, parse_admission
from hybridsched.engine.client import ClientEngine
from hybridsched.engine.request_state import Shared
from hybridsched.engine.schema import PolicyError
from hybridsched.engine.state import OnlineRule
from hybridsched.engine.trace_buffer import trace_frame
from hybridsched.engine.views import ClusterView, RequestView, Router
from hybridsched.trace.schema import EVICTION_COLUMNS, HIT_COLUMNS


@dataclass
class EngineResult:
    """A run: the iteration trace, the evictions, each request's dispatch, the router's log."""

    trace: pd.DataFrame
    evictions: pd.DataFrame
    dispatch_client: np.ndarray
    dispatch_s: np.ndarray
    router: str
    admission: str
    router_log: list = field(default_factory=list)
    # Preempted while its last token was in flight (asynchronous scheduling): no recompute,
    # so not in ``evictions``; (client, iteration, request id) each.
    inflight_preempted: list = field(default_factory=list)
    # Admissions that found cached prefix blocks (``HIT_COLUMNS``); empty without a cache.
    hits: pd.DataFrame = field(default_factory=lambda: hit_frame([]))


class _Cluster:
    """The clients, the heap of their next boundaries and the dispatch records."""

    def __init__(self, engines: list[ClientEngine], n: int):
        self.engines = engines
        self.heap: list[tuple[float, int]] = []
        self.in_heap = [False] * len(engines)
        self.client = np.full(n, -1, dtype=np.int64)
        self.when = np.full(n, np.nan)

    def dispatch(self, pairs, t: float, view: ClusterView, req: RequestView, name: str) -> None:
        J = len(self.engines)
        for i, j in pairs:
            if not 0 <= j < J:
                raise PolicyError(
                    f"router {name!r}: client {j} for row {i}; clients are 0..{J - 1}"
                )
            if self.client[i] >= 0:
                raise PolicyError(f"router {name!r}: row {i} dispatched twice")
            if not view.fits(req.prompt[i], req.predicted[i], j):
                raise PolicyError(
                    f"router {name!r}: request {req.request_id[i]} (row {i}) sent to client {j}, "
                    f"which cannot hold it alone ({int(view.kv_capacity[j])} KV tokens)"
                )
            self.client[i] = j
            self.when[i] = t
            self.engines[j].receive(i)
            if not self.in_heap[j]:
                self.in_heap[j] = True
                heapq.heappush(self.heap, (t, j))


def _queue_ranks(instance, rule: OnlineRule) -> list[int]:
    keys = np.asarray(rule.queue_key(instance), dtype=float)
    if keys.shape != (instance.num_requests,):
        raise PolicyError(f"rule {rule.name!r}: queue_key must give one key per request")
    order = np.lexsort((np.arange(instance.num_requests), keys))  # key, then row
    return np.argsort(order).tolist()


def run(
    instance,
    router: Router,
    rule: OnlineRule,
    admission: str | Admission = "reservation",
    progress=None,
):
    """Simulate ``instance`` under ``router``, ``rule`` and ``admission``; an ``EngineResult``.

    ``progress(arrived, total)``, when given, is called as the arrivals pass each 0.5% of the
    requests (and once at the end): for a progress bar.

    The cyclic garbage collector is paused during the run: the engine makes millions of
    small tuples (trace rows) and no reference cycles, and a collector pass over a heap
    that only grows costs a third of a large run's time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(instance, router, rule, admission, progress)
    finally:
        if was_enabled:
            gc.enable()


def _run(instance, router: Router, rule: OnlineRule, admission: str | Admission, progress=None):
    adm = parse_admission(admission)
    n = instance.num_requests
    check_blocks(instance, adm)
    sh = Shared(instance, _queue_ranks(instance, rule), adm)
    engines = [
        ClientEngine(j, c, instance, sh, rule.start(instance, j), adm, rule.name)
        for j, c in enumerate(instance.clients)
    ]
    view = ClusterView(engines, adm)
    req = RequestView(instance, adm.block_size)
    router.start(req, view)
    cl = _Cluster(engines, n)
    arrival = instance.arrival
    by_arrival = np.lexsort((np.arange(n), arrival))
    times = arrival[by_arrival].astype(float).tolist()  # Python floats: the loop compares them
    order = by_arrival.tolist()
    ap, inf, heap, name = 0, float("inf"), cl.heap, router.name
    steps, holds, dispatch = [e.step for e in engines], router.holds, cl.dispatch
    pop, push, in_heap = heapq.heappop, heapq.heappush, cl.in_heap
    step = max(1, n // 200)
    tick = step if progress is not None else n + 1  # the next arrival count to report
    while True:
        ta = times[ap] if ap < n else inf
        tc = heap[0][0] if heap else inf
        if ta == inf and tc == inf:
            break
        if ta <= tc:
            hi = bisect.bisect_right(times, ta, ap)
            rows = order[ap:hi]
            ap = hi
            if ap >= tick:
                progress(ap, n)
                tick = ap + step
            pairs = router.on_arrival(ta, rows)
            if pairs:
                dispatch(pairs, ta, view, req, name)
            continue
        t, j = pop(heap)
        if holds:
            pairs = router.on_boundary(t, j)
            if pairs:
                dispatch(pairs, t, view, req, name)
        nxt = steps[j](t)
        if nxt is None:
            in_heap[j] = False
            if holds:  # the client ran dry: the router may send it work now
                pairs = router.on_boundary(t, j)
                if pairs:
                    dispatch(pairs, t, view, req, name)
        else:
            push(heap, (nxt, j))
    if progress is not None:
        progress(n, n)
    lost = np.flatnonzero(cl.client < 0)
    if len(lost):
        raise PolicyError(
            f"router {name!r} never dispatched {len(lost)} request(s), first row {int(lost[0])}"
        )
    return EngineResult(
        trace_frame([e.buf for e in engines], rule.name),
        _evictions(engines),
        cl.client,
        cl.when,
        name,
        adm.name,
        router.log(),
        [x for e in engines for x in e.inflight_preempted],
        hit_frame([x for e in engines for x in e.hits]),
    )


def check_blocks(instance, adm: Admission) -> None:
    """On demand: every request fits some client alone in whole blocks (else a ValueError
    naming its row, before any work); the token check is the instance's own."""
    if not adm.on_demand or adm.block_size == 1:
        return
    need = np.maximum(instance.output, instance.predicted) + instance.prompt
    b = adm.block_size
    slots = -(-need // b) * b
    cap = max(adm.capacity(c.kv_capacity_tokens) for c in instance.clients)
    bad = np.flatnonzero(slots > cap)
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"request {instance.requests['request_id'].iloc[i]} (row {i}): prompt "
            f"{int(instance.prompt[i])} + output {int(need[i] - instance.prompt[i])} tokens "
            f"take {int(slots[i] // b)} KV blocks of {b} tokens, more than any client holds "
            f"({cap // b})"
        )


def hit_frame(rows: list) -> pd.DataFrame:
    """The prefix-cache hits table (``HIT_COLUMNS``) from ``(client, iteration, id, tokens)``."""
    return pd.DataFrame(rows, columns=HIT_COLUMNS).astype(np.int64)


def _evictions(engines: list[ClientEngine]) -> pd.DataFrame:
    rows = [r for e in engines for r in e.evictions]
    ev = pd.DataFrame(rows, columns=EVICTION_COLUMNS)
    return ev.astype(
        {
            "client": np.int64,
            "iteration": np.int64,
            "time_s": float,
            "request_id": np.int64,
            "generated_tokens": np.int64,
            "prefilled_tokens": np.int64,
        }
    )
