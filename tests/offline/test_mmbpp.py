"""Tests for hybridsched.mmbpp (and its heuristics, model and solver status handling)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridsched.offline import mmbpp, solver_status
from hybridsched.offline.heuristics import improve_assignment, lpt_assignment
from hybridsched.offline.mmbpp import AssignmentResult, solve_assignment
from hybridsched.offline.mmbpp_model import build_assignment_model
from hybridsched.offline.mmbpp_problem import trivial_bound
from hybridsched.offline.solver_status import SolveStatus

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def identical(work, num_clients):
    """(n, m) sizes for identical clients from a work vector."""
    return np.tile(np.asarray(work, dtype=float)[:, None], (1, num_clients))


def makespan_of(sizes, assignment):
    sizes = np.asarray(sizes, dtype=float)
    loads = [0.0] * sizes.shape[1]
    for i, j in enumerate(assignment):
        loads[j] += sizes[i, j]
    return max(loads)


def brute_force_mmbpp(sizes):
    sizes = np.asarray(sizes, dtype=float)
    n, m = sizes.shape
    return min(makespan_of(sizes, a) for a in itertools.product(range(m), repeat=n))


# --------------------------------------------------------------------------------------
# LPT and the trivial bound
# --------------------------------------------------------------------------------------


def test_lpt_hand_example_identical():
    """Tests that LPT on sizes 5,4,3,3,3 (2 identical clients) gives the hand-computed
    assignment [0, 1, 1, 0, 1] with makespan 10 (the optimum is 9)."""
    sizes = identical([5, 4, 3, 3, 3], 2)
    a = lpt_assignment(sizes)
    assert a.tolist() == [0, 1, 1, 0, 1]
    assert makespan_of(sizes, a) == 10


def test_lpt_hand_example_unrelated():
    """Tests that LPT orders by min_j size (request 1 first, then 0, then 2), breaks the
    earliest-finish tie towards the lowest client and uses each client's own size; on
    [[1, 10], [3, 3]] ordering by min (not max or index) puts both on client 0."""
    sizes = np.array([[4.0, 2.0], [3.0, 3.0], [1.0, 5.0]])
    assert lpt_assignment(sizes).tolist() == [1, 0, 0]
    assert lpt_assignment(np.array([[1.0, 10.0], [3.0, 3.0]])).tolist() == [0, 0]


def test_lpt_ties_by_index_and_client():
    """Tests the tie rules: equal sizes go in index order to the lowest least-loaded
    client, so four unit requests on two clients alternate 0, 1, 0, 1."""
    assert lpt_assignment(identical([1, 1, 1, 1], 2)).tolist() == [0, 1, 0, 1]


def test_trivial_bound_hand_values():
    """Tests the trivial bound: max(max_i min_j, sum_i min_j / m) on hand examples."""
    assert trivial_bound(identical([3, 3, 2, 2, 2], 2)) == 6.0
    assert trivial_bound(identical([10, 1, 1], 3)) == 10.0
    assert trivial_bound(np.array([[4.0, 2.0], [3.0, 3.0], [1.0, 5.0]])) == 3.0


# --------------------------------------------------------------------------------------
# MMBPP solve
# --------------------------------------------------------------------------------------


def test_mmbpp_tiny_proven_optimum_beats_lpt():
    """Tests that on sizes 3,3,2,2,2 (2 clients) the MIP returns the proven optimum 6
    (LPT gives 7) with status OPTIMAL and a bound no larger than the objective."""
    sizes = identical([3, 3, 2, 2, 2], 2)
    res = solve_assignment(sizes, mip_gap=0.0)
    assert res.status is SolveStatus.OPTIMAL
    assert res.objective_s == 6.0
    assert res.lpt_objective_s == 7.0
    assert makespan_of(sizes, res.assignment) == res.objective_s
    assert res.bound_s <= res.objective_s
    assert res.bound_s == pytest.approx(6.0)
    assert res.gap == pytest.approx(0.0)
    assert res.fallback_reason is None


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 7),
    m=st.integers(1, 3),
    unrelated=st.booleans(),
)
def test_mmbpp_matches_brute_force(data, n, m, unrelated):
    """Tests that the MIP optimum equals exhaustive enumeration on tiny identical and
    unrelated instances, that the bound is a valid lower bound on the true optimum, and
    that the returned objective is recomputed from the assignment."""
    if unrelated:
        rows = [data.draw(st.lists(st.integers(1, 20), min_size=m, max_size=m)) for _ in range(n)]
        sizes = np.array(rows, dtype=float)
    else:
        sizes = identical(data.draw(st.lists(st.integers(1, 20), min_size=n, max_size=n)), m)
    res = solve_assignment(sizes, mip_gap=0.0)
    opt = brute_force_mmbpp(sizes)
    assert res.status is SolveStatus.OPTIMAL
    assert res.objective_s == pytest.approx(opt)
    assert res.objective_s == makespan_of(sizes, res.assignment)
    assert res.bound_s <= opt + 1e-9
    assert trivial_bound(sizes) <= opt + 1e-9
    assert res.objective_s <= res.lpt_objective_s


def test_mmbpp_medium_short_limit_valid_result():
    """Tests that under a short time limit on a medium unrelated instance the result is
    a valid client per request, bound <= objective <= LPT, and to_dict is JSON-ready."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(30, 600, size=(300, 8)).astype(float)
    res = solve_assignment(sizes, time_limit_s=3.0)  # room for import, build and HiGHS
    assert res.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)
    assert res.assignment.shape == (300,)
    assert np.issubdtype(res.assignment.dtype, np.integer)
    assert res.assignment.min() >= 0 and res.assignment.max() < 8
    assert res.bound_s <= res.objective_s <= res.lpt_objective_s
    assert res.objective_s == pytest.approx(makespan_of(sizes, res.assignment))
    assert res.gap == pytest.approx((res.objective_s - res.bound_s) / res.objective_s)
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert "assignment" not in d and d["status"] == res.status.value


