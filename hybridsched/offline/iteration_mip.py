"""The exact iteration MIP of MODEL.md (6), first part (small instances only).

Per client ``j`` and iteration ``k = 0..K-1``: binaries ``x[i, j]`` (assignment),
``p[i, j, k]`` (``i`` is prefilled at ``k``), ``f[i, j, k]`` (``i`` has left by the end
of ``k``), ``a[i, j, k]`` (``i`` decodes at ``k``), ``up[j, k]`` / ``ud[j, k]``
(``k`` is a prefill / a decode). ``started = sum_{k' <= k} p``, ``holding[k] =
started[k] - f[k-1]`` (slot and KV memory held during ``k``). A decode runs the
whole running batch (``a = holding * ud``, linearised), each request decodes
``o_i - 1`` times, batch ``sum_i holding <= B``, reserved memory
``sum_i res_i holding <= M``, prefill token budget. Because ``sum_k |D_k| =
sum_i (o_i - 1)`` and the context terms of a request sum to the constant
``c_d ((o_i - 1) s_i + o_i (o_i - 1) / 2)``, the client time is linear:
``C_j = sum_k (a_p up + a_d ud) + sum_i x[i, j] (b_p s_i + b_d (o_i - 1) + c_d const_i)``;
minimize ``C >= C_j``. A request whose ``f`` is set late only holds resources longer
(it cannot skip a decode), so every MIP solution replays to a feasible schedule with
the same makespan; the schedule is replayed here and its makespan recomputed.

When it stops being practical (measured on this machine: 2 cores, HiGHS 1.16.0,
``mip_gap=0``, ``time_limit_s=60``, default ``K``; random instances with
``s_i ~ U{1..8}``, ``o_i ~ U{1..4}`` from ``default_rng(seed)``, ``B = 2``,
``M = 16`` tokens, budget 12 tokens, coefficients (0.05, 0.004, 0.02, 0.003,
0.0005); vars / cons count the Pyomo model; time is wall time incl. build and
translation; two seeds per row, "seed 0 / seed 1"):

====  ===  =======  ===========  ===========  ==============  =====================
  n    m      K        vars         cons         time s        result
====  ===  =======  ===========  ===========  ==============  =====================
  3    1    5 / 6     59 / 70     141 / 168    0.03 / 0.02     optimal
  5    1   8 / 12    142 / 210    322 / 478    0.04 / 0.8      optimal
  6    1  14 / 17    287 / 347    642 / 777     1.1 / 1.4      optimal
  7    1  19 / 19    445 / 445    983 / 983     3.1 / 7.2      optimal
  8    1  25 / 19    659 / 503   1441 / 1099    3.6 / 7.7      optimal
 10    1  33 / 24   1067 / 779   2297 / 1676   12.6 / 60 (TL)  optimal / gap 15%
  4    2   5 / 10   149 / 289     343 / 673    0.11 / 1.5      optimal
  6    2  14 / 17    573 / 693   1279 / 1549    3.5 / 7.5      optimal
  8    2  25 / 19   1317 / 1005  2875 / 2191     29 / 34       optimal
====  ===  =======  ===========  ===========  ==============  =====================

Times vary a lot between instances and settings: without the ``prefill_size`` /
``decode_size`` cuts n=4, m=2, seed 1 took 0.55 s, but n=7, m=1 took 21-24 s and
n=8, m=1, seed 0 hit the 60 s limit at a 23% gap. So the exact MIP certifies instances of up
to about 8 requests (one or two clients) and stalls from about 10 requests per
client; it is a test oracle, not a planner for GSM8K (1,319 requests would need
millions of binaries).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from hybridsched.offline.iteration_instance import (
    IterationInstance,
    LinearCoefficients,
    check_iteration_instance,
    replay_client_s,
)
from hybridsched.offline.iteration_model import build_iteration, build_iteration_model
from hybridsched.offline.solver_status import (
    SolveStatus,
    check_solve_args,
    finite_or_none,
    run_highs,
    solve_status,
    solver_missing,
)

__all__ = [
    "IterationMIPResult",
    "LinearCoefficients",
    "SolveStatus",
    "build_iteration_model",
    "solve_iteration_mip",
]


@dataclass(frozen=True, eq=False)
class IterationMIPResult:
    """Result of :func:`solve_iteration_mip`.

    ``actions[j]`` lists client ``j``'s iterations in order: ``("prefill", ids)`` or
    ``("decode", ())`` (a decode always runs the whole running batch). ``makespan_s``
    is recomputed by replaying ``actions``. ``makespan_s``, ``assignment`` and
    ``actions`` are None when the solver returned no schedule (status FALLBACK, with
    ``fallback_reason``; there is no heuristic fallback for this model).
    """

    status: SolveStatus
    makespan_s: float | None
    bound_s: float
    gap: float
    runtime_s: float
    assignment: np.ndarray | None
    actions: dict[int, list[tuple[str, tuple[int, ...]]]] | None
    num_variables: int
    num_constraints: int
    num_iterations: int
    fallback_reason: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready record, including the (small) schedule."""
        return {
            "status": self.status.value,
            "makespan_s": finite_or_none(self.makespan_s),
            "bound_s": finite_or_none(self.bound_s),
            "gap": finite_or_none(self.gap),
            "runtime_s": finite_or_none(self.runtime_s),
            "assignment": None if self.assignment is None else self.assignment.tolist(),
            "actions": None
            if self.actions is None
            else {
                str(j): [[kind, list(ids)] for kind, ids in acts]
                for j, acts in self.actions.items()
            },
            "num_variables": self.num_variables,
            "num_constraints": self.num_constraints,
            "num_iterations": self.num_iterations,
            "fallback_reason": self.fallback_reason,
        }


