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


def round_robin(instance: Instance) -> np.ndarray:
    """Client ``i mod |J|`` for the ``i``-th request in arrival order (the baseline's dispatch)."""
    order = np.lexsort((np.arange(instance.num_requests), instance.arrival))
    a = np.empty(instance.num_requests, dtype=np.int64)
    a[order] = np.arange(instance.num_requests) % instance.num_clients
    return a


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
