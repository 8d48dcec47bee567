"""Routers: which client serves an arrived request, and when (docs/model.md section 11).

The engine asks a router when requests arrive (``on_arrival``) and, for a router that
holds requests in a cluster queue (``holds = True``: late binding), at every client's
iteration boundary (``on_boundary``). A router answers with ``(row, client)`` pairs to
dispatch now; rows it does not return stay in its cluster queue. It sees a read-only
``ClusterView`` of every client and a ``RequestView`` of the requests that have
arrived: prompt lengths, predicted output lengths and arrival times, never the true
output lengths. The engine refuses a dispatch to a client that cannot hold the request
alone (``ClusterView.fits``).

=================  ======================================================================
``static``         a plan computed up front (the offline stage; the paper's setting)
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

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from hybridsched.engine.admission import Admission

REFERENCE_CONTEXT_TOKENS = 1024  # context at which a client's speed is measured


class RequestView:
    """What a router may know of a request: prompt, predicted output, arrival. Not ``o_i``."""

    def __init__(self, instance):
        self.prompt = instance.prompt
        self.predicted = instance.predicted
        self.arrival = instance.arrival
        self.request_id = instance.requests["request_id"].to_numpy()


class ClusterView:
    """A read-only view of every client for routers (built on the engine's client states)."""

    def __init__(self, engines, admission: Admission):
        self._e = engines
        self._adm = admission
        self.num_clients = len(engines)
        self.kv_capacity = np.array([e.M for e in engines], dtype=np.int64)
        self.max_batch = np.array([e.st.max_batch for e in engines], dtype=np.int64)
        self.seconds_per_token = np.array([seconds_per_token(e.st) for e in engines])
        self._kv_limit = np.array([admission.kv_limit(int(m)) for m in self.kv_capacity])
        self._M, self._lim = self.kv_capacity.tolist(), self._kv_limit.tolist()
        self._fast = admission.name in ("reservation", "on-demand")
        self._free = not admission.on_demand

    def queue_len(self, j: int) -> int:
        e = self._e[j]
        return len(e.st.queue) + len(e.inbox)

    def running(self, j: int) -> int:
        return len(self._e[j].st.running) + len(self._e[j].st.prefilling)

    def kv_used(self, j: int) -> int:
        e = self._e[j]
        return e.context_sum + e.prefilled_sum

    def free_kv(self, j: int) -> int:
        return int(self.kv_capacity[j]) - self.kv_used(j)

    def idle(self, j: int) -> bool:
        return self._e[j].st.idle and not self._e[j].inbox

    def outstanding_tokens(self, j: int) -> int:
        return self._e[j].st.outstanding_tokens

    def outstanding_s(self, j: int) -> float:
        return self._e[j].st.outstanding_tokens * float(self.seconds_per_token[j])

    def fits_matrix(self, prompt: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """``fits`` for many requests at once: an (m, J) boolean array."""
        M = self.kv_capacity[None, :]
        need = (np.asarray(prompt) + np.asarray(predicted))[:, None]
        ok = need <= M
        if self._adm.on_demand:
            ok &= (np.asarray(prompt)[:, None] + 1) <= self._kv_limit[None, :]
        return ok

    def fits(self, prompt: int, predicted: int, j: int) -> bool:
        """Whether a request, by its predicted length, can run alone on client ``j``."""
        p = int(prompt)
        if self._fast:  # Admission.fits_alone of the two shipped modes, on cached limits
            return p + int(predicted) <= self._M[j] and (self._free or p + 1 <= self._lim[j])
        return self._adm.fits_alone(p, int(predicted), int(self.kv_capacity[j]))


def seconds_per_token(st) -> float:
    """A client's decode time per token at a full batch of ``REFERENCE_CONTEXT_TOKENS`` contexts."""
    B = st.max_batch
    return float(st.latency.decode_time(B, B * REFERENCE_CONTEXT_TOKENS)) / B


class Router(Protocol):
    """Maps arrived requests to clients; see the module docstring."""

    name: str
    holds: bool

    def start(self, requests: RequestView, view: ClusterView) -> None: ...

    def on_arrival(self, t: float, rows: list[int]) -> Iterable[tuple[int, int]]: ...

    def on_boundary(self, t: float, client: int) -> Iterable[tuple[int, int]]: ...

    def log(self) -> list[dict]: ...


class _Immediate:
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
class StaticRouter(_Immediate):
    """A plan computed up front: row ``i`` goes to ``assignment[i]``."""

    assignment: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    name: str = "static"

    def choose(self, i: int) -> int:
        return int(self.assignment[i])


@dataclass
class RoundRobin(_Immediate):
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
class LeastWork(_Immediate):
    """Least predicted outstanding work (seconds), queue included; ties to the lower index."""

    name: str = "least-work"

    def choose(self, i: int) -> int:
        v = self.view
        return min(self._fitting(i), key=lambda j: (v.outstanding_s(j), j))


@dataclass
class LeastKV(_Immediate):
    """Most free KV memory; ties to less outstanding work, then the lower index."""

    name: str = "least-kv"

    def choose(self, i: int) -> int:
        v = self.view
        return min(self._fitting(i), key=lambda j: (-v.free_kv(j), v.outstanding_s(j), j))


@dataclass
class PowerOfTwo(_Immediate):
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


ROUTERS = ("static", "round-robin", "least-work", "least-kv", "power-of-two", "rolling-mmbpp")
