"""One named policy on one instance through the serving engine (``run_policy``).

This module and its callers are the only ones that wire the offline solver, the online
rules and the simulator together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from hybridsched.bounds.floors import planning_sizes
from hybridsched.engine.admission import Admission, parse_admission
from hybridsched.engine.loop import check_blocks
from hybridsched.instance import Instance
from hybridsched.policies.registry import RuleKnobs, SolveSettings, make_rule, policy_spec
from hybridsched.policies.static import fit_mask, round_robin
from hybridsched.trace.flat import FlatTrace
from hybridsched.trace.metrics import metrics, prefix_metrics, request_table


def mmbpp_solver(time_limit_s: float, mip_gap: float, threads: int | None) -> Callable:
    """``solve(sizes, initial_loads, allowed, time_limit_s) -> (assignment, info)`` on HiGHS."""

    def solve(sizes: np.ndarray, loads: np.ndarray, allowed: np.ndarray, limit: float):
        from hybridsched.offline.mmbpp import solve_assignment

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


def offline_assignment(
    instance: Instance,
    dispatch: str,
    solve: SolveSettings = SolveSettings(),
    block_size: int = 1,
):
    """``(assignment, solve_info)``: round-robin, or the MMBPP on the planning sizes; each
    request only on a client that holds it alone (in whole blocks of ``block_size``)."""
    if dispatch == "round-robin":
        return round_robin(instance, block_size), {"status": "n/a", "dispatch": "round-robin"}
    if dispatch == "mmbpp":
        from hybridsched.offline.mmbpp import solve_assignment

        res = solve_assignment(
            planning_sizes(instance),
            time_limit_s=solve.time_limit_s,
            mip_gap=solve.mip_gap,
            threads=solve.threads,
            allowed=fit_mask(instance, block_size),  # each request only where it fits
        )
        return res.assignment, {"dispatch": "mmbpp", **res.to_dict()}
    raise ValueError(f"dispatch must be 'round-robin' or 'mmbpp', got {dispatch!r}")


@dataclass
class RunResult:
    policy: str
    trace: pd.DataFrame
    metrics: dict
    assignment: np.ndarray
    solve: dict
    simulate_s: float
    requests: pd.DataFrame | None = None  # the per-request table (metrics.request_table)
    evictions: pd.DataFrame | None = None
    router: str = "static"
    admission: str = "reservation"
    router_log: list = field(default_factory=list)
    flat: FlatTrace | None = None  # the trace as flat arrays (trace_flat.FlatTrace)
    inflight_preempted: list = field(default_factory=list)  # EngineResult's
    hits: pd.DataFrame | None = None  # a prefix cache's hits (trace.schema.HIT_COLUMNS)


def run_policy(
    instance: Instance,
    policy: str,
    knobs: RuleKnobs = RuleKnobs(),
    solve: SolveSettings = SolveSettings(),
    check: bool = False,
    assignment=None,
    router: str | None = None,
    admission: str | None = None,
    slo_ttft_s: float | None = None,
    slo_tpot_s: float | None = None,
    progress=None,
    kv: dict | None = None,
) -> RunResult:
    """One named policy on one instance, through the serving engine.

    ``router`` and ``admission`` override the policy's defaults; ``assignment`` fixes a
    static plan; ``kv`` (``Admission``'s ``watermark``, ``block_size``,
    ``async_scheduling``) sets on-demand KV; ``progress(arrived, total)`` follows the run
    (``engine.loop.run``). The metrics come from the trace and the request table only, from
    the users' arrivals (a request reaches the engine after the clients' request overhead).
    """
    from hybridsched.engine.simulate import simulate_run

    spec = policy_spec(policy)
    router = router or ("static" if assignment is not None else spec.router)
    adm = parse_admission(_engine_admission(spec, admission))
    if adm.on_demand and kv:
        adm = replace(adm, **kv)
    check_blocks(instance, adm)  # a request no client holds in whole blocks: named, up front
    r, rule, info = _router_and_rule(instance, spec, knobs, solve, router, assignment, adm.unit)
    t0 = time.perf_counter()
    res = simulate_run(_at_engine(instance), r, rule, adm, check=check, progress=progress)
    elapsed = time.perf_counter() - t0
    if router == "rolling-mmbpp":
        info["replans"] = len(res.router_log)
    # The trace read into flat arrays once: the request table's, and kept for the check
    # and the CSV writer of the command line (``RunResult.flat``).
    flat = FlatTrace(res.trace, instance.requests["request_id"].to_numpy())
    req = request_table(res.trace, instance, res.evictions, res.dispatch_s, flat)
    m = metrics(res.trace, instance, res.evictions, slo_ttft_s, slo_tpot_s, req=req)
    if adm.on_demand and adm.prefix_caching:
        m.update(prefix_metrics(res.trace, res.hits))
    return RunResult(
        policy,
        res.trace,
        m,
        res.dispatch_client,
        info,
        elapsed,
        req,
        res.evictions,
        router,
        res.admission,
        res.router_log,
        flat,
        res.inflight_preempted,
        res.hits,
    )


def _at_engine(instance: Instance) -> Instance:
    """The instance as the engine sees it: each request after the clients' request overhead
    (API server, tokenization; ``Client.request_overhead_s``, the smallest on a mixed
    cluster). Metrics are taken from the users' arrivals, so TTFT and latency include it."""
    ov = min(c.request_overhead_s for c in instance.clients)
    if ov <= 0:
        return instance
    req = instance.requests
    return instance.replace(requests=req.assign(arrival_s=req["arrival_s"] + ov))


