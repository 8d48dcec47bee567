"""The offline stage's assignment: the MMBPP solved within a time limit for the whole stage.

MODEL.md (6), second part (the paper's offline method): each request goes to one client,
minimize the largest client load (``initial_loads[j]`` plus the sizes assigned to ``j``),
optionally only on the clients ``allowed`` lets it use (:mod:`hybridsched.mmbpp_problem`).

:func:`solve_assignment` runs, in order, and never raises for a solver reason:

1. LPT (:func:`~hybridsched.mmbpp_heuristics.lpt_assignment`), always: it is the floor of
   the stage's cost (measured at 1,000,000 requests on 256 clients: see ``make bench``);
2. the local search from LPT and from ``warm_start`` if given, better start first, both
   stopped at the deadline ``t0 + time_limit_s`` (t0: the call);
3. the Pyomo model and HiGHS, warm started from the best assignment so far and given the
   time left, unless one of these says it cannot help or cannot finish in time:
   ``time_limit_s == 0``; the heuristic is within ``mip_gap`` of :func:`trivial_bound`
   (status OPTIMAL, proven by the bound); Pyomo or highspy is not installed; the model
   would have more than ``MODEL_MAX_CELLS`` binaries (about 0.75 GB and 20 s to build);
   or building it would take more than half the time left (``BUILD_S_PER_CELL``).

Every skip or failure returns the best heuristic assignment with status FALLBACK and the
reason (``fallback_reason``); the bound is the larger of HiGHS's dual bound and the
trivial bound, which were equal in every P||Cmax run measured. Measured (``make bench``;
n=1319 GSM8K requests, planning sizes, gap target 0.1%): m=2, 4, 8, 16 all end optimal in
0.15-1.2 s; LPT alone is 0.007%, 0.04%, 0.05%, 0.25% above the bound, LPT + local search
at most 3e-7 above it. At scale (``make bench``, section ``scale``: sizes ~ U(0.05, 5) s,
identical clients, 2 cores shared with other jobs, load about 8): 20,000 x 64 with a
0.01 s limit 0.08 s; 100,000 x 64 with 10 s 0.5 s, 46 MB; 100,000 x 2 0.5-0.9 s,
47 MB; 1,000,000 x 256 5-9 s, 136 MB, nearly all of it LPT. Per-client sizes (100,000 x 64) use the limit fully: the best swap between
two unrelated clients is a scan of their pair table (in blocks, bounded memory).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from hybridsched.offline.heuristics import improve, improve_assignment, lpt, lpt_assignment
from hybridsched.offline.mmbpp_model import BUILD_S_PER_CELL, build_assignment_model, build_mmbpp
from hybridsched.offline.mmbpp_problem import (
    Problem,
    _problem_bound,
    capacity_mask,
    check_client_indices,
    make_problem,
    trivial_bound,
)
from hybridsched.offline.solver_status import (
    SolveStatus,
    check_solve_args,
    finite_or_none,
    run_highs,
    solve_status,
    solver_missing,
)

__all__ = [
    "MODEL_MAX_CELLS",
    "AssignmentResult",
    "assignment_bound",
    "SolveStatus",
    "build_assignment_model",
    "capacity_mask",
    "improve_assignment",
    "lpt_assignment",
    "solve_assignment",
    "trivial_bound",
]

MODEL_MAX_CELLS = 500_000  # binaries x[i, j] above which the model is never built
PYOMO_IMPORT_S = 1.0  # first import of pyomo.environ, counted in the build-time estimate
TRANSLATE_PER_BUILD = 3.0  # handing the model to HiGHS, in units of its measured build time


@dataclass(frozen=True, eq=False)
class AssignmentResult:
    """Result of :func:`solve_assignment`.

    ``objective_s`` is recomputed from ``assignment`` (not read from the solver), and
    ``bound_s`` is a valid lower bound on the MMBPP optimum, so ``bound_s <=
    objective_s`` always holds. ``reason`` says why the solver was not run or gave no
    answer (None when HiGHS decided); ``fallback_reason`` is the same text for status
    FALLBACK. ``eq=False`` because the record holds an array.
    """

    assignment: np.ndarray
    status: SolveStatus
    objective_s: float
    bound_s: float
    gap: float
    runtime_s: float
    lpt_objective_s: float
    reason: str | None = None
    start: str = "LPT"
    warm_start_used: bool = False
    solver_used: bool = False
    local_search_rounds: int = 0
    deadline_hit: bool = False

    @property
    def fallback_reason(self) -> str | None:
        return self.reason if self.status is SolveStatus.FALLBACK else None

    def to_dict(self) -> dict:
        """JSON-ready summary without the assignment array."""
        return {
            "status": self.status.value,
            "objective_s": finite_or_none(self.objective_s),
            "bound_s": finite_or_none(self.bound_s),
            "gap": finite_or_none(self.gap),
            "runtime_s": finite_or_none(self.runtime_s),
            "lpt_objective_s": finite_or_none(self.lpt_objective_s),
            "fallback_reason": self.fallback_reason,
            "reason": self.reason,
            "start": self.start,
            "warm_start_used": self.warm_start_used,
            "solver_used": self.solver_used,
            "local_search_rounds": self.local_search_rounds,
            "deadline_hit": self.deadline_hit,
            "num_requests": int(self.assignment.shape[0]),
        }


@dataclass
class _Start:
    """The heuristic part: LPT, the best start found, and how it was found."""

    lpt: np.ndarray
    lpt_obj: float
    best: np.ndarray
    best_obj: float
    name: str
    warm_start_used: bool
    rounds: int
    deadline_hit: bool

    def fallback(self) -> tuple[np.ndarray, float, str]:
        """The heuristic answer when the solver gives nothing: the better start, LPT on ties."""
        if self.best_obj < self.lpt_obj:
            return self.best, self.best_obj, self.name
        return self.lpt, self.lpt_obj, "LPT"


def _heuristic_start(
    p: Problem, warm: np.ndarray | None, deadline: float | None, target: float | None
) -> _Start:
    base = lpt(p)
    base_obj = p.makespan(base)
    starts = [("LPT + local search", base, base_obj, False)]
    if warm is not None:
        starts.append(("the warm start + local search", warm, p.makespan(warm), True))
        starts.sort(key=lambda s: (s[2], not s[3]))  # better first, the warm start on ties
    best = None
    rounds, hit = 0, False
    for name, a, _, is_warm in starts:
        improved, r, h = improve(p, a, deadline=deadline, target=target)
        obj = p.makespan(improved)
        rounds, hit = rounds + r, hit or h
        if best is None or obj < best[1] or (obj == best[1] and is_warm):
            best = (improved, obj, name, is_warm)
    return _Start(base, base_obj, best[0], best[1], best[2], best[3], rounds, hit)


def _skip_reason(
    p: Problem,
    start: _Start,
    bound: float,
    time_limit_s: float,
    mip_gap: float,
    t_end: float,
    skip_within_gap: bool = True,
) -> tuple[SolveStatus, str] | None:
    """Why the model is not built (status, reason), or None to build and solve it."""
    name = start.fallback()[2]
    if time_limit_s == 0:
        return SolveStatus.FALLBACK, "time limit 0 s: no solve"
    gap = (start.best_obj - min(bound, start.best_obj)) / start.best_obj
    if skip_within_gap and gap <= mip_gap:
        return SolveStatus.OPTIMAL, (
            f"{name} is within mip_gap={mip_gap:g} of the trivial bound: no solve needed"
        )
    cells = p.n * p.num_clients
    if cells > MODEL_MAX_CELLS:
        return SolveStatus.FALLBACK, (
            f"model too large: {cells:,} binaries > MODEL_MAX_CELLS={MODEL_MAX_CELLS:,}"
        )
    left = t_end - time.perf_counter()
    need = cells * BUILD_S_PER_CELL + (0.0 if "pyomo.environ" in sys.modules else PYOMO_IMPORT_S)
    if need > left / 2:
        return SolveStatus.FALLBACK, (
            f"no time to build the model: about {need:.2g} s needed, {max(left, 0.0):.2g} s left"
        )
    missing = solver_missing()
    if missing is not None:
        return SolveStatus.FALLBACK, f"solver not available: {missing}"
    return None


def _solve_model(p: Problem, start: _Start, t_end: float, mip_gap, threads, seed):
    """Build, warm start and solve; the HiGHS outcome or a reason it gave nothing."""
    try:
        tb = time.perf_counter()
        model = build_mmbpp(p)
        for i, j in enumerate(start.best.tolist()):
            model.x[i, j].value = 1
        for v in model.x.values():
            if v.value is None:
                v.value = 0
        model.makespan.value = start.best_obj
        # HiGHS's clock starts after Pyomo hands it the model, which takes about
        # TRANSLATE_PER_BUILD times the build (measured 2.2-3.3x): leave that time out.
        build_s = time.perf_counter() - tb
        left = t_end - time.perf_counter() - TRANSLATE_PER_BUILD * build_s
        if left <= 0:
            return None, "time limit reached while building the model"
        out = run_highs(
            model,
            time_limit_s=left,
            mip_gap=mip_gap,
            threads=threads,
            seed=seed,
            warmstart=True,
            read_vars=("x",),
        )
    except Exception as exc:  # noqa: BLE001 - the contract is "never a traceback"
        return None, f"solver failed ({type(exc).__name__}: {exc})"
    if not out.has_incumbent:
        name = getattr(out.termination, "name", out.termination)
        return out, f"solver ended with {name} and no incumbent"
    return out, None


def solve_assignment(
    sizes: Any,
    time_limit_s: float = 10.0,
    mip_gap: float = 1e-4,
    threads: int | None = None,
    warm_start: Any = None,
    seed: int = 0,
    *,
    num_clients: int | None = None,
    initial_loads: Any = None,
    allowed: Any = None,
) -> AssignmentResult:
    """Solve the MMBPP within ``time_limit_s`` for the whole call, never failing without an answer.

    Parameters
    ----------
    sizes, num_clients, initial_loads, allowed
        As in :func:`hybridsched.mmbpp_problem.make_problem`: sizes in seconds, shape (n,)
        for identical clients or (n, J) per client; fixed initial loads per client; the
        n x J mask of clients each request may go to.
    time_limit_s
        Wall-time limit for everything after LPT (local search, model build, HiGHS);
        ``0`` skips the local search and the solver, ``inf`` means no limit.
    mip_gap
        Relative gap at which HiGHS stops (and below which the solver is not needed).
    threads
        HiGHS threads; ``None`` keeps the process-wide scheduler as it is.
    warm_start
        Client index per request (e.g. the previous plan), a start besides LPT: the
        better of the two (after local search; the warm start on ties) is HiGHS's start.
    seed
        HiGHS ``random_seed``.

    Returns
    -------
    AssignmentResult

    Raises
    ------
    ValueError
        On invalid inputs, naming the field and row (a request allowed nowhere, a warm
        start on a forbidden client, a bad time limit, gap, thread count or seed).
    """
    t0 = time.perf_counter()
    return _solve(
        make_problem(sizes, num_clients, initial_loads, allowed),
        t0,
        time_limit_s,
        mip_gap,
        threads,
        warm_start,
        seed,
        skip_within_gap=True,
    )


def assignment_bound(
    sizes: Any,
    time_limit_s: float = 10.0,
    mip_gap: float = 1e-4,
    threads: int | None = None,
    seed: int = 0,
    *,
    num_clients: int | None = None,
    initial_loads: Any = None,
    allowed: Any = None,
) -> float:
    """A valid lower bound on the MMBPP optimum, cheap at scale.

    With more than ``MODEL_MAX_CELLS`` binaries it is :func:`trivial_bound` (O(n) time
    and memory for identical clients); otherwise the HiGHS dual bound of the solve (as
    :func:`solve_assignment`, but HiGHS runs even when the heuristic is within the gap,
    since its bound can be slightly higher), never below the trivial bound.
    """
    t0 = time.perf_counter()
    p = make_problem(sizes, num_clients, initial_loads, allowed)
    check_solve_args(time_limit_s, mip_gap, threads, seed)
    if p.n * p.num_clients > MODEL_MAX_CELLS:
        return _problem_bound(p)
    return _solve(p, t0, time_limit_s, mip_gap, threads, None, seed, skip_within_gap=False).bound_s


def _solve(p, t0, time_limit_s, mip_gap, threads, warm_start, seed, skip_within_gap):
    """:func:`solve_assignment` on a checked problem; ``t0``: when the call started."""
    check_solve_args(time_limit_s, mip_gap, threads, seed)
    warm = None
    if warm_start is not None:
        warm = check_client_indices(warm_start, p.n, p.num_clients, "warm_start")
        p.check_allowed(warm, "warm_start")
    t_end = math.inf if math.isinf(time_limit_s) else t0 + float(time_limit_s)
    lb = _problem_bound(p)
    # Without a model to hand over to (too large), stop the search where HiGHS would.
    target = lb / (1.0 - mip_gap) if p.n * p.num_clients > MODEL_MAX_CELLS and mip_gap < 1 else None
    start = _heuristic_start(p, warm, None if math.isinf(t_end) else t_end, target)

    def result(assignment, objective, bound, status, reason, solver_used=False, name=None):
        bound = min(bound, objective)  # a valid bound never exceeds a feasible objective
        assignment = np.array(assignment, dtype=np.int64)
        assignment.setflags(write=False)
        return AssignmentResult(
            assignment=assignment,
            status=status,
            objective_s=float(objective),
            bound_s=float(bound),
            gap=float((objective - bound) / objective),
            runtime_s=time.perf_counter() - t0,
            lpt_objective_s=start.lpt_obj,
            reason=reason,
            start=name or start.name,
            warm_start_used=start.warm_start_used,
            solver_used=solver_used,
            local_search_rounds=start.rounds,
            deadline_hit=start.deadline_hit or time.perf_counter() > t_end,
        )

    fb, fb_obj, fb_name = start.fallback()
    skip = _skip_reason(p, start, lb, time_limit_s, mip_gap, t_end, skip_within_gap)
    if skip is not None:
        status, reason = skip
        if status is SolveStatus.FALLBACK:
            reason = f"{reason}; returned {fb_name}"
        return result(fb, fb_obj, lb, status, reason, name=fb_name)
    out, reason = _solve_model(p, start, t_end, mip_gap, threads, seed)
    bound = lb if out is None else max(out.bound, lb)
    if reason is not None:
        reason = f"{reason}; returned {fb_name}"
        return result(fb, fb_obj, bound, SolveStatus.FALLBACK, reason, out is not None, fb_name)
    solved = out.values["x"].reshape(p.n, p.num_clients).argmax(axis=1).astype(np.int64)
    best, best_obj, name = solved, p.makespan(solved), "HiGHS"
    for cand, cand_obj, cand_name in (
        (start.best, start.best_obj, start.name),
        (start.lpt, start.lpt_obj, "LPT"),
    ):
        if cand_obj < best_obj:
            best, best_obj, name = cand, cand_obj, cand_name
    gap = (best_obj - min(bound, best_obj)) / best_obj
    return result(
        best, best_obj, bound, solve_status(out.termination, True, gap, mip_gap), None, True, name
    )
