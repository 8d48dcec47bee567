"""The exact iteration MIP on a tiny instance, its schedule replayed in the simulator."""

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
