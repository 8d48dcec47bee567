"""Routers by name, wired to the offline stage (docs/model.md section 11).

The engine's routers never import a solver; this module builds them by name and hands
``rolling-mmbpp`` its MMBPP solver (Pyomo + HiGHS, imported only when it is called).
``static`` is a plan made up front: the policy's offline stage (round-robin or the
MMBPP on the predicted work floors), the paper's setting.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hybridsched.engine import (
    ROUTERS,
    LeastKV,
    LeastWork,
    PowerOfTwo,
    RollingMMBPP,
    RoundRobin,
    Router,
    StaticRouter,
)


def mmbpp_solver(time_limit_s: float, mip_gap: float, threads: int | None) -> Callable:
    """``solve(sizes, initial_loads, allowed, time_limit_s) -> (assignment, info)`` on HiGHS."""

    def solve(sizes: np.ndarray, loads: np.ndarray, allowed: np.ndarray, limit: float):
        from hybridsched.offline import solve_assignment

        res = solve_assignment(
            sizes,
            time_limit_s=min(limit, time_limit_s),
            mip_gap=mip_gap,
            threads=threads,
            initial_loads=loads,
            allowed=allowed,
        )
        return res.assignment, res.to_dict()

    return solve


def make_router(
    name: str,
    static_plan: Callable[[], np.ndarray] | None = None,
    seed: int = 0,
    replan_s: float = 1.0,
    solver: Callable | None = None,
) -> Router:
    """The router called ``name`` (``ROUTERS``); ``static`` asks ``static_plan()`` for its plan."""
    if name == "static":
        if static_plan is None:
            raise ValueError("router 'static' needs a plan (the policy's offline stage)")
        return StaticRouter(assignment=np.asarray(static_plan(), dtype=np.int64))
    if name == "round-robin":
        return RoundRobin()
    if name == "least-work":
        return LeastWork()
    if name == "least-kv":
        return LeastKV()
    if name == "power-of-two":
        return PowerOfTwo(seed=seed)
    if name == "rolling-mmbpp":
        return RollingMMBPP(solve=solver, replan_s=replan_s)
    raise ValueError(f"router must be one of {', '.join(ROUTERS)}, got {name!r}")