def _decode_schedule(
    inst: IterationInstance, values: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[int, list[tuple[str, tuple[int, ...]]]], float]:
    """The MIP's values as (assignment, actions per client, replayed makespan).

    Raises RuntimeError if a client's schedule does not replay (a modelling bug).
    """
    n, num_clients, num_k = inst.prompt.size, inst.num_clients, inst.num_iterations
    x = values["x"].reshape(n, num_clients)
    p = values["p"].reshape(n, num_clients, num_k) > 0.5
    up = values["up"].reshape(num_clients, num_k) > 0.5
    ud = values["ud"].reshape(num_clients, num_k) > 0.5
    assignment = x.argmax(axis=1).astype(np.int64)
    assignment.setflags(write=False)
    actions: dict[int, list[tuple[str, tuple[int, ...]]]] = {}
    client_times = []
    for j in range(num_clients):
        acts: list[tuple[str, tuple[int, ...]]] = []
        for k in range(num_k):
            if up[j, k]:
                acts.append(("prefill", tuple(int(i) for i in np.flatnonzero(p[:, j, k]))))
            elif ud[j, k]:
                acts.append(("decode", ()))
        actions[j] = acts
        on_j = {int(i) for i in np.flatnonzero(assignment == j)}
        try:
            client_times.append(replay_client_s(inst, acts, on_j))
        except RuntimeError as exc:
            raise RuntimeError(
                f"iteration MIP schedule for client {j} does not replay: {exc}"
            ) from exc
    return assignment, actions, max(client_times)


def solve_iteration_mip(
    prompt_tokens: Any,
    output_tokens: Any,
    num_clients: int,
    max_batch: int,
    kv_capacity_tokens: int,
    coef: LinearCoefficients,
    num_iterations: int | None = None,
    prefill_budget_tokens: int = 2048,
    reservation_tokens: Any = None,
    time_limit_s: float = 60.0,
    mip_gap: float = 0.0,
    threads: int | None = None,
    seed: int = 0,
) -> IterationMIPResult:
    """Solve the exact iteration MIP and return a replayable schedule.

    For tiny instances only (see the table in the module docstring). The schedule is
    replayed under the simulator's rules and ``makespan_s`` comes from that replay.
    No warm start: a time limit hit before the first incumbent gives FALLBACK with no
    schedule.

    Parameters
    ----------
    prompt_tokens, output_tokens, num_clients, max_batch, kv_capacity_tokens, coef,
    num_iterations, prefill_budget_tokens, reservation_tokens
        As in :func:`build_iteration_model`.
    time_limit_s, mip_gap, threads, seed
        As in :func:`solve_assignment` (``time_limit_s=0`` returns FALLBACK unsolved).

    Returns
    -------
    IterationMIPResult

    Raises
    ------
    ValueError
        On invalid inputs, naming the field.
    RuntimeError
        If the solver's schedule does not replay (a modelling bug, never expected).
    """
    t0 = time.perf_counter()
    inst = check_iteration_instance(
        prompt_tokens,
        output_tokens,
        num_clients,
        max_batch,
        kv_capacity_tokens,
        coef,
        num_iterations,
        prefill_budget_tokens,
        reservation_tokens,
    )
    check_solve_args(time_limit_s, mip_gap, threads, seed)
    return _solve_checked(inst, t0, float(time_limit_s), mip_gap, threads, seed)


def _result(inst, t0, size, reason=None, bound=-math.inf, schedule=None, status=None, gap=None):
    """An IterationMIPResult: FALLBACK without a schedule when ``schedule`` is None."""
    assignment, actions, makespan = schedule or (None, None, None)
    return IterationMIPResult(
        status=SolveStatus.FALLBACK if schedule is None else status,
        makespan_s=None if makespan is None else float(makespan),
        bound_s=float(bound),
        gap=math.inf if gap is None else float(gap),
        runtime_s=time.perf_counter() - t0,
        assignment=assignment,
        actions=actions,
        num_variables=size[0],
        num_constraints=size[1],
        num_iterations=inst.num_iterations,
        fallback_reason=reason,
    )


def _solve_checked(inst, t0, time_limit_s, mip_gap, threads, seed) -> IterationMIPResult:
    missing = solver_missing()
    size = (0, 0)
    if missing is None:
        import pyomo.environ as pyo

        model = build_iteration(inst)
        size = (
            sum(len(v) for v in model.component_objects(pyo.Var, active=True)),
            sum(len(c) for c in model.component_objects(pyo.Constraint, active=True)),
        )
    if time_limit_s == 0:
        return _result(inst, t0, size, "time limit 0 s: no solve")
    if missing is not None:
        return _result(inst, t0, size, f"solver not available: {missing}")
    try:
        out = run_highs(
            model,
            time_limit_s=time_limit_s,
            mip_gap=mip_gap,
            threads=threads,
            seed=seed,
            warmstart=False,
            read_vars=("x", "p", "up", "ud"),
        )
    except Exception as exc:  # noqa: BLE001 - report, don't crash a notebook
        return _result(inst, t0, size, f"solver failed ({type(exc).__name__}: {exc})")
    if not out.has_incumbent:
        name = getattr(out.termination, "name", out.termination)
        return _result(inst, t0, size, f"solver ended with {name} and no incumbent", out.bound)
    schedule = _decode_schedule(inst, out.values)
    makespan = schedule[2]
    bound = min(out.bound, makespan)
    gap = (makespan - bound) / makespan if makespan > 0 else 0.0
    status = solve_status(out.termination, True, gap, mip_gap)
    return _result(inst, t0, size, None, bound, schedule, status, gap)