def _engine_admission(spec, admission):
    """The admission the engine runs: the override, else the policy's (with its watermark)."""
    if admission is None and spec.watermark is not None:
        return Admission(spec.admission, spec.watermark)
    return admission or spec.admission


def _router_and_rule(instance, spec, knobs, solve, router: str, assignment, block_size=1):
    """The router, the online rule and what the offline stage did (``RunResult.solve``).

    The static plan is made when the router asks for it: the given ``assignment``, or the
    policy's offline stage; ``hybrid-robust`` plans its router and rule together.
    """
    from hybridsched.policies.registry import make_router
    from hybridsched.policies.static import check_assignment

    plan = {}

    def static_plan():
        if assignment is not None:
            return check_assignment(instance, assignment)
        a, plan["info"] = offline_assignment(instance, spec.dispatch, solve, block_size)
        return check_assignment(instance, a)

    if spec.dispatch == "portfolio" and router == "static" and assignment is None:
        choice = _portfolio(instance, solve, block_size)
        info = {
            "dispatch": "portfolio",
            "choice": choice.name,
            "predicted_makespan_s": choice.predicted_makespan_s,
            "candidates": choice.candidates,
        }
        return make_router("static", lambda: choice.assignment), choice.rule, info
    r = make_router(
        router,
        static_plan,
        seed=knobs.seed,
        replan_s=solve.replan_s,
        solver=mmbpp_solver(solve.time_limit_s, solve.mip_gap, solve.threads),
    )
    info = plan.get("info", {"dispatch": "given"}) if router == "static" else {"dispatch": router}
    return r, make_rule(spec, knobs), info


def _portfolio(instance: Instance, solve: SolveSettings, block_size: int = 1):
    """The portfolio planner (``portfolio.py``) with the MMBPP on HiGHS as its assignment."""
    from hybridsched.offline.mmbpp import solve_assignment
    from hybridsched.policies.portfolio import plan

    def assign(sizes):
        return solve_assignment(
            sizes,
            time_limit_s=solve.time_limit_s,
            mip_gap=solve.mip_gap,
            threads=solve.threads,
            allowed=fit_mask(instance, block_size),
        ).assignment

    return plan(instance, assign, block_size=block_size)
