"""What a router sees: read-only views of the cluster and the requests, and the router protocol.

The engine asks a router when requests arrive (``on_arrival``) and, for a router that
holds requests in a cluster queue (``holds = True``: late binding), at every client's
iteration boundary (``on_boundary``). A router answers with ``(row, client)`` pairs to
dispatch now; rows it does not return stay in its cluster queue. It sees a read-only
``ClusterView`` of every client and a ``RequestView`` of the requests that have
arrived: prompt lengths, predicted output lengths and arrival times, never the true
output lengths. The engine refuses a dispatch to a client that cannot hold the request
alone (``ClusterView.fits``). The routers themselves live in ``policies/``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np

from hybridsched.engine.admission import Admission
from hybridsched.workloads.prefixes import BlockKeys, prompt_segments

REFERENCE_CONTEXT_TOKENS = 1024  # context at which a client's speed is measured


class RequestView:
    """What a router may know of a request: prompt, predicted output, arrival. Not ``o_i``.

    ``prompt_keys(i)``: the ids of the full ``block_size``-token blocks of its prompt
    (``workloads/prefixes.py``; equal ids, equal prompt up to that block's end), empty when
    the workload does not say which prompts share prefixes.
    """

    def __init__(self, instance, block_size: int = 16):
        self.prompt = instance.prompt
        self.predicted = instance.predicted
        self.arrival = instance.arrival
        self.request_id = instance.requests["request_id"].to_numpy()
        self.block_size = block_size
        self._requests = instance.requests
        self._keys = None

    def prompt_keys(self, i: int) -> list[int]:
        if self._keys is None:
            req = self._requests
            segs = prompt_segments(req)
            self._keys = (
                BlockKeys(segs, req["request_id"].tolist(), [0] * len(req), self.block_size)
                if segs is not None
                else False
            )
        if not self._keys:
            return []
        return self._keys(i)[: int(self.prompt[i]) // self.block_size]


class ClusterView:
    """A read-only view of every client for routers (built on the engine's client states)."""

    def __init__(self, engines, admission: Admission):
        self._e = engines
        self._adm = admission
        self.num_clients = len(engines)
        self.kv_capacity = np.array([e.M for e in engines], dtype=np.int64)
        self.max_batch = np.array([e.st.max_batch for e in engines], dtype=np.int64)
        self.seconds_per_token = np.array([seconds_per_token(e.st) for e in engines])
        # What a request may take alone: whole blocks on demand (engine/admission.py).
        self._unit = admission.unit
        self._cap = np.array([admission.capacity(int(m)) for m in self.kv_capacity])
        self._M = self._cap.tolist()

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

    def outstanding_tokens_all(self) -> list[int]:
        """Every client's predicted outstanding tokens, by client index."""
        return [e.st.outstanding_tokens for e in self._e]

    def any_queue_empty(self) -> bool:
        """Whether some client has nothing waiting (queue and undelivered dispatches)."""
        return any(not e.st.queue and not e.inbox for e in self._e)

    def latency(self, j: int):
        """Client ``j``'s latency model."""
        return self._e[j].st.latency

    def outstanding_s(self, j: int) -> float:
        return self._e[j].st.outstanding_tokens * float(self.seconds_per_token[j])

    def fits_matrix(self, prompt: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """``fits`` for many requests at once: an (m, J) boolean array."""
        b = self._unit
        need = -(-(np.asarray(prompt) + np.asarray(predicted)) // b) * b
        return need[:, None] <= self._cap[None, :]

    def fits(self, prompt: int, predicted: int, j: int) -> bool:
        """Whether a request, by its predicted length, can run alone on client ``j``
        (``Admission.fits_alone``: the watermark never blocks an empty client)."""
        b = self._unit
        return -(-(int(prompt) + int(predicted)) // b) * b <= self._M[j]


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