def test_time_limit_zero_returns_lpt_without_solver(monkeypatch):
    """Tests that time_limit_s=0 bounds the whole stage: LPT only (no local search, no
    HiGHS), status FALLBACK and the documented reason."""
    calls = []
    monkeypatch.setattr(mmbpp, "run_highs", lambda *a, **k: calls.append(1))
    sizes = identical([3, 3, 2, 2, 2], 2)
    res = solve_assignment(sizes, time_limit_s=0)
    assert calls == []
    assert res.status is SolveStatus.FALLBACK
    assert res.fallback_reason == "time limit 0 s: no solve; returned LPT"
    assert res.assignment.tolist() == lpt_assignment(sizes).tolist()
    assert res.lpt_objective_s == 7.0 and res.objective_s == 7.0
    assert res.bound_s == 6.0 and res.deadline_hit and not res.solver_used


def test_improve_assignment_never_worse_and_reaches_known_optimum():
    """Tests that local search from LPT never worsens it, and fixes LPT's classic 7-vs-6 case."""
    sizes = identical([3, 3, 2, 2, 2], 2)
    lpt = lpt_assignment(sizes)
    assert makespan_of(sizes, lpt) == 7.0
    assert makespan_of(sizes, improve_assignment(sizes, lpt)) == 6.0
    rng = np.random.default_rng(5)
    for _ in range(30):
        n, m = rng.integers(2, 30), rng.integers(1, 5)
        sz = rng.uniform(0.1, 5.0, (n, m))
        start = rng.integers(0, m, n)
        assert makespan_of(sz, improve_assignment(sz, start)) <= makespan_of(sz, start) + 1e-12


