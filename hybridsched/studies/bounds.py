"""``T_LB`` with its MMBPP part solved, and the bound that applies to a named policy."""

from __future__ import annotations

import numpy as np

from hybridsched.bounds.floors import work_floors
from hybridsched.bounds.lower_bound import LowerBound, lower_bound
from hybridsched.instance import Instance
from hybridsched.policies.registry import SolveSettings, policy_spec


def full_lower_bound(
    instance: Instance,
    solve_mmbpp: bool = True,
    solve: SolveSettings = SolveSettings(),
    mixed_iterations: bool = False,
    admission: str = "reservation",
) -> LowerBound:
    """``T_LB`` with every part, the MMBPP part solved on the largest floors (true lengths).

    ``mixed_iterations``: the bound for schedules with chunked-prefill iterations.
    ``admission``: ``reservation`` or ``on-demand`` (``bounds.lower_bound``); the MMBPP's
    sizes are the floors valid for it. Requests with a zero floor on some client are left
    out of the MMBPP (fewer items: its bound stays valid).
    """
    mmbpp = 0.0
    if solve_mmbpp:
        from hybridsched.offline.mmbpp import assignment_bound

        od = admission == "on-demand"
        variants = ("memory", "compute") + (() if od else ("reserved",))
        sizes = max(
            (work_floors(instance, v, mixed_iterations, on_demand=od) for v in variants),
            key=np.sum,
        )
        sizes = sizes[(sizes > 0).all(axis=1)]
        if len(sizes):
            mmbpp = assignment_bound(
                sizes, time_limit_s=solve.time_limit_s, mip_gap=solve.mip_gap, threads=solve.threads
            )
    return lower_bound(
        instance, mmbpp_bound_s=mmbpp, mixed_iterations=mixed_iterations, admission=admission
    )


def bound_for(policy: str, bound: LowerBound, bound_mixed: LowerBound | None) -> LowerBound:
    """The bound that applies to ``policy``: the mixed-iteration one for chunked policies."""
    if policy_spec(policy).mixed:
        if bound_mixed is None:
            raise ValueError(f"policy {policy!r} needs the mixed-iteration bound")
        return bound_mixed
    return bound
