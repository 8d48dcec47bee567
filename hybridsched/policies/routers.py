"""Routers: which client serves an arrived request, and when (docs/model.md section 11).

The engine asks a router (``engine/views.py``: the ``Router`` protocol, with the read-only
``ClusterView`` and ``RequestView`` it sees) when requests arrive and, for a router that
holds requests, at every client's iteration boundary.

=================  ======================================================================
``static``         a plan computed up front (``static.py``: the offline stage)
``round-robin``    the ``k``-th arrival to client ``k mod J`` (skipping clients too small)
``least-work``     least predicted outstanding work, queue included
``least-kv``       most free KV memory
``power-of-two``   two seeded random clients, the one with less outstanding work
``rolling-mmbpp``  the paper's MMBPP made online (``rolling.py``)
``vllm-dp``        vLLM's data-parallel balancer: least ``4 x waiting + running``
``prefix-affinity`` the client whose routed prompts share the longest prefix with this one,
                   balanced against load (as llm-d's prefix-cache, queue and KV-utilization
                   scorers, equal weights)
=================  ======================================================================

Outstanding work is in seconds: the client's predicted outstanding tokens (prompt tokens
still to process plus predicted output tokens still to emit) times its time per token
at a full batch (``seconds_per_token``), so heterogeneous clients compare fairly.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from hybridsched.engine.views import ClusterView, RequestView


class Immediate:
    """A router that dispatches every request at its arrival (no cluster queue)."""

    name = "immediate"
    holds = False

    def start(self, requests: RequestView, view: ClusterView) -> None:
        self.req, self.view = requests, view

    def on_boundary(self, t: float, client: int):
        return ()

    def log(self) -> list[dict]:
        return []

    def _fitting(self, i: int) -> list[int]:
        p, q, v = self.req.prompt[i], self.req.predicted[i], self.view
        ok = [j for j in range(v.num_clients) if v.fits(p, q, j)]
        if not ok:
            raise ValueError(
                f"request {self.req.request_id[i]} (row {i}): prompt {int(p)} + predicted output "
                f"{int(q)} tokens fits no client's KV memory (largest {int(v.kv_capacity.max())})"
            )
        return ok

    def on_arrival(self, t: float, rows: list[int]):
        return [(i, self.choose(i)) for i in rows]

    def choose(self, i: int) -> int:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass
class RoundRobin(Immediate):
    """The ``k``-th arrival to client ``k mod J``; a client too small is skipped."""

    name: str = "round-robin"
    _next: int = 0

    def choose(self, i: int) -> int:
        J = self.view.num_clients
        p, q = self.req.prompt[i], self.req.predicted[i]
        for step in range(J):
            j = (self._next + step) % J
            if self.view.fits(p, q, j):
                self._next = j + 1
                return j
        return self._fitting(i)[0]  # raises: fits nowhere


@dataclass
class LeastWork(Immediate):
    """Least predicted outstanding work (seconds), queue included; ties to the lower index."""

    name: str = "least-work"

    def choose(self, i: int) -> int:
        v = self.view
        return min(self._fitting(i), key=lambda j: (v.outstanding_s(j), j))


@dataclass
class LeastKV(Immediate):
    """Most free KV memory; ties to less outstanding work, then the lower index."""

    name: str = "least-kv"

    def choose(self, i: int) -> int:
        v = self.view
        return min(self._fitting(i), key=lambda j: (-v.free_kv(j), v.outstanding_s(j), j))


@dataclass
class PowerOfTwo(Immediate):
    """Two seeded random clients (of those that fit); the one with less outstanding work."""

    seed: int = 0
    name: str = "power-of-two"

    def start(self, requests: RequestView, view: ClusterView) -> None:
        super().start(requests, view)
        self._rng = np.random.default_rng(self.seed)

    def choose(self, i: int) -> int:
        ok = self._fitting(i)
        if len(ok) == 1:
            return ok[0]
        a, b = self._rng.choice(len(ok), size=2, replace=False)
        ja, jb = ok[int(a)], ok[int(b)]
        v = self.view
        return min((ja, jb), key=lambda j: (v.outstanding_s(j), j))


@dataclass
class VllmDP(Immediate):
    """vLLM's data-parallel load balancer (``DPLBAsyncMPClient``): the engine with the least
    ``4 x waiting + running`` requests; ties to the lower index."""

    name: str = "vllm-dp"

    def choose(self, i: int) -> int:
        v = self.view
        return min(self._fitting(i), key=lambda j: (4 * v.queue_len(j) + v.running(j), j))


@dataclass
class PrefixAffinity(Immediate):
    """Highest score over the clients that fit: ``w_p x prefix + w_q x queue + w_k x kv``.

    ``prefix``: the share of the request's full prompt blocks that lead the prompts this
    router sent to the client before (its own index of routed block ids, least recently
    routed dropped beyond the client's KV blocks: what the client's cache can hold);
    ``queue``: 1 for the client with the fewest requests waiting or running, 0 for the
    most (min-max scaled); ``kv``: the client's free share of KV memory. llm-d's
    scheduler scores the same three signals, by default with equal weights.
    """

    weights: tuple[float, float, float] = (2.0, 2.0, 2.0)
    name: str = "prefix-affinity"

    def start(self, requests: RequestView, view: ClusterView) -> None:
        super().start(requests, view)
        J = view.num_clients
        self._index: list[OrderedDict] = [OrderedDict() for _ in range(J)]
        self._room = [max(1, int(view.kv_capacity[j]) // requests.block_size) for j in range(J)]

    def choose(self, i: int) -> int:
        ok = self._fitting(i)
        keys = self.req.prompt_keys(i)
        v, (wp, wq, wk) = self.view, self.weights
        load = [v.queue_len(j) + v.running(j) for j in ok]
        lo, hi = min(load), max(load)
        best, pick = -np.inf, ok[0]
        for j, q in zip(ok, load, strict=True):
            idx = self._index[j]
            m = next((k for k, key in enumerate(keys) if key not in idx), len(keys))
            prefix = m / len(keys) if keys else 0.0
            queue = 1.0 if hi == lo else (hi - q) / (hi - lo)
            kv = 1.0 - min(1.0, v.kv_used(j) / max(1, int(v.kv_capacity[j])))
            score = wp * prefix + wq * queue + wk * kv
            if score > best:
                best, pick = score, j
        self._remember(pick, keys)
        return pick

    def _remember(self, j: int, keys: list[int]) -> None:
        idx = self._index[j]
        for key in keys:
            idx[key] = None
            idx.move_to_end(key)
        while len(idx) > self._room[j]:
            idx.popitem(last=False)
