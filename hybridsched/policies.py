"""Online rules (what runs next on a client) and round-robin dispatch.

- ``PrefillFirst``: the vLLM-style baseline. Whenever a slot is free and a request
  waits, prefill the longest head of the queue that fits; otherwise decode.
- ``Lagrangian``: the paper's online rule (docs/model.md section 7). A prefill stalls
  the running batch, so pay for it only when its cost per filled slot now is no larger
  than after waiting for more departures: compare
  ``rho(m) = (sum_{l<m} lambda * idle_l + waste_p(P_m)) / |P_m|`` at ``m = 0`` and at the
  predicted departure points up to ``H``; ties prefill.
- ``ChunkedPrefill``: mixed iterations, a decode step plus prompt chunks within a token
  budget (an extension beyond the paper: the vLLM / Sarathi-Serve way to hide prefills).
- ``Scripted``: replays a fixed list of actions per client (the exact MIP's schedule).

Every rule takes its queue order from a sort key (``SORT_KEYS``), applied once.
Offline MMBPP dispatch needs a solver, so it lives in ``mmbpp.py`` and is wired in
``experiments.py``; this module imports no solver.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from hybridsched.engine import DECODE, Action, ClientState, Decider
from hybridsched.instance import Instance
from hybridsched.scalar_latency import scalar_prefill_time

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


def round_robin(instance: Instance) -> np.ndarray:
    """Client ``i mod |J|`` for the ``i``-th request in arrival order (the baseline's dispatch)."""
    order = np.lexsort((np.arange(instance.num_requests), instance.arrival))
    a = np.empty(instance.num_requests, dtype=np.int64)
    a[order] = np.arange(instance.num_requests) % instance.num_clients
    return a


class _Head:
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


@dataclass(frozen=True)
class PrefillFirst:
    """The baseline's online rule: prefill whenever a slot is free and the head fits."""

    sort: str = "fcfs"
    seed: int = 0
    name: str = "prefill-first"

    def queue_key(self, instance: Instance) -> np.ndarray:
        return queue_key(instance, self.sort, self.seed)

    def start(self, instance: Instance, client: int) -> Decider:
        def decide(st: ClientState) -> Action:
            e = st.max_batch - len(st.running)
            if st.queue and e > 0:
                k = _Head(st, e).size(e, st.kv_limit - st.kv_charged)
                if k > 0:
                    return Action("prefill", tuple(st.queue[:k]))
            return DECODE

        return decide


@dataclass(frozen=True)
class Lagrangian:
    """The paper's prefill-vs-decode rule, priced with a Lagrange multiplier on idle slots.

    Parameters
    ----------
    sort : queue order (``SORT_KEYS``).
    lambda_multiplier : scales the default ``lambda = t_decode(full batch) / B``.
    lambda_s : an absolute ``lambda`` (seconds per slot-step); overrides the default.
    horizon : ``H``, the longest wait considered (capped by the batch's longest remaining).
    min_prefill : a prefill of fewer requests is never worth it unless the batch is empty
        or the queue has no more.
    idle_price : ``"fillable"`` prices ``min(e_l, |Q|)`` idle slots, ``"literal"`` prices ``e_l``.
    """

    sort: str = "longest"
    lambda_multiplier: float = 1.0
    lambda_s: float | None = None
    horizon: int = 64
    min_prefill: int = 1
    idle_price: str = "fillable"
    seed: int = 0
    name: str = "lagrangian"

    def __post_init__(self) -> None:
        if self.idle_price not in ("fillable", "literal"):
            raise ValueError(f"idle_price must be 'fillable' or 'literal', got {self.idle_price!r}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.lambda_multiplier < 0 or (self.lambda_s is not None and self.lambda_s < 0):
            raise ValueError("lambda must be >= 0")
        if self.min_prefill < 1:
            raise ValueError(f"min_prefill must be >= 1, got {self.min_prefill}")

    def queue_key(self, instance: Instance) -> np.ndarray:
        return queue_key(instance, self.sort, self.seed)

    def multiplier(self, instance: Instance, client: int) -> float:
        """``lambda``: a full batch's time per slot-step, at the workload's mean context."""
        if self.lambda_s is not None:
            return float(self.lambda_s)
        c = instance.clients[client]
        mean_ctx = float(instance.prompt.mean() + instance.predicted.mean() / 2)
        B = c.max_batch
        return self.lambda_multiplier * float(c.latency.decode_time(B, B * mean_ctx)) / B

    def start(self, instance: Instance, client: int) -> Decider:
        lam = self.multiplier(instance, client)
        lat = instance.clients[client].latency
        phi_p = lat.prefill_floor_per_token()
        prefill_time = scalar_prefill_time(lat)
        H_cap, min_k, fillable = self.horizon, self.min_prefill, self.idle_price == "fillable"

        def waste(head: _Head, k: int) -> float:
            s = head.cum_s[k - 1]
            return prefill_time(s, head.cum_s2[k - 1]) - phi_p * s

        def decide(st: ClientState) -> Action:
            queue, running = st.queue, st.running
            if not queue:
                return DECODE
            B = st.max_batch
            e0 = B - len(running)
            kv_free = st.kv_limit - st.kv_charged
            nq = len(queue)
            if not running:
                k = _Head(st, B).size(B, kv_free)
                return Action("prefill", tuple(queue[:k]))
            if e0 == 0:
                return DECODE
            head = _Head(st, B)
            need = min(min_k, nq)  # a smaller prefill is priced at infinity
            k0 = head.size(e0, kv_free)
            if k0 < need:
                rho0 = float("inf")
            else:
                rho0 = waste(head, k0) / k0
            # Predicted departures, soonest first: a row leaves in max(1, pf - dc) steps
            # and frees its reservation (rows leaving at one step are taken together).
            pf, dc, res = st.predicted_finish, st.decode_count, st.reservation
            deps = sorted(running, key=pf.__getitem__)
            H = min(H_cap, max(1, pf[deps[-1]] - dc))
            best = float("inf")
            acc, prev, e, free, kmax = 0.0, 0, e0, kv_free, min(B, nq, head.k_budget)
            idx, nd = 0, len(deps)
            while idx < nd:
                d = max(1, pf[deps[idx]] - dc)
                if d > H:
                    break
                acc += lam * (min(e, nq) if fillable else e) * (d - prev)
                if acc / kmax > min(rho0, best):
                    break  # waste >= 0, so no later m can be cheaper
                while idx < nd and max(1, pf[deps[idx]] - dc) == d:
                    e += 1
                    free += res[deps[idx]]
                    idx += 1
                prev = d
                k = head.size(e, free)
                if k >= need:
                    r = (acc + waste(head, k)) / k
                    if r < best:
                        best = r
            if rho0 <= best and rho0 < float("inf"):
                return Action("prefill", tuple(queue[:k0]))
            return DECODE

        return decide


@dataclass(frozen=True)
class ChunkedPrefill:
    """Chunked prefill (vLLM / Sarathi-style mixed iterations), an extension beyond the paper.

    Every iteration decodes the whole running batch and spends the rest of a token
    budget (each decode token counts one) on prompt chunks: first the partly prefilled
    requests, oldest first, then new requests from the head of the queue while slots and
    reserved memory allow (no skipping). A small budget keeps iterations near the
    memory-bound decode time, so prompts ride along with the weight read.

    Parameters
    ----------
    sort : queue order (``SORT_KEYS``).
    token_budget : tokens per iteration (decode + prompt); default the instance's
        prefill budget (2048), the budget every shipped policy shares.
    """

    sort: str = "fcfs"
    token_budget: int | None = None
    seed: int = 0
    name: str = "chunked-prefill"

    def __post_init__(self) -> None:
        if self.token_budget is not None and self.token_budget < 1:
            raise ValueError(f"token_budget must be >= 1, got {self.token_budget}")

    def queue_key(self, instance: Instance) -> np.ndarray:
        return queue_key(instance, self.sort, self.seed)

    def start(self, instance: Instance, client: int) -> Decider:
        budget = min(
            self.token_budget or instance.prefill_budget_tokens, instance.prefill_budget_tokens
        )

        def decide(st: ClientState) -> Action:
            if not st.queue and not st.prefilling:
                return DECODE  # nothing to chunk: the loops below would find no row
            left = budget - len(st.running)
            rows: list[int] = []
            toks: list[int] = []
            pre, prompt = st.prefilled, st.prompt
            for i in st.prefilling:
                if left <= 0:
                    break
                x = min(prompt[i] - pre[i], left)
                rows.append(i)
                toks.append(x)
                left -= x
            slots = st.max_batch - len(st.running) - len(st.prefilling)
            kv_free = st.kv_limit - st.kv_charged
            charge = st.charge
            for i in st.queue:
                if left <= 0 or slots <= 0 or charge[i] > kv_free:
                    break
                x = min(prompt[i], left)
                rows.append(i)
                toks.append(x)
                left -= x
                slots -= 1
                kv_free -= charge[i]
            if not rows:
                return DECODE
            return Action("mixed", tuple(rows), tuple(toks))

        return decide


@dataclass(frozen=True)
class Scripted:
    """Replays fixed per-client action lists: ``("prefill", rows)`` or ``("decode", ())``."""

    actions: dict
    name: str = "scripted"

    def queue_key(self, instance: Instance) -> np.ndarray:
        return instance.arrival.astype(float)

    def start(self, instance: Instance, client: int) -> Decider:
        it = iter(self.actions.get(client, []))

        def decide(st: ClientState) -> Action:
            kind, rows = next(it, ("decode", ()))
            return Action(kind, tuple(int(r) for r in rows))

        return decide
