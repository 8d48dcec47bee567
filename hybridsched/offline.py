"""Offline stage: the request-to-client assignment (MMBPP) and the exact iteration MIP.

This is the only module of ``hybridsched`` that imports Pyomo; it works on plain numpy
inputs so that it depends on no other module of the package. Names follow MODEL.md.

MMBPP, MODEL.md (6), second part (the paper's offline method)
    ``sizes[i, j]`` is the size of request ``i`` on client ``j`` (identical clients:
    equal columns, e.g. the work floors ``w_i``). Binary ``x[i, j]``,
    ``sum_j x[i, j] = 1`` (``assign_once``), ``sum_i sizes[i, j] x[i, j] <= makespan``
    (``client_load``), minimize ``makespan``. HiGHS is warm started from LPT improved
    by a move/swap local search (:func:`lpt_assignment`, :func:`improve_assignment`), so
    an expired time limit still returns a good assignment, and every fallback (no
    solver, a failure, no incumbent, ``time_limit_s=0``) returns that heuristic with
    status FALLBACK and the reason. The reported bound is the larger of HiGHS's dual
    bound and :func:`trivial_bound`; on P||Cmax they are equal in every run measured.
    Measured (``make bench``; n=1319 GSM8K requests, planning sizes, gap target 0.1%):
    m=2, 4, 8, 16 all end optimal in 0.15-1.2 s; LPT alone is 0.007%, 0.04%, 0.05%,
    0.25% above the bound, LPT + local search at most 3e-7 above it. Model build:
    0.01-0.25 s.

Exact iteration MIP, MODEL.md (6), first part (small instances only)
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

import enum
import math
import numbers
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr import LinearExpression

__all__ = [
    "AssignmentResult",
    "IterationMIPResult",
    "LinearCoefficients",
    "improve_assignment",
    "SolveStatus",
    "build_assignment_model",
    "build_iteration_model",
    "lpt_assignment",
    "solve_assignment",
    "solve_iteration_mip",
    "trivial_bound",
]


class SolveStatus(enum.StrEnum):
    """Outcome of an offline solve.

    FEASIBLE means the solver stopped (time limit) with an incumbent that is not
    proven within the requested gap; FALLBACK means the heuristic answer was returned
    because no solver incumbent was available (see ``fallback_reason``).
    """

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    FALLBACK = "fallback"


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no inf/nan, so non-finite numbers are written as null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True, eq=False)
class AssignmentResult:
    """Result of :func:`solve_assignment`.

    ``objective_s`` is recomputed from ``assignment`` (not read from the solver), and
    ``bound_s`` is a valid lower bound on the MMBPP optimum, so ``bound_s <=
    objective_s`` always holds. ``eq=False`` because the record holds an array.
    """

    assignment: np.ndarray
    status: SolveStatus
    objective_s: float
    bound_s: float
    gap: float
    runtime_s: float
    lpt_objective_s: float
    fallback_reason: str | None

    def to_dict(self) -> dict:
        """JSON-ready summary without the assignment array."""
        return {
            "status": self.status.value,
            "objective_s": _finite_or_none(self.objective_s),
            "bound_s": _finite_or_none(self.bound_s),
            "gap": _finite_or_none(self.gap),
            "runtime_s": _finite_or_none(self.runtime_s),
            "lpt_objective_s": _finite_or_none(self.lpt_objective_s),
            "fallback_reason": self.fallback_reason,
            "num_requests": int(self.assignment.shape[0]),
        }


# --------------------------------------------------------------------------------------
# Input checks and heuristics for the MMBPP
# --------------------------------------------------------------------------------------


def _check_sizes(sizes: Any) -> np.ndarray:
    """Return ``sizes`` as a float (n, m) array or raise a ValueError naming the problem."""
    try:
        arr = np.asarray(sizes, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sizes: cannot convert to a float array ({exc})") from None
    if arr.ndim != 2:
        raise ValueError(f"sizes: expected a 2-D array (requests x clients), got shape {arr.shape}")
    n, m = arr.shape
    if n == 0:
        raise ValueError("sizes: no requests")
    if m == 0:
        raise ValueError("sizes: no clients (shape has 0 columns)")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"sizes: request {i} has a non-positive or non-finite size on client {j}: {arr[i, j]!r}"
        )
    return arr


def _check_assignment(assignment: Any, n: int, m: int, name: str) -> np.ndarray:
    arr = np.asarray(assignment)
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name}: client indices must be integers")
        arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= m)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: request {i} has client index {int(arr[i])}, not in [0, {m})")
    return arr.astype(np.int64)


def _makespan(sizes: np.ndarray, assignment: np.ndarray) -> float:
    loads = np.zeros(sizes.shape[1])
    np.add.at(loads, assignment, sizes[np.arange(sizes.shape[0]), assignment])
    return float(loads.max())


def lpt_assignment(sizes: np.ndarray) -> np.ndarray:
    """Longest-processing-time-first greedy: the warm start and the fallback of the MMBPP.

    Requests are taken in decreasing order of ``min_j sizes[i, j]`` (ties: lower index
    first); each goes to the client where it would finish earliest (ties: lowest client
    index). For identical clients this is Graham's LPT (within 4/3 of the optimum).

    Parameters
    ----------
    sizes
        Shape (n, m): size of request ``i`` on client ``j``.

    Returns
    -------
    numpy.ndarray
        Client index per request, dtype int64.

    Raises
    ------
    ValueError
        If ``sizes`` is empty, not 2-D, or has a non-positive or non-finite entry.
    """
    arr = _check_sizes(sizes)
    n, m = arr.shape
    order = np.argsort(-arr.min(axis=1), kind="stable")
    loads = np.zeros(m)
    assignment = np.empty(n, dtype=np.int64)
    for i in order:
        j = int(np.argmin(loads + arr[i]))  # argmin returns the first minimum
        assignment[i] = j
        loads[j] += arr[i, j]
    return assignment


def improve_assignment(
    sizes: np.ndarray, assignment: np.ndarray, max_rounds: int = 5000
) -> np.ndarray:
    """Local search from ``assignment``: move or swap requests off the most loaded client.

    LPT leaves the last few large requests badly placed when clients hold few requests
    each (1,319 requests on 16 clients: LPT is 0.25% above the bound, HiGHS does not
    close that in 10 s). Each round takes the most loaded client ``j`` and applies the
    single move or pairwise swap with another client that lowers ``max(load_j, load_k)``
    the most; it stops when no move lowers it. Deterministic (ties: lowest indices).

    Returns
    -------
    numpy.ndarray
        Client index per request, never worse than ``assignment``.
    """
    arr = _check_sizes(sizes)
    n, m = arr.shape
    a = _check_assignment(assignment, n, m, "assignment").copy()
    if m == 1:
        return a
    rows = np.arange(n)
    loads = np.bincount(a, weights=arr[rows, a], minlength=m)
    for _ in range(max_rounds):
        j = int(np.argmax(loads))
        cur = loads[j]
        mine = np.flatnonzero(a == j)
        best_val, best_move = cur - 1e-12 * max(cur, 1.0), None
        for k in range(m):
            if k == j:
                continue
            # Move i from j to k.
            val = np.maximum(loads[j] - arr[mine, j], loads[k] + arr[mine, k])
            x = int(np.argmin(val))
            if val[x] < best_val:
                best_val, best_move = float(val[x]), (int(mine[x]), k, -1)
            # Swap i (on j) with l (on k).
            theirs = np.flatnonzero(a == k)
            if len(theirs) == 0:
                continue
            new_j = loads[j] - arr[mine, j][:, None] + arr[theirs, j][None, :]
            new_k = loads[k] - arr[theirs, k][None, :] + arr[mine, k][:, None]
            val2 = np.maximum(new_j, new_k)
            flat = int(np.argmin(val2))
            if val2.flat[flat] < best_val:
                x, y = divmod(flat, len(theirs))
                best_val, best_move = float(val2.flat[flat]), (int(mine[x]), k, int(theirs[y]))
        if best_move is None:
            break
        i, k, other = best_move
        a[i] = k
        if other >= 0:
            a[other] = j
        loads = np.bincount(a, weights=arr[rows, a], minlength=m)
    return a


def trivial_bound(sizes: np.ndarray) -> float:
    """Lower bound on the MMBPP optimum, valid for unrelated clients.

    Each request costs at least ``min_j sizes[i, j]`` wherever it goes, so the makespan
    is at least the largest such cost and at least their total spread over the ``m``
    clients. HiGHS's dual bound never rose above it on P||Cmax (SOLVERS.md).

    Returns
    -------
    float
        ``max(max_i min_j sizes[i, j], sum_i min_j sizes[i, j] / m)``.
    """
    arr = _check_sizes(sizes)
    w = arr.min(axis=1)
    return float(max(w.max(), w.sum() / arr.shape[1]))


# --------------------------------------------------------------------------------------
# MMBPP model and solve
# --------------------------------------------------------------------------------------


def build_assignment_model(sizes: np.ndarray) -> pyo.ConcreteModel:
    """Build the MMBPP of MODEL.md (6) without solving it.

    No load-ordering symmetry constraints: SOLVERS.md measured them slowing HiGHS
    (stuck at the root for 60 s at n=1319, m=8). Linear expressions are built directly
    so that 21k binaries take well under a second.

    Parameters
    ----------
    sizes
        Shape (n, m): size of request ``i`` on client ``j``.

    Returns
    -------
    pyomo.environ.ConcreteModel
        With sets ``REQUESTS``, ``CLIENTS``, binary ``x[i, j]``, ``makespan >= 0``,
        constraints ``assign_once``, ``client_load`` and objective ``min_makespan``.
    """
    arr = _check_sizes(sizes)
    n, num_clients = arr.shape
    m = pyo.ConcreteModel(name="mmbpp")
    m.REQUESTS = pyo.RangeSet(0, n - 1, doc="requests i")
    m.CLIENTS = pyo.RangeSet(0, num_clients - 1, doc="clients j")
    m.x = pyo.Var(m.REQUESTS, m.CLIENTS, within=pyo.Binary, doc="MODEL.md (6): i on j")
    m.makespan = pyo.Var(within=pyo.NonNegativeReals, doc="MODEL.md (6): C")
    ones = [1.0] * num_clients
    cols = arr.T.tolist()

    @m.Constraint(m.REQUESTS, doc="MODEL.md (6): sum_j x_ij = 1")
    def assign_once(m, i):
        return (
            LinearExpression(
                constant=0.0,
                linear_coefs=ones,
                linear_vars=[m.x[i, j] for j in range(num_clients)],
            )
            == 1
        )

    @m.Constraint(m.CLIENTS, doc="MODEL.md (6): sum_i size_ij x_ij <= C")
    def client_load(m, j):
        return (
            LinearExpression(
                constant=0.0,
                linear_coefs=cols[j] + [-1.0],
                linear_vars=[m.x[i, j] for i in range(n)] + [m.makespan],
            )
            <= 0
        )

    m.min_makespan = pyo.Objective(expr=m.makespan, sense=pyo.minimize, doc="MODEL.md (6)")
    return m


def _solve_status(
    termination: Any, has_incumbent: bool, gap: float | None = None, mip_gap: float = 0.0
) -> SolveStatus:
    """Map a Pyomo (appsi) termination condition to :class:`SolveStatus`.

    The only place that reads Pyomo's enum. OPTIMAL when HiGHS proved optimality, or
    when our own bound proves the incumbent within ``mip_gap`` (HiGHS's bound can be
    -inf after a short time limit while the trivial bound already closes the gap).
    """
    if not has_incumbent:
        return SolveStatus.FALLBACK
    if getattr(termination, "name", str(termination)) == "optimal":
        return SolveStatus.OPTIMAL
    if gap is not None and gap <= mip_gap:
        return SolveStatus.OPTIMAL
    return SolveStatus.FEASIBLE


@dataclass(frozen=True)
class _HighsOutcome:
    termination: Any
    has_incumbent: bool
    bound: float  # -inf when HiGHS has none
    values: dict[str, np.ndarray] | None  # variable name -> values in index order


def _run_highs(
    model: pyo.ConcreteModel,
    *,
    time_limit_s: float,
    mip_gap: float,
    threads: int | None,
    seed: int,
    warmstart: bool,
    read_vars: tuple[str, ...],
) -> _HighsOutcome:
    """The single HiGHS call of the package (appsi interface: public warm start).

    A fresh solver object per call (no global solver). The log is kept off the console
    and off the logger. HiGHS keeps one thread scheduler per process, so a given
    ``threads`` resets it first (SOLVERS.md); ``threads=None`` leaves it as it is.
    Raises if highspy is missing; callers turn that into a FALLBACK.
    """
    import logging

    from pyomo.contrib.appsi.solvers import Highs

    opt = Highs()
    if not opt.available():
        raise RuntimeError("highspy is not available")
    opt.config.load_solution = False
    opt.config.stream_solver = False
    opt.config.log_level = logging.DEBUG
    opt.config.warmstart = warmstart
    opt.config.time_limit = None if math.isinf(time_limit_s) else float(time_limit_s)
    opt.config.mip_gap = float(mip_gap)
    options: dict[str, Any] = {"output_flag": False, "random_seed": int(seed)}
    if threads is not None:
        import highspy

        highspy.Highs.resetThreadScheduler(True)
        options["threads"] = int(threads)
    opt.highs_options = options
    res = opt.solve(model)
    has_incumbent = res.best_feasible_objective is not None
    bound = res.best_objective_bound
    bound = -math.inf if bound is None or not math.isfinite(bound) else float(bound)
    values = None
    if has_incumbent:
        res.solution_loader.load_vars()
        values = {}
        for name in read_vars:
            var = getattr(model, name)
            values[name] = np.fromiter(
                (0.0 if v.value is None else v.value for v in var.values()),
                dtype=float,
                count=len(var),
            )
    return _HighsOutcome(res.termination_condition, has_incumbent, bound, values)


def _check_solve_args(time_limit_s: float, mip_gap: float, threads: int | None, seed: int):
    if not (isinstance(time_limit_s, numbers.Real) and time_limit_s >= 0):
        raise ValueError(f"time_limit_s must be >= 0, got {time_limit_s!r}")
    if not (isinstance(mip_gap, numbers.Real) and math.isfinite(mip_gap) and mip_gap >= 0):
        raise ValueError(f"mip_gap must be a finite number >= 0, got {mip_gap!r}")
    if threads is not None and (int(threads) != threads or threads < 1):
        raise ValueError(f"threads must be None or an integer >= 1, got {threads!r}")
    if int(seed) != seed or not 0 <= seed <= 2_147_483_647:
        raise ValueError(f"seed must be an integer in [0, 2147483647], got {seed!r}")


def solve_assignment(
    sizes: np.ndarray,
    time_limit_s: float = 10.0,
    mip_gap: float = 1e-4,
    threads: int | None = None,
    warm_start: np.ndarray | None = None,
    seed: int = 0,
) -> AssignmentResult:
    """Solve the MMBPP with HiGHS, warm started, never failing without an answer.

    The MIP start is ``warm_start`` if given, else LPT improved by local search, so a
    time limit still returns a good assignment. The returned assignment is the best of
    the solver's incumbent, the start and LPT. When HiGHS is not run
    (``time_limit_s == 0``), is unavailable, raises or returns no incumbent, the result
    is FALLBACK with the better of the start and LPT (LPT on ties) and a
    ``fallback_reason``.

    Parameters
    ----------
    sizes
        Shape (n, m): size of request ``i`` on client ``j``, in seconds.
    time_limit_s
        HiGHS time limit; ``0`` skips the solver, ``inf`` means no limit.
    mip_gap
        Relative gap at which HiGHS stops.
    threads
        HiGHS threads; ``None`` keeps the process-wide scheduler as it is.
    warm_start
        Client index per request to use as MIP start instead of LPT.
    seed
        HiGHS ``random_seed``.

    Returns
    -------
    AssignmentResult

    Raises
    ------
    ValueError
        On invalid ``sizes``, ``time_limit_s``, ``mip_gap``, ``threads``, ``seed`` or
        ``warm_start``, naming the field.
    """
    t0 = time.perf_counter()
    arr = _check_sizes(sizes)
    _check_solve_args(time_limit_s, mip_gap, threads, seed)
    n, num_clients = arr.shape
    lpt = lpt_assignment(arr)
    lpt_obj = _makespan(arr, lpt)
    lb = trivial_bound(arr)
    # LPT improved by local search is the MIP start; LPT alone stays the reference figure.
    start = improve_assignment(arr, lpt)
    start_obj, start_name = _makespan(arr, start), "LPT + local search"
    if warm_start is not None:
        ws = _check_assignment(warm_start, n, num_clients, "warm_start")
        ws_obj = _makespan(arr, ws)
        start, start_obj, start_name = ws, ws_obj, "the given warm start"
    # The heuristic answer when the solver gives nothing: the better start, LPT on ties.
    fb, fb_obj, fb_name = (
        (start, start_obj, start_name) if start_obj < lpt_obj else (lpt, lpt_obj, "LPT")
    )

    def _result(assignment, objective, bound, status, reason):
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
            lpt_objective_s=lpt_obj,
            fallback_reason=reason,
        )

    if time_limit_s == 0:
        return _result(fb, fb_obj, lb, SolveStatus.FALLBACK, "time limit 0 s: no solve")

    try:
        model = build_assignment_model(arr)
        for i, j in enumerate(start.tolist()):
            model.x[i, j].value = 1
        for v in model.x.values():
            if v.value is None:
                v.value = 0
        model.makespan.value = start_obj
        out = _run_highs(
            model,
            time_limit_s=float(time_limit_s),
            mip_gap=mip_gap,
            threads=threads,
            seed=seed,
            warmstart=True,
            read_vars=("x",),
        )
    except Exception as exc:  # noqa: BLE001 - the contract is "never a traceback"
        reason = f"solver failed ({type(exc).__name__}: {exc}); returned {fb_name}"
        return _result(fb, fb_obj, lb, SolveStatus.FALLBACK, reason)

    bound = max(out.bound, lb)
    if not out.has_incumbent:
        reason = (
            f"solver ended with {getattr(out.termination, 'name', out.termination)} "
            f"and no incumbent; returned {fb_name}"
        )
        return _result(fb, fb_obj, bound, SolveStatus.FALLBACK, reason)

    solved = out.values["x"].reshape(n, num_clients).argmax(axis=1).astype(np.int64)
    best, best_obj = solved, _makespan(arr, solved)
    for cand, cand_obj in ((start, start_obj), (lpt, lpt_obj)):
        if cand_obj < best_obj:
            best, best_obj = cand, cand_obj
    gap = (best_obj - min(bound, best_obj)) / best_obj
    status = _solve_status(out.termination, True, gap, mip_gap)
    return _result(best, best_obj, bound, status, None)


# --------------------------------------------------------------------------------------
# Exact iteration MIP
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearCoefficients:
    """Linear latency model of MODEL.md (3), the one the exact MIP can express.

    ``t_prefill(P) = a_p + b_p * sum_{i in P} s_i`` and
    ``t_decode(D) = a_d + b_d * |D| + c_d * sum_{i in D} context_i`` (seconds).
    """

    a_p: float
    b_p: float
    a_d: float
    b_d: float
    c_d: float

    def __post_init__(self) -> None:
        for name in ("a_p", "b_p", "a_d", "b_d", "c_d"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"LinearCoefficients: {name} must be a finite number, got {v!r}")

    def t_prefill(self, prompt_tokens: Any) -> float:
        """Duration of a prefill of requests with these prompt lengths."""
        return float(self.a_p + self.b_p * float(np.sum(prompt_tokens)))

    def t_decode(self, contexts: Any) -> float:
        """Duration of a decode of requests with these contexts."""
        c = np.asarray(contexts, dtype=float)
        return float(self.a_d + self.b_d * c.size + self.c_d * c.sum())


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
            "makespan_s": _finite_or_none(self.makespan_s),
            "bound_s": _finite_or_none(self.bound_s),
            "gap": _finite_or_none(self.gap),
            "runtime_s": _finite_or_none(self.runtime_s),
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


@dataclass(frozen=True)
class _IterationInstance:
    prompt: np.ndarray  # s_i, int
    output: np.ndarray  # o_i, int
    reservation: np.ndarray  # res_i, int
    num_clients: int
    max_batch: int
    kv_capacity_tokens: int
    coef: LinearCoefficients
    prefill_budget_tokens: int
    num_iterations: int


def _int_vector(values: Any, name: str, minimum: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence, got shape {arr.shape}")
    if arr.size and not np.all(np.isfinite(arr.astype(float))):
        raise ValueError(f"{name}: values must be finite")
    if arr.size and not np.all(arr.astype(float) == np.round(arr.astype(float))):
        i = int(np.flatnonzero(arr.astype(float) != np.round(arr.astype(float)))[0])
        raise ValueError(f"{name}: request {i} has a non-integer value {arr[i]!r}")
    arr = arr.astype(np.int64)
    low = np.flatnonzero(arr < minimum)
    if low.size:
        i = int(low[0])
        raise ValueError(f"{name}: request {i} must be >= {minimum}, got {int(arr[i])}")
    return arr


def _check_iteration_instance(
    prompt_tokens: Any,
    output_tokens: Any,
    num_clients: int,
    max_batch: int,
    kv_capacity_tokens: int,
    coef: LinearCoefficients,
    num_iterations: int | None,
    prefill_budget_tokens: int,
    reservation_tokens: Any,
) -> _IterationInstance:
    prompt = _int_vector(prompt_tokens, "prompt_tokens", 1)
    output = _int_vector(output_tokens, "output_tokens", 1)
    if prompt.size == 0:
        raise ValueError("prompt_tokens: no requests")
    if output.size != prompt.size:
        raise ValueError(
            f"output_tokens: expected {prompt.size} values (one per request), got {output.size}"
        )
    for name, v in (
        ("num_clients", num_clients),
        ("max_batch", max_batch),
        ("kv_capacity_tokens", kv_capacity_tokens),
        ("prefill_budget_tokens", prefill_budget_tokens),
    ):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if not isinstance(coef, LinearCoefficients):
        raise ValueError(f"coef must be a LinearCoefficients, got {type(coef).__name__}")
    if reservation_tokens is None:
        reservation = prompt + output
    else:
        reservation = _int_vector(reservation_tokens, "reservation_tokens", 1)
        if reservation.size != prompt.size:
            raise ValueError(
                f"reservation_tokens: expected {prompt.size} values, got {reservation.size}"
            )
    over = np.flatnonzero(reservation > kv_capacity_tokens)
    if over.size:
        i = int(over[0])
        raise ValueError(
            f"reservation_tokens: request {i} reserves {int(reservation[i])} tokens, more than "
            f"kv_capacity_tokens={kv_capacity_tokens}; no schedule can run it"
        )
    # Upper bound on the iterations of one client: one prefill per request at worst and
    # at most one decode per decode token.
    k_default = int(prompt.size + (output - 1).sum())
    if num_iterations is None:
        num_iterations = k_default
    elif int(num_iterations) != num_iterations or num_iterations < 1:
        raise ValueError(f"num_iterations must be None or an integer >= 1, got {num_iterations!r}")
    return _IterationInstance(
        prompt=prompt,
        output=output,
        reservation=reservation,
        num_clients=int(num_clients),
        max_batch=int(max_batch),
        kv_capacity_tokens=int(kv_capacity_tokens),
        coef=coef,
        prefill_budget_tokens=int(prefill_budget_tokens),
        num_iterations=int(num_iterations),
    )


def _request_constant_s(inst: _IterationInstance) -> np.ndarray:
    """Per-request time that does not depend on the schedule: token-proportional parts."""
    s = inst.prompt.astype(float)
    o = inst.output.astype(float)
    c = inst.coef
    return c.b_p * s + c.b_d * (o - 1) + c.c_d * ((o - 1) * s + o * (o - 1) / 2)


def _build_iteration_model(inst: _IterationInstance) -> pyo.ConcreteModel:
    n = inst.prompt.size
    num_k = inst.num_iterations
    s = inst.prompt.tolist()
    out = inst.output.tolist()
    res = inst.reservation.tolist()
    budget = inst.prefill_budget_tokens
    oversized = [i for i in range(n) if s[i] > budget]
    const = _request_constant_s(inst).tolist()
    coef = inst.coef

    m = pyo.ConcreteModel(name="iteration_mip")
    m.REQUESTS = pyo.RangeSet(0, n - 1, doc="requests i")
    m.CLIENTS = pyo.RangeSet(0, inst.num_clients - 1, doc="clients j")
    m.ITERATIONS = pyo.RangeSet(0, num_k - 1, doc="iterations k of a client")

    m.x = pyo.Var(m.REQUESTS, m.CLIENTS, within=pyo.Binary, doc="MODEL.md (6): i on j")
    m.p = pyo.Var(
        m.REQUESTS,
        m.CLIENTS,
        m.ITERATIONS,
        within=pyo.Binary,
        doc="MODEL.md (6): prefill of i at k",
    )
    m.f = pyo.Var(
        m.REQUESTS,
        m.CLIENTS,
        m.ITERATIONS,
        within=pyo.Binary,
        doc="MODEL.md (6): i left by end of k",
    )
    m.a = pyo.Var(
        m.REQUESTS, m.CLIENTS, m.ITERATIONS, within=pyo.Binary, doc="MODEL.md (6): i decodes at k"
    )
    m.up = pyo.Var(m.CLIENTS, m.ITERATIONS, within=pyo.Binary, doc="MODEL.md (6): k is a prefill")
    m.ud = pyo.Var(m.CLIENTS, m.ITERATIONS, within=pyo.Binary, doc="MODEL.md (6): k is a decode")
    m.makespan = pyo.Var(within=pyo.NonNegativeReals, doc="MODEL.md (6): C")

    def started(i, j, k):
        return sum(m.p[i, j, kk] for kk in range(k + 1))

    def holding(i, j, k):
        """Slot and reserved memory held during iteration k (prefilled at or before k,
        not left before k)."""
        return started(i, j, k) - (m.f[i, j, k - 1] if k > 0 else 0)

    @m.Constraint(m.REQUESTS, doc="MODEL.md (6): each request on one client")
    def assign_once(m, i):
        return sum(m.x[i, j] for j in m.CLIENTS) == 1

    # Identical clients: relabel them by their lowest request index (valid symmetry cut).
    @m.Constraint(m.REQUESTS, m.CLIENTS, doc="symmetry: request i on a client j <= i")
    def client_symmetry(m, i, j):
        return m.x[i, j] == 0 if j > i else pyo.Constraint.Skip

    @m.Constraint(m.REQUESTS, m.CLIENTS, doc="MODEL.md (6): exactly one prefill")
    def prefill_once(m, i, j):
        return sum(m.p[i, j, k] for k in m.ITERATIONS) == m.x[i, j]

    @m.Constraint(m.REQUESTS, m.CLIENTS, m.ITERATIONS, doc="prefill only in a prefill iteration")
    def prefill_in_prefill(m, i, j, k):
        return m.p[i, j, k] <= m.up[j, k]

    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="a prefill iteration prefills someone")
    def prefill_nonempty(m, j, k):
        return m.up[j, k] <= sum(m.p[i, j, k] for i in m.REQUESTS)

    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="an iteration is a prefill or a decode")
    def one_kind(m, j, k):
        return m.up[j, k] + m.ud[j, k] <= 1

    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="used iterations come first")
    def used_first(m, j, k):
        if k == num_k - 1:
            return pyo.Constraint.Skip
        return m.up[j, k] + m.ud[j, k] >= m.up[j, k + 1] + m.ud[j, k + 1]

    @m.Constraint(m.REQUESTS, m.CLIENTS, m.ITERATIONS, doc="a request that left stays gone")
    def finish_monotone(m, i, j, k):
        return pyo.Constraint.Skip if k == 0 else m.f[i, j, k - 1] <= m.f[i, j, k]

    @m.Constraint(m.REQUESTS, m.CLIENTS, m.ITERATIONS, doc="leave only after the prefill")
    def finish_after_start(m, i, j, k):
        return m.f[i, j, k] <= started(i, j, k)

    @m.Constraint(m.REQUESTS, m.CLIENTS, m.ITERATIONS, doc="a = holding * ud (1)")
    def active_if_holding(m, i, j, k):
        return m.a[i, j, k] <= holding(i, j, k)

    @m.Constraint(m.REQUESTS, m.CLIENTS, m.ITERATIONS, doc="a = holding * ud (2)")
    def active_if_decode(m, i, j, k):
        return m.a[i, j, k] <= m.ud[j, k]

    @m.Constraint(m.REQUESTS, m.CLIENTS, m.ITERATIONS, doc="a = holding * ud (3): no pausing")
    def decode_whole_batch(m, i, j, k):
        return m.a[i, j, k] >= holding(i, j, k) + m.ud[j, k] - 1

    @m.Constraint(m.REQUESTS, m.CLIENTS, doc="MODEL.md (6): o_i - 1 decode iterations")
    def decode_count(m, i, j):
        return sum(m.a[i, j, k] for k in m.ITERATIONS) == (out[i] - 1) * m.x[i, j]

    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="a decode iteration decodes someone")
    def decode_nonempty(m, j, k):
        return m.ud[j, k] <= sum(m.a[i, j, k] for i in m.REQUESTS)

    # Valid cuts implied by batch_capacity for integer points; they lift the LP bound on
    # the number of prefill and decode iterations to n_j / B and sum_i (o_i - 1) / B.
    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="cut: a prefill holds at most B requests")
    def prefill_size(m, j, k):
        return sum(m.p[i, j, k] for i in m.REQUESTS) <= inst.max_batch * m.up[j, k]

    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="cut: a decode holds at most B requests")
    def decode_size(m, j, k):
        return sum(m.a[i, j, k] for i in m.REQUESTS) <= inst.max_batch * m.ud[j, k]

    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="MODEL.md (6): batch capacity B")
    def batch_capacity(m, j, k):
        return sum(holding(i, j, k) for i in m.REQUESTS) <= inst.max_batch

    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="MODEL.md (6), (7.4): reserved KV <= M")
    def kv_capacity(m, j, k):
        return sum(res[i] * holding(i, j, k) for i in m.REQUESTS) <= inst.kv_capacity_tokens

    # A prompt longer than the budget may only be prefilled alone (simulator rule): its
    # own excess raises the right-hand side to exactly s_i, leaving no room for another
    # request (s >= 1), and two such prompts exceed it together.
    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="MODEL.md (7.5): prefill token budget")
    def prefill_budget(m, j, k):
        lhs = sum(s[i] * m.p[i, j, k] for i in m.REQUESTS)
        rhs = budget + sum((s[i] - budget) * m.p[i, j, k] for i in oversized)
        return lhs <= rhs

    @m.Expression(m.CLIENTS, doc="MODEL.md (6): C_j = sum_k duration_jk")
    def client_time(m, j):
        return sum(coef.a_p * m.up[j, k] + coef.a_d * m.ud[j, k] for k in m.ITERATIONS) + sum(
            const[i] * m.x[i, j] for i in m.REQUESTS
        )

    @m.Constraint(m.CLIENTS, doc="MODEL.md (6): C >= C_j")
    def makespan_def(m, j):
        return m.client_time[j] <= m.makespan

    m.min_makespan = pyo.Objective(expr=m.makespan, sense=pyo.minimize, doc="MODEL.md (6)")
    return m


def build_iteration_model(
    prompt_tokens: Any,
    output_tokens: Any,
    num_clients: int,
    max_batch: int,
    kv_capacity_tokens: int,
    coef: LinearCoefficients,
    num_iterations: int | None = None,
    prefill_budget_tokens: int = 2048,
    reservation_tokens: Any = None,
) -> pyo.ConcreteModel:
    """Build the exact iteration MIP of MODEL.md (6) for identical clients.

    Exact for the simulator's semantics (see the module docstring), so its optimum
    certifies heuristics and the lower bound on tiny instances.

    Parameters
    ----------
    prompt_tokens, output_tokens
        ``s_i >= 1`` and ``o_i >= 1`` per request.
    num_clients, max_batch, kv_capacity_tokens
        ``|J|``, ``B`` and ``M`` (tokens), the same on every client.
    coef
        Linear latency model.
    num_iterations
        ``K`` per client; default ``n + sum_i (o_i - 1)``, enough for any schedule.
        A smaller ``K`` may cut off the optimum or make the model infeasible.
    prefill_budget_tokens
        Prompt tokens per prefill iteration (a single longer prompt may run alone).
    reservation_tokens
        KV tokens reserved per request while it holds a slot; default ``s_i + o_i``.

    Returns
    -------
    pyomo.environ.ConcreteModel

    Raises
    ------
    ValueError
        On invalid inputs, naming the field (and request), including a request whose
        reservation exceeds ``kv_capacity_tokens``.
    """
    inst = _check_iteration_instance(
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
    return _build_iteration_model(inst)


def _replay_client_s(
    inst: _IterationInstance, actions: list[tuple[str, tuple[int, ...]]], requests: set[int]
) -> float:
    """Replay one client's actions under the simulator's rules and return its time.

    Raises RuntimeError if the schedule breaks a rule: it would mean the MIP is wrong.
    """
    s, o, res = inst.prompt, inst.output, inst.reservation
    waiting = set(requests)
    running: dict[int, int] = {}  # request -> decode steps done
    t = 0.0
    for kind, ids in actions:
        if kind == "prefill":
            batch = set(ids)
            if not batch or not batch <= waiting:
                raise RuntimeError(f"prefill of {ids}: not all waiting")
            if len(running) + len(batch) > inst.max_batch:
                raise RuntimeError(f"prefill of {ids}: batch over {inst.max_batch}")
            kv = sum(int(res[i]) for i in running) + sum(int(res[i]) for i in batch)
            if kv > inst.kv_capacity_tokens:
                raise RuntimeError(f"prefill of {ids}: reserved KV {kv} over capacity")
            tokens = int(sum(int(s[i]) for i in batch))
            if len(batch) > 1 and tokens > inst.prefill_budget_tokens:
                raise RuntimeError(f"prefill of {ids}: {tokens} tokens over the budget")
            t += inst.coef.t_prefill([s[i] for i in batch])
            waiting -= batch
            for i in batch:
                if o[i] > 1:
                    running[i] = 0
        elif kind == "decode":
            if not running:
                raise RuntimeError("decode with an empty running batch")
            t += inst.coef.t_decode([s[i] + done + 1 for i, done in running.items()])
            for i in list(running):
                running[i] += 1
                if running[i] == o[i] - 1:
                    del running[i]
        else:
            raise RuntimeError(f"unknown action {kind!r}")
    if waiting or running:
        raise RuntimeError(f"requests left unfinished: waiting {waiting}, running {running}")
    return t


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
    inst = _check_iteration_instance(
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
    _check_solve_args(time_limit_s, mip_gap, threads, seed)
    model = _build_iteration_model(inst)
    num_vars = sum(len(v) for v in model.component_objects(pyo.Var, active=True))
    num_cons = sum(len(c) for c in model.component_objects(pyo.Constraint, active=True))

    def _empty(reason: str, bound: float = -math.inf) -> IterationMIPResult:
        return IterationMIPResult(
            status=SolveStatus.FALLBACK,
            makespan_s=None,
            bound_s=bound,
            gap=math.inf,
            runtime_s=time.perf_counter() - t0,
            assignment=None,
            actions=None,
            num_variables=num_vars,
            num_constraints=num_cons,
            num_iterations=inst.num_iterations,
            fallback_reason=reason,
        )

    if time_limit_s == 0:
        return _empty("time limit 0 s: no solve")
    try:
        out = _run_highs(
            model,
            time_limit_s=float(time_limit_s),
            mip_gap=mip_gap,
            threads=threads,
            seed=seed,
            warmstart=False,
            read_vars=("x", "p", "up", "ud"),
        )
    except Exception as exc:  # noqa: BLE001 - report, don't crash a notebook
        return _empty(f"solver failed ({type(exc).__name__}: {exc})")
    if not out.has_incumbent:
        name = getattr(out.termination, "name", out.termination)
        return _empty(f"solver ended with {name} and no incumbent", out.bound)

    n, num_clients_, num_k = inst.prompt.size, inst.num_clients, inst.num_iterations
    x = out.values["x"].reshape(n, num_clients_)
    p = out.values["p"].reshape(n, num_clients_, num_k) > 0.5
    up = out.values["up"].reshape(num_clients_, num_k) > 0.5
    ud = out.values["ud"].reshape(num_clients_, num_k) > 0.5
    assignment = x.argmax(axis=1).astype(np.int64)
    assignment.setflags(write=False)
    actions: dict[int, list[tuple[str, tuple[int, ...]]]] = {}
    client_times = []
    for j in range(num_clients_):
        acts: list[tuple[str, tuple[int, ...]]] = []
        for k in range(num_k):
            if up[j, k]:
                acts.append(("prefill", tuple(int(i) for i in np.flatnonzero(p[:, j, k]))))
            elif ud[j, k]:
                acts.append(("decode", ()))
        actions[j] = acts
        on_j = {int(i) for i in np.flatnonzero(assignment == j)}
        try:
            client_times.append(_replay_client_s(inst, acts, on_j))
        except RuntimeError as exc:
            raise RuntimeError(
                f"iteration MIP schedule for client {j} does not replay: {exc}"
            ) from exc
    makespan = max(client_times)
    bound = min(out.bound, makespan)
    gap = (makespan - bound) / makespan if makespan > 0 else 0.0
    status = _solve_status(out.termination, True, gap, mip_gap)
    return IterationMIPResult(
        status=status,
        makespan_s=float(makespan),
        bound_s=float(bound),
        gap=float(gap),
        runtime_s=time.perf_counter() - t0,
        assignment=assignment,
        actions=actions,
        num_variables=num_vars,
        num_constraints=num_cons,
        num_iterations=inst.num_iterations,
        fallback_reason=None,
    )