def test_time_limit_zero_keeps_better_warm_start():
    """Tests that a fallback returns the caller's warm start when it beats LPT."""
    sizes = identical([3, 3, 2, 2, 2], 2)
    res = solve_assignment(sizes, time_limit_s=0, warm_start=np.array([0, 0, 1, 1, 1]))
    assert res.status is SolveStatus.FALLBACK
    assert res.objective_s == 6.0 and res.lpt_objective_s == 7.0


def test_solver_exception_gives_fallback_with_reason(monkeypatch):
    """Tests that a solver that raises yields the LPT-based heuristic assignment, status FALLBACK and a
    reason quoting the error, instead of a traceback."""

    def boom(*args, **kwargs):
        raise RuntimeError("highs exploded")

    monkeypatch.setattr(mmbpp, "run_highs", boom)
    sizes = identical([3, 3, 3], 2)  # optimum 6 > trivial bound 4.5: the solver is needed
    res = solve_assignment(sizes)
    assert res.status is SolveStatus.FALLBACK
    assert "highs exploded" in res.fallback_reason and "returned LPT" in res.fallback_reason
    assert res.assignment.tolist() == improve_assignment(sizes, lpt_assignment(sizes)).tolist()
    assert res.bound_s <= res.objective_s


def test_missing_highspy_gives_fallback(monkeypatch):
    """Tests that an unavailable HiGHS (highspy missing) gives FALLBACK with the LPT-based heuristic and a
    reason saying so, through the real solver wrapper."""
    from pyomo.contrib.appsi.solvers import Highs

    monkeypatch.setattr(Highs, "available", lambda self: Highs.Availability.NotFound)
    sizes = identical([3, 3, 3], 2)
    res = solve_assignment(sizes)
    assert res.status is SolveStatus.FALLBACK
    assert "highspy is not available" in res.fallback_reason
    assert res.assignment.tolist() == improve_assignment(sizes, lpt_assignment(sizes)).tolist()


def test_solve_is_quiet(capfd):
    """Tests that a solve prints no solver log to stdout or stderr."""
    solve_assignment(identical([3, 3, 3], 2))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_no_incumbent_gives_fallback(monkeypatch):
    """Tests that a solver end without an incumbent gives FALLBACK with the LPT-based heuristic, a reason
    naming the termination, and the trivial bound."""
    out = solver_status.HighsOutcome("maxTimeLimit", False, -math.inf, None)
    monkeypatch.setattr(mmbpp, "run_highs", lambda *a, **k: out)
    sizes = identical([3, 3, 3], 2)
    res = solve_assignment(sizes)
    assert res.status is SolveStatus.FALLBACK
    assert "no incumbent" in res.fallback_reason
    assert res.assignment.tolist() == improve_assignment(sizes, lpt_assignment(sizes)).tolist()
    assert res.bound_s == trivial_bound(sizes)


@pytest.mark.parametrize(("solver_bound", "expected_bound"), [(5.5, 5.5), (4.0, 4.5)])
def test_incumbent_worse_than_lpt_returns_lpt(monkeypatch, solver_bound, expected_bound):
    """Tests that when the solver's incumbent is worse than LPT, LPT's (here optimal) assignment is
    returned with status FEASIBLE, and bound_s = max(solver bound, trivial bound 4.5)."""
    sizes = identical([3, 3, 3], 2)  # LPT 6 = optimum, trivial bound 4.5
    x = np.zeros((3, 2))
    x[:, 0] = 1  # everything on client 0: makespan 9 > LPT's 6
    out = solver_status.HighsOutcome("maxTimeLimit", True, solver_bound, {"x": x.ravel()})
    monkeypatch.setattr(mmbpp, "run_highs", lambda *a, **k: out)
    res = solve_assignment(sizes)
    assert res.status is SolveStatus.FEASIBLE
    assert res.assignment.tolist() == lpt_assignment(sizes).tolist()
    assert res.objective_s == 6.0 and res.bound_s == expected_bound


