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
=================  ======================================================================

Outstanding work is in seconds: the client's predicted outstanding tokens (prompt tokens
still to process plus predicted output tokens still to emit) times its time per token
at a full batch (``seconds_per_token``), so heterogeneous clients compare fairly.
"""

from __future__ import annotations

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
