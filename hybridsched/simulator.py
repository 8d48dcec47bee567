"""The simulator's entry point: a fixed assignment (or any router) through the serving engine.

``simulate(instance, assignment, rule)`` is the paper's setting: the offline stage's
assignment as a static router, reservation admission, and the iteration trace back
(``TRACE_COLUMNS``, documented in ``engine/schema.py``). ``simulate_run`` takes a router
and an admission mode and returns the whole ``EngineResult`` (trace, evictions,
dispatches, the router's log). Metrics are computed from the trace only
(``metrics.py``); ``check=True`` asserts every invariant of docs/model.md section 9.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hybridsched.engine import (
    DECODE,
    TRACE_COLUMNS,
    Action,
    Admission,
    ClientState,
    Decider,
    EngineResult,
    KVOverflowError,
    OnlineRule,
    PolicyError,
    Router,
    StaticRouter,
    run,
)
from hybridsched.instance import Instance
from hybridsched.trace import check_run

__all__ = [
    "DECODE",
    "TRACE_COLUMNS",
    "Action",
    "ClientState",
    "Decider",
    "KVOverflowError",
    "OnlineRule",
    "PolicyError",
    "simulate",
    "simulate_run",
]


def _check_assignment(instance: Instance, assignment) -> np.ndarray:
    a = np.asarray(assignment)
    n, m = instance.num_requests, instance.num_clients
    if a.shape != (n,):
        raise ValueError(f"assignment: expected one client per request ({n}), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"assignment: client indices must be integers, got dtype {a.dtype}")
    bad = (a < 0) | (a >= m)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"assignment: request row {pos} goes to client {a[pos]}, but clients are 0..{m - 1}"
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
    return a.astype(np.int64)


def simulate_run(
    instance: Instance,
    router: Router,
    rule: OnlineRule,
    admission: str | Admission = "reservation",
    check: bool = False,
) -> EngineResult:
    """Run the engine; with ``check``, assert the invariants on the result."""
    res = run(instance, router, rule, admission)
    if check:
        check_run(res, instance)
    return res


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
    a = _check_assignment(instance, assignment)
    res = simulate_run(instance, StaticRouter(assignment=a), rule, admission, check=False)
    if check:
        check_run(res, instance, assignment=a)
    return res.trace