def test_solve_status_mapping():
    """Tests the single Pyomo-to-SolveStatus mapping, including the case where our own
    bound proves a time-limited incumbent within the gap."""
    from pyomo.contrib.appsi.base import TerminationCondition as TC

    assert solver_status.solve_status(TC.optimal, True) is SolveStatus.OPTIMAL
    assert solver_status.solve_status(TC.maxTimeLimit, True, 0.01, 1e-4) is SolveStatus.FEASIBLE
    assert solver_status.solve_status(TC.maxTimeLimit, True, 0.0, 1e-4) is SolveStatus.OPTIMAL
    assert solver_status.solve_status(TC.maxTimeLimit, False) is SolveStatus.FALLBACK
    assert solver_status.solve_status(TC.error, False) is SolveStatus.FALLBACK


def test_changing_threads_between_solves_still_solves():
    """Tests that solving with threads=1 and then threads=2 in one process both reach
    the optimum (HiGHS's process-wide scheduler must be reset, SOLVERS.md)."""
    sizes = identical([3, 3, 2, 2, 2], 2)
    for threads in (1, 2, None):
        res = solve_assignment(sizes, threads=threads, mip_gap=0.0)
        assert res.status is SolveStatus.OPTIMAL and res.objective_s == 6.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sizes": np.zeros((0, 2))}, "sizes: no requests"),
        ({"sizes": np.zeros((3, 0))}, "sizes: no clients"),
        ({"sizes": np.ones((3, 1, 1))}, "sizes: expected a 1-D .* or 2-D"),
        ({"sizes": np.ones(3)}, "num_clients: needed with 1-D sizes"),
        ({"sizes": np.array([[1.0, 1.0], [1.0, -2.0]])}, "sizes: request 1 .* client 1"),
        ({"sizes": np.array([[1.0], [0.0]])}, "sizes: request 1"),
        ({"sizes": np.array([[1.0], [np.nan]])}, "sizes: request 1"),
        ({"time_limit_s": -1.0}, "time_limit_s"),
        ({"time_limit_s": float("nan")}, "time_limit_s"),
        ({"mip_gap": -0.1}, "mip_gap"),
        ({"threads": 0}, "threads"),
        ({"warm_start": np.array([0, 1])}, "warm_start"),
        ({"warm_start": np.array([0, 1, 2])}, "warm_start: request row 2"),
    ],
)
def test_bad_inputs_raise_value_error(kwargs, match):
    """Tests that each invalid input raises ValueError naming the field (and row)."""
    args = {"sizes": identical([1, 2, 3], 2)} | kwargs
    with pytest.raises(ValueError, match=match):
        solve_assignment(**args)


def test_build_assignment_model_structure():
    """Tests the model's components: n*m binaries plus the makespan, one assign_once per
    request, one client_load per client, and the MODEL.md reference on components."""
    import pyomo.environ as pyo

    m = build_assignment_model(identical([1, 2, 3, 4], 3))
    assert len(m.x) == 12 and all(v.domain is pyo.Binary for v in m.x.values())
    assert len(m.assign_once) == 4 and len(m.client_load) == 3
    assert "MODEL.md (6)" in m.client_load.doc and "MODEL.md (6)" in m.x.doc
    assert m.min_makespan.sense == pyo.minimize


def test_assignment_result_is_frozen():
    """Tests that results cannot be mutated in place (record and array)."""
    res = solve_assignment(identical([1, 2], 1))
    assert isinstance(res, AssignmentResult)
    with pytest.raises(AttributeError):
        res.status = SolveStatus.FEASIBLE
    with pytest.raises(ValueError):
        res.assignment[0] = 0


# --------------------------------------------------------------------------------------
# initial loads, masks, warm starts, and the fallbacks of the whole stage
# --------------------------------------------------------------------------------------


