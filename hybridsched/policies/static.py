"""Static plans: the offline stage's assignment, made up front, through the engine.

The paper's setting: every request's client is chosen before the run (round-robin or the
MMBPP), a ``StaticRouter`` dispatches each at its arrival, and ``simulate`` returns the
iteration trace (columns in ``trace/schema.py``). Metrics are computed from the trace only
(``trace/metrics.py``); ``check=True`` asserts every invariant of docs/model.md section 9.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hybridsched.engine.admission import Admission
from hybridsched.engine.simulate import simulate_run
from hybridsched.engine.state import OnlineRule
from hybridsched.instance import Instance
from hybridsched.offline.mmbpp_problem import check_client_indices
from hybridsched.policies.routers import Immediate
from hybridsched.trace.io import check_run


def fit_mask(instance: Instance, block_size: int = 1) -> np.ndarray | None:
    """``fits[i, j]``: client ``j`` can hold request ``i``'s reservation ``s_i + ô_i`` alone
    (in whole blocks of ``block_size`` tokens, as on-demand KV is held); ``None`` when every
    client can hold every request (the common case)."""
    b = block_size
    cap = np.array([c.kv_capacity_tokens // b * b for c in instance.clients])
    need = -(-instance.reservation // b) * b
    fits = need[:, None] <= cap[None, :]
    return None if fits.all() else fits


def round_robin(instance: Instance, block_size: int = 1) -> np.ndarray:
    """The ``k``-th request in arrival order to the next client, cyclically, that can hold it.

    Client ``k mod |J|`` when every client can hold every request (the baseline's
    dispatch); on a heterogeneous cluster a client too small for a request is skipped, as
    the ``round-robin`` router skips it. A request no client can hold is a ValueError
    naming its row.
    """
    n, J = instance.num_requests, instance.num_clients
    order = np.lexsort((np.arange(n), instance.arrival))
    a = np.empty(n, dtype=np.int64)
    fits = fit_mask(instance, block_size)
    if fits is None:
        a[order] = np.arange(n) % J
        return a
    nxt = 0
    for i in order.tolist():
        ok = [j for j in range(nxt, nxt + J) if fits[i, j % J]]
        if not ok:
            raise ValueError(_fits_nowhere(instance, i))
        a[i] = ok[0] % J
        nxt = ok[0] % J + 1
    return a


def _fits_nowhere(instance: Instance, i: int) -> str:
    rid = instance.requests["request_id"].iloc[i]
    cap = max(c.kv_capacity_tokens for c in instance.clients)
    return (
        f"request {rid} (row {i}): reserves {int(instance.reservation[i])} KV tokens "
        f"(prompt + predicted output), more than any client holds (largest {cap})"
    )


@dataclass
class StaticRouter(Immediate):
    """A plan computed up front: row ``i`` goes to ``assignment[i]``."""

    assignment: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    name: str = "static"

    def choose(self, i: int) -> int:
        return int(self.assignment[i])


def check_assignment(instance: Instance, assignment) -> np.ndarray:
    """``assignment`` as int64 client indices, each client able to hold its requests.

    Raises a ValueError naming the row: wrong length, not integers, an unknown client, or
    a request that reserves more KV tokens than its client holds.
    """
    a = check_client_indices(
        assignment, instance.num_requests, instance.num_clients, "assignment", integral_floats=False
    )
    for j, c in enumerate(instance.clients):
        rows = np.flatnonzero(a == j)
        too_big = instance.reservation[rows] > c.kv_capacity_tokens
        if too_big.any():
            i = int(rows[np.flatnonzero(too_big)[0]])
            raise ValueError(
                f"assignment: request {instance.requests['request_id'].iloc[i]} reserves "
                f"{instance.reservation[i]} KV tokens, more than client {j} holds "
                f"({c.kv_capacity_tokens})"
            )
    return a


def simulate(
    instance: Instance,
    assignment,
    rule: OnlineRule,
    check: bool = False,
    admission: str | Admission = "reservation",
) -> pd.DataFrame:
    """The trace of a fixed assignment (a static router) under ``rule``.

    Raises
    ------
    ValueError : a bad assignment (wrong length, unknown client, a request too large
        for its client's KV memory).
    PolicyError : the rule chose an infeasible iteration.
    KVOverflowError : reservation admission with ``predicted_output_tokens <
        output_tokens`` and a request outgrew its reservation (on-demand admission
        preempts instead).
    """
    a = check_assignment(instance, assignment)
    res = simulate_run(instance, StaticRouter(assignment=a), rule, admission, check=False)
    if check:
        check_run(res, instance, assignment=a)
    return res.trace
