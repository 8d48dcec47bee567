"""The paper's online rule: prefill or decode, priced with a Lagrange multiplier on idle slots.

A prefill stalls the running batch, so pay for it only when its cost per filled slot now
is no larger than after waiting for more departures: compare
``rho(m) = (sum_{l<m} lambda * idle_l + waste_p(P_m)) / |P_m|`` at ``m = 0`` and at the
predicted departure points up to ``H``; ties prefill (docs/model.md section 7)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridsched.engine.schema import DECODE, Action
from hybridsched.engine.state import ClientState, Decider
from hybridsched.instance import Instance
from hybridsched.latency.scalar import scalar_prefill_time
from hybridsched.policies.queue import QueueHead, queue_key


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

        def waste(head: QueueHead, k: int) -> float:
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
                k = QueueHead(st, B).size(B, kv_free)
                return Action("prefill", tuple(queue[:k]))
            if e0 == 0:
                return DECODE
            head = QueueHead(st, B)
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