def brute_force_general(sizes, initial, allowed):
    n, m = sizes.shape
    best = math.inf
    for a in itertools.product(*[np.flatnonzero(allowed[i]).tolist() for i in range(n)]):
        loads = np.array(initial, dtype=float)
        for i, j in enumerate(a):
            loads[j] += sizes[i, j]
        best = min(best, loads.max())
    return best


@settings(max_examples=30, deadline=None)
@given(data=st.data(), n=st.integers(1, 6), m=st.integers(2, 3))
def test_mmbpp_with_loads_and_mask_matches_brute_force(data, n, m):
    """Tests that with initial loads and a mask the solve reaches the brute-force
    optimum (OPTIMAL), honours the mask, and reports a bound <= the optimum."""
    sizes = np.array(
        [data.draw(st.lists(st.integers(1, 9), min_size=m, max_size=m)) for _ in range(n)], float
    )
    initial = np.array(data.draw(st.lists(st.integers(0, 10), min_size=m, max_size=m)), float)
    allowed = np.array(
        [data.draw(st.lists(st.booleans(), min_size=m, max_size=m)) for _ in range(n)], bool
    )
    allowed[:, 0] |= ~allowed.any(axis=1)
    res = solve_assignment(sizes, mip_gap=0.0, initial_loads=initial, allowed=allowed)
    opt = brute_force_general(sizes, initial, allowed)
    assert res.status is SolveStatus.OPTIMAL
    assert res.objective_s == pytest.approx(opt)
    assert allowed[np.arange(n), res.assignment].all()
    assert res.bound_s <= opt + 1e-9


def test_mask_keeps_requests_off_small_clients():
    """Tests a heterogeneous cluster: requests whose reservation exceeds client 1's
    memory never go there, even though that client is empty, and the MIP finds the
    optimum the mask leaves (8 on client 0)."""
    from hybridsched.offline.mmbpp_problem import capacity_mask

    allowed = capacity_mask([100, 100, 10, 10], [200, 50])
    sizes = np.array([4.0, 4.0, 1.0, 1.0])
    res = solve_assignment(sizes, mip_gap=0.0, allowed=allowed)
    assert res.assignment[:2].tolist() == [0, 0]
    assert res.objective_s == 8.0


def test_initial_loads_move_work_to_idle_clients():
    """Tests that committed work counts: with client 0 already 6 s busy, requests
    3, 3, 2, 2 end at 8 (6 + 2 | 3 + 3 + 2), the brute-force optimum, not at 5 as
    without the initial load."""
    sizes = identical([3, 3, 2, 2], 2)
    initial = np.array([6.0, 0.0])
    res = solve_assignment(sizes, mip_gap=0.0, initial_loads=initial)
    assert res.objective_s == brute_force_general(sizes, initial, np.ones((4, 2), bool)) == 8.0
    assert res.to_dict()["objective_s"] == 8.0


def test_warm_start_never_worse_and_recorded():
    """Tests that a warm start better than LPT is used (and recorded), that the result
    is never worse than the warm start, and that a bad warm start still ends optimal."""
    sizes = identical([3, 3, 2, 2, 2], 2)
    good = np.array([0, 0, 1, 1, 1])  # the optimum, 6
    res = solve_assignment(sizes, time_limit_s=0.0, warm_start=good)
    assert res.objective_s == 6.0 and res.warm_start_used and res.to_dict()["warm_start_used"]
    bad = np.array([0, 0, 0, 0, 0])
    res = solve_assignment(sizes, warm_start=bad, mip_gap=0.0)
    assert res.objective_s == 6.0  # the local search repairs it
    rng = np.random.default_rng(4)
    for _ in range(10):
        sz = rng.uniform(0.1, 4.0, (30, 3))
        ws = rng.integers(0, 3, 30)
        r = solve_assignment(sz, time_limit_s=0.5, warm_start=ws)
        assert r.objective_s <= makespan_of(sz, ws) + 1e-12


