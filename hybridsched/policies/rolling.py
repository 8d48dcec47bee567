"""``rolling-mmbpp``: the paper's offline stage made online (docs/model.md section 11).

Arrived requests wait in a cluster queue. Every ``replan_s`` seconds, or as soon as a
client runs dry (its queue is empty), the router re-solves the MMBPP over the requests
waiting in the cluster queue, with the clients' committed predicted work as fixed
initial loads, and dispatches all of them by the plan. Sizes are the per-request work
floors of docs/model.md section 5 on the predicted lengths (memory side), per client.

The solver is passed in (``solve``): the engine never imports one. ``solve(sizes,
initial_loads, allowed, time_limit_s)`` returns ``(assignment, info)``; when it is
missing, fails, or the batch is small (fewer than ``min_solve`` requests, where LPT is
as good), the router uses LPT on the loads. Every replan is recorded (``log``): time,
requests, method, status, objective and wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hybridsched.bounds.floors import request_floors
from hybridsched.engine.views import ClusterView, RequestView
from hybridsched.offline.heuristics import lpt_assignment


def least_loaded_one(outs: list[int], col: list[float], ok: list[bool], uniform: bool, tokens: int):
    """One request onto the least loaded allowed client: ``(client, objective)``.

    Client ``j``'s load is its outstanding tokens ``x_j`` priced at the request's size per
    token, ``x_j * (col_j / tokens)``; the request goes to the first client with the least
    ``load_j + col_j`` among the allowed (``ok``), and the objective is the largest load
    after it (``heuristics.lpt_assignment`` on one row, the same floating-point operations). With
    ``uniform`` (every client allowed, one size ``c > 0``), ``x * (c / tokens)`` is strictly
    increasing in the integer ``x`` (distinct integers below 2**50 stay distinct after the
    product and the sum), so the first least ``x_j`` is the choice and the largest ``x_j``
    gives the other loads' maximum: one pass over the clients instead of three.
    """
    if uniform:
        c = col[0]
        k = c / tokens
        least = min(outs)
        return outs.index(least), max(max(outs) * k, least * k + c)
    loads = [x * (c / tokens) for x, c in zip(outs, col, strict=True)]
    cand = [x + c for x, c in zip(loads, col, strict=True)]
    if not all(ok):
        inf = float("inf")
        cand = [x if a else inf for x, a in zip(cand, ok, strict=True)]
    j = cand.index(min(cand))  # the first least, as argmin
    loads[j] += col[j]
    return j, max(loads)


@dataclass
class RollingMMBPP:
    """Re-solve the MMBPP over the cluster queue (module docstring)."""

    solve: Callable | None = None
    replan_s: float = 1.0
    time_limit_s: float = 1.0
    min_solve: int = 16
    name: str = "rolling-mmbpp"
    holds: bool = True
    _log: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if not (self.replan_s > 0 and np.isfinite(self.replan_s)):
            raise ValueError(f"replan_s must be a positive number, got {self.replan_s!r}")

    def start(self, requests: RequestView, view: ClusterView) -> None:
        self.req, self.view = requests, view
        self.held: list[int] = []
        self._one_memo: dict = {}
        self.next_replan = 0.0
        self._log = []
        self._lat = [view.latency(j) for j in range(view.num_clients)]
        self._phi_p = np.array([lat.prefill_floor_per_token() for lat in self._lat])
        kinds: list = []  # (latency, max batch, phi_p) of each distinct client
        self._kind = []
        for j, lat in enumerate(self._lat):
            k = (lat, int(view.max_batch[j]), float(self._phi_p[j]))
            match = next((x for x, y in enumerate(kinds) if y[0] is lat or y == k), None)
            if match is None:
                match = len(kinds)
                kinds.append(k)
            self._kind.append(match)
        self._kind_idx = np.array(self._kind, dtype=np.int64)
        self._kind_first = [self._kind.index(x) for x in range(len(kinds))]

    def _due(self, t: float) -> bool:
        return t >= self.next_replan or self.view.any_queue_empty()

    def on_arrival(self, t: float, rows: list[int]):
        self.held.extend(int(i) for i in rows)
        return self._replan(t) if self._due(t) else ()

    def on_boundary(self, t: float, client: int):
        if self.held and (t >= self.next_replan or self.view.queue_len(client) == 0):
            return self._replan(t)
        return ()

    def log(self) -> list[dict]:
        return list(self._log)

    def sizes(self, rows: np.ndarray) -> np.ndarray:
        """Predicted work floors (seconds) of ``rows`` on each client: m x J."""
        s = self.req.prompt[rows].astype(float)
        q = self.req.predicted[rows].astype(float)
        cols = []  # clients with equal latency and batch share a column: one per kind
        for j in self._kind_first:
            cols.append(request_floors(self._lat[j], int(self.view.max_batch[j]), s, q))
        return np.column_stack(cols)[:, self._kind_idx]

    def _replan(self, t: float):
        if len(self.held) == 1 and (self.solve is None or self.min_solve > 1):
            return self._replan_one(t)
        return self._replan_numpy(t)

    def _replan_numpy(self, t: float):
        rows = np.array(self.held, dtype=np.int64)
        self.held = []
        self.next_replan = t + self.replan_s
        v = self.view
        sizes = self.sizes(rows)
        allowed = v.fits_matrix(self.req.prompt[rows], self.req.predicted[rows])
        bad = ~allowed.any(axis=1)
        if bad.any():
            i = int(rows[np.flatnonzero(bad)[0]])
            raise ValueError(
                f"request {self.req.request_id[i]} (row {i}) fits no client's KV memory"
            )
        tokens = self.req.prompt[rows] + self.req.predicted[rows]
        per_token = sizes.sum(axis=0) / max(1, int(tokens.sum()))
        loads = np.array([v.outstanding_tokens(j) for j in range(v.num_clients)]) * per_token
        t0 = time.perf_counter()
        method, status, a = "lpt", "small batch", None
        if self.solve is not None and len(rows) >= self.min_solve:
            try:
                a, info = self.solve(sizes, loads, allowed, self.time_limit_s)
                method, status = "mmbpp", str(info.get("status", "ok"))
            except Exception as e:  # the plan degrades to LPT, and says so
                method, status, a = "lpt", f"solver failed: {type(e).__name__}: {e}", None
        elif self.solve is None:
            status = "no solver"
        if a is None:
            a = lpt_assignment(sizes, initial_loads=loads, allowed=allowed)
        a = np.asarray(a, dtype=np.int64)
        obj = float(
            np.max(
                loads + np.bincount(a, weights=sizes[np.arange(len(a)), a], minlength=v.num_clients)
            )
        )
        self._log.append(
            {
                "time_s": t,
                "requests": len(rows),
                "method": method,
                "status": status,
                "objective_s": obj,
                "solve_s": time.perf_counter() - t0,
            }
        )
        return list(zip(rows.tolist(), a.tolist(), strict=True))

    def _replan_one(self, t: float):
        """A replan of one request: LPT's one-row case (least loaded allowed client) in Python.

        The same arithmetic as ``_replan`` on numpy (``lpt_with_loads``, the objective),
        so the same plan and log; the request's sizes and fits are kept per
        ``(prompt, predicted)`` pair (``least_loaded_one``).
        """
        (i,) = self.held
        self.held = []
        self.next_replan = t + self.replan_s
        t0 = time.perf_counter()
        s, q = int(self.req.prompt[i]), int(self.req.predicted[i])
        col, ok, uniform = self._one_memo.get((s, q)) or self._one_sizes(i, s, q)
        if not any(ok):
            raise ValueError(
                f"request {self.req.request_id[i]} (row {i}) fits no client's KV memory"
            )
        outs = self.view.outstanding_tokens_all()
        j, objective = least_loaded_one(outs, col, ok, uniform, max(1, s + q))
        status = "no solver" if self.solve is None else "small batch"
        self._log.append(
            {
                "time_s": t,
                "requests": 1,
                "method": "lpt",
                "status": status,
                "objective_s": float(objective),
                "solve_s": time.perf_counter() - t0,
            }
        )
        return [(int(i), j)]

    def _one_sizes(self, i: int, s: int, q: int):
        rows = np.array([i], dtype=np.int64)
        col = self.sizes(rows)[0].tolist()
        ok = self.view.fits_matrix(self.req.prompt[rows], self.req.predicted[rows])[0].tolist()
        uniform = all(ok) and col[0] > 0 and all(c == col[0] for c in col)
        self._one_memo[(s, q)] = (col, ok, uniform)
        return col, ok, uniform
