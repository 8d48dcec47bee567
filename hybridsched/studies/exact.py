"""The exact iteration MIP on a tiny instance, its schedule replayed in the simulator, and
the one-line claim its results support (``exact_claim``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hybridsched.instance import Instance
from hybridsched.policies.static import simulate
from hybridsched.trace.metrics import metrics


@dataclass
class ExactResult:
    """The exact MIP's optimum and its schedule replayed through the simulator."""

    mip: object  # iteration_mip.IterationMIPResult
    trace: pd.DataFrame
    metrics: dict


def linear_coefficients(latency):
    """The exact MIP's coefficients from a ``LinearLatency``."""
    from hybridsched.latency.linear import LinearLatency
    from hybridsched.offline.iteration_instance import LinearCoefficients

    if not isinstance(latency, LinearLatency):
        raise ValueError(
            f"the exact MIP needs clients with a linear latency model, got {type(latency).__name__}"
        )
    return LinearCoefficients(latency.a_p, latency.b_p, latency.a_d, latency.b_d, latency.c_d)


def solve_exact(
    instance: Instance, time_limit_s: float = 60.0, mip_gap: float = 0.0
) -> ExactResult:
    """Solve the exact iteration MIP and replay its schedule in the simulator (invariants checked).

    Raises ``RuntimeError`` if the replay's makespan differs from the MIP's (relative
    1e-6): the two models must agree, or one of them is wrong.
    """
    from hybridsched.offline.iteration_mip import solve_iteration_mip
    from hybridsched.policies.scripted import Scripted

    c = instance.clients[0]
    if any(x != c for x in instance.clients):
        raise ValueError("the exact MIP needs identical clients")
    mip = solve_iteration_mip(
        instance.prompt,
        instance.output,
        instance.num_clients,
        c.max_batch,
        c.kv_capacity_tokens,
        linear_coefficients(c.latency),
        prefill_budget_tokens=instance.prefill_budget_tokens,
        reservation_tokens=instance.reservation,
        time_limit_s=time_limit_s,
        mip_gap=mip_gap,
    )
    if mip.assignment is None:
        raise RuntimeError(f"the exact MIP found no schedule: {mip.fallback_reason}")
    trace = simulate(instance, mip.assignment.astype(np.int64), Scripted(mip.actions), check=True)
    m = metrics(trace, instance)
    if not np.isclose(m["makespan_s"], mip.makespan_s, rtol=1e-6, atol=0):
        raise RuntimeError(
            f"replay makespan {m['makespan_s']:.9f} s != MIP makespan {mip.makespan_s:.9f} s"
        )
    return ExactResult(mip, trace, m)


def exact_claim(
    result: ExactResult, table: pd.DataFrame, lower_bound_s: float, instance: Instance
) -> str:
    """The index's one line, from the results: the instance, the optimum ``T*`` and its
    status, for how many policies of ``table`` (``reports.exact_table``, the optimum's row
    ``exact MIP``) ``T_LB <= T* <= T`` holds, the replay's makespan, and how many policies
    reach ``T*`` (up to 1e-6 relative) or else the closest one."""
    mip, t_opt = result.mip, float(result.mip.makespan_s)
    status = str(getattr(mip.status, "value", mip.status))
    proven = "proven optimal" if status == "optimal" else f"{status}, not proven optimal"
    pol = table[table["policy"] != "exact MIP"]
    k = int((pol["gap_to_optimum"].abs() <= 1e-6).sum())  # the policies at the optimum
    if k:
        reach = (
            "every policy reaches"
            if k == len(pol)
            else f"{k} polic" + ("y reaches" if k == 1 else "ies reach")
        )
        tail = f"; {reach} T*"
    elif len(pol):
        best = pol.loc[pol["gap_to_optimum"].idxmin()]
        gap = float(best["gap_to_optimum"])
        side = f"{gap:.1%} above" if gap >= 0 else f"{-gap:.1%} below"
        tail = f"; the closest policy, {best['policy']}, ends {side} T*"
    else:
        tail = ""
    return (
        f"On a tiny instance ({instance.num_requests} requests, {instance.num_clients} clients, "
        f"B={instance.clients[0].max_batch}, linear latency) the exact iteration MIP's optimum "
        f"T* = {t_opt:.4f} s ({proven}) certifies T_LB = {lower_bound_s:.4f} s <= T* <= "
        f"T(policy) for {int(pol['certified'].sum())} of {len(pol)} policies, and its schedule "
        f"replays in the simulator in {float(result.metrics['makespan_s']):.4f} s{tail}."
    )