def test_warm_start_on_forbidden_client_rejected():
    """Tests that a warm start breaking the mask is a ValueError naming the row."""
    allowed = np.array([[True, False], [True, True]])
    with pytest.raises(ValueError, match="warm_start: request 0 is on client 1"):
        solve_assignment(np.ones((2, 2)), warm_start=[1, 0], allowed=allowed)


def test_highspy_missing_degrades_to_heuristic(monkeypatch):
    """Tests that with highspy not importable (sys.modules entry None) the solve returns
    LPT + local search with status FALLBACK and a reason naming highspy."""
    import sys

    monkeypatch.setitem(sys.modules, "highspy", None)
    sizes = identical([3, 3, 3, 1, 1], 2)  # optimum 6 > trivial bound 5.5: solver wanted
    res = solve_assignment(sizes)
    assert res.status is SolveStatus.FALLBACK and not res.solver_used
    assert "highspy not installed" in res.fallback_reason
    assert res.assignment.tolist() == improve_assignment(sizes, lpt_assignment(sizes)).tolist()
    assert res.bound_s <= res.objective_s


def test_within_gap_skips_the_solver(monkeypatch):
    """Tests that when the heuristic already meets the trivial bound the solver is not
    run and the status is OPTIMAL with the reason."""
    monkeypatch.setattr(mmbpp, "run_highs", lambda *a, **k: pytest.fail("solver called"))
    res = solve_assignment(identical([3, 3, 2, 2, 2], 2))
    assert res.status is SolveStatus.OPTIMAL and res.objective_s == 6.0
    assert "within mip_gap" in res.reason and res.fallback_reason is None


def test_large_model_is_not_built(monkeypatch):
    """Tests that above MODEL_MAX_CELLS binaries, or when the build would not fit in the
    time left, the model is not built: FALLBACK with the reason, the heuristic answer."""
    sizes = identical([3, 3, 3, 1, 1], 2)
    monkeypatch.setattr(mmbpp, "build_mmbpp", lambda p: pytest.fail("model built"))
    monkeypatch.setattr(mmbpp, "MODEL_MAX_CELLS", 4)
    res = solve_assignment(sizes)
    assert res.status is SolveStatus.FALLBACK and "model too large" in res.fallback_reason
    monkeypatch.setattr(mmbpp, "MODEL_MAX_CELLS", 10**6)
    monkeypatch.setattr(mmbpp, "BUILD_S_PER_CELL", 1.0)
    res = solve_assignment(sizes, time_limit_s=5.0)
    assert res.status is SolveStatus.FALLBACK and "no time to build" in res.fallback_reason
    assert res.objective_s == 6.0


def test_assignment_bound_is_trivial_at_scale():
    """Tests that the bound used by the lower bound needs no model at scale (equal to
    the trivial bound) and is at least it on small instances."""
    from hybridsched.offline.mmbpp import MODEL_MAX_CELLS, assignment_bound

    rng = np.random.default_rng(0)
    w = rng.uniform(0.1, 5.0, MODEL_MAX_CELLS // 4 + 1)
    assert assignment_bound(w, num_clients=4) == trivial_bound(w, num_clients=4)
    small = identical([3, 3, 3], 2)
    assert trivial_bound(small) <= assignment_bound(small, mip_gap=0.0) <= 6.0


def test_to_dict_records_the_stage():
    """Tests the documented keys of the record (status, reason, time, gap, warm start,
    LPT objective, local search) and that it is JSON-ready."""
    d = solve_assignment(identical([3, 3, 3, 1, 1], 2)).to_dict()
    for key in (
        "status",
        "reason",
        "fallback_reason",
        "runtime_s",
        "gap",
        "bound_s",
        "warm_start_used",
        "lpt_objective_s",
        "solver_used",
        "local_search_rounds",
        "deadline_hit",
        "start",
    ):
        assert key in d, key
    json.dumps(d, allow_nan=False)
