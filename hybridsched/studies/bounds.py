"""``T_LB`` with its MMBPP part solved, and the bound that applies to a named policy."""

from __future__ import annotations

import numpy as np

from hybridsched.bounds.floors import CACHED, work_floors
from hybridsched.bounds.lower_bound import LowerBound, lower_bound, without_cached
from hybridsched.instance import Instance
from hybridsched.policies.registry import SolveSettings, policy_spec


def full_lower_bound(
    instance: Instance,
    solve_mmbpp: bool = True,
    solve: SolveSettings = SolveSettings(),
    mixed_iterations: bool = False,
    admission: str = "reservation",
    cached: np.ndarray | str | None = "auto",
) -> LowerBound:
    """``T_LB`` with every part, the MMBPP part solved on the largest floors (true lengths).

    ``mixed_iterations``: the bound for schedules with chunked-prefill iterations.
    ``admission``: ``reservation`` or ``on-demand`` (``bounds.lower_bound``); the MMBPP's
    sizes are the floors valid for it. Requests with a zero floor on some client are left
    out of the MMBPP (fewer items: its bound stays valid). ``cached``: what a prefix cache
    could supply per request (``bounds.lower_bound``), on demand; ``"auto"``: an allowance
    valid for a cache of any block size, where the workload has prefix identity.
    """
    if isinstance(cached, str):
        cached = cacheable(instance, admission, True, None)
    mmbpp = 0.0
    od = admission == "on-demand"
    sized = instance
    if od and cached is not None:
        sized, od = without_cached(instance, cached), CACHED
    if solve_mmbpp:
        from hybridsched.offline.mmbpp import assignment_bound

        variants = ("memory", "compute") + (() if od else ("reserved",))
        sizes = max(
            (work_floors(sized, v, mixed_iterations, on_demand=od) for v in variants),
            key=np.sum,
        )
        sizes = sizes[(sizes > 0).all(axis=1)]
        if len(sizes):
            mmbpp = assignment_bound(
                sizes, time_limit_s=solve.time_limit_s, mip_gap=solve.mip_gap, threads=solve.threads
            )
    return lower_bound(
        instance,
        mmbpp_bound_s=mmbpp,
        mixed_iterations=mixed_iterations,
        admission=admission,
        cached=cached if admission == "on-demand" else None,
    )


def cacheable(instance: Instance, admission: str, prefix_caching: bool, block_size: int | None):
    """What a prefix cache could supply per request when the engine runs one (on demand,
    with the cache on and a workload that says which prompts share prefixes), else None;
    ``block_size=None``: an allowance valid for any block size."""
    if admission != "on-demand" or not prefix_caching:
        return None
    from hybridsched.workloads.prefixes import cacheable_any_block, cacheable_tokens

    if block_size is None:  # whatever block the engine runs
        return cacheable_any_block(instance.requests)
    return cacheable_tokens(instance.requests, block_size)


def bound_for(policy: str, bound: LowerBound, bound_mixed: LowerBound | None) -> LowerBound:
    """The bound that applies to ``policy``: the mixed-iteration one for chunked policies."""
    if policy_spec(policy).mixed:
        if bound_mixed is None:
            raise ValueError(f"policy {policy!r} needs the mixed-iteration bound")
        return bound_mixed
    return bound
