"""Solver status: the one place that talks to HiGHS and turns its answers into ours.

Everything about "did the solver run, and what did it say" lives here:

- :class:`SolveStatus`, the outcome recorded in every offline result;
- :func:`solver_missing`, which says (without raising) whether Pyomo's HiGHS interface
  can run at all, so a machine without ``highspy`` still plans with the heuristics;
- :func:`run_highs`, the single HiGHS call of the package (appsi interface, warm start,
  quiet, seeded, thread scheduler reset);
- :func:`solve_status`, the single mapping from Pyomo's termination condition;
- :func:`check_solve_args`, the shared checks of ``time_limit_s``, ``mip_gap``,
  ``threads`` and ``seed``.

Recorded per result (``to_dict`` of the MMBPP and iteration MIP results): ``status``
(this enum's value), ``fallback_reason`` (why the heuristic answer was returned: time
limit 0, the solver missing or failing, no incumbent, the model too large or too slow to
build in the time left) and the bound and gap. Pyomo and highspy are imported only inside
functions, so importing this module never fails.
"""

from __future__ import annotations

import enum
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "HighsOutcome",
    "SolveStatus",
    "check_solve_args",
    "finite_or_none",
    "run_highs",
    "solve_status",
    "solver_missing",
]


class SolveStatus(enum.StrEnum):
    """Outcome of an offline solve.

    OPTIMAL: proven within the requested gap (by HiGHS, or by our own bound).
    FEASIBLE: the solver stopped (time limit) with an incumbent not proven within the gap.
    FALLBACK: the heuristic answer was returned because the solver was not run or gave no
    incumbent (see ``fallback_reason``).
    """

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    FALLBACK = "fallback"


def finite_or_none(value: float | None) -> float | None:
    """JSON has no inf/nan, so non-finite numbers are written as null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def solver_missing() -> str | None:
    """None if Pyomo and HiGHS can run here, else the reason (e.g. "highspy not installed")."""
    try:
        import pyomo.environ  # noqa: F401
    except ImportError as exc:
        return f"pyomo not installed ({exc})"
    try:
        import highspy  # noqa: F401
    except ImportError as exc:
        return f"highspy not installed ({exc})"
    return None


def solve_status(
    termination: Any, has_incumbent: bool, gap: float | None = None, mip_gap: float = 0.0
) -> SolveStatus:
    """Map a Pyomo (appsi) termination condition to :class:`SolveStatus`.

    The only place that reads Pyomo's enum (by name, so Pyomo need not be importable).
    OPTIMAL when HiGHS proved optimality, or when our own bound proves the incumbent
    within ``mip_gap`` (HiGHS's bound can be -inf after a short time limit while the
    trivial bound already closes the gap).
    """
    if not has_incumbent:
        return SolveStatus.FALLBACK
    if getattr(termination, "name", str(termination)) == "optimal":
        return SolveStatus.OPTIMAL
    if gap is not None and gap <= mip_gap:
        return SolveStatus.OPTIMAL
    return SolveStatus.FEASIBLE


@dataclass(frozen=True)
class HighsOutcome:
    termination: Any
    has_incumbent: bool
    bound: float  # -inf when HiGHS has none
    values: dict[str, np.ndarray] | None  # variable name -> values in index order


def run_highs(
    model: Any,
    *,
    time_limit_s: float,
    mip_gap: float,
    threads: int | None,
    seed: int,
    warmstart: bool,
    read_vars: tuple[str, ...],
) -> HighsOutcome:
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
    return HighsOutcome(res.termination_condition, has_incumbent, bound, values)


def check_solve_args(time_limit_s: float, mip_gap: float, threads: int | None, seed: int) -> None:
    """Raise a ValueError naming the first bad solver argument."""
    if not (isinstance(time_limit_s, numbers.Real) and time_limit_s >= 0):
        raise ValueError(f"time_limit_s must be >= 0, got {time_limit_s!r}")
    if not (isinstance(mip_gap, numbers.Real) and math.isfinite(mip_gap) and mip_gap >= 0):
        raise ValueError(f"mip_gap must be a finite number >= 0, got {mip_gap!r}")
    if threads is not None and (int(threads) != threads or threads < 1):
        raise ValueError(f"threads must be None or an integer >= 1, got {threads!r}")
    if int(seed) != seed or not 0 <= seed <= 2_147_483_647:
        raise ValueError(f"seed must be an integer in [0, 2147483647], got {seed!r}")
