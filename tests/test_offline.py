"""Tests for hybridsched.offline: MMBPP assignment and the exact iteration MIP."""

from __future__ import annotations

import itertools
import json
import math
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridsched import offline
from hybridsched.offline import (
    AssignmentResult,
    LinearCoefficients,
    SolveStatus,
    build_assignment_model,
    build_iteration_model,
    improve_assignment,
    lpt_assignment,
    solve_assignment,
    solve_iteration_mip,
    trivial_bound,
)

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
    res = solve_assignment(sizes, time_limit_s=0.3)
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


def test_time_limit_zero_returns_heuristic_without_solver(monkeypatch):
    """Tests that time_limit_s=0 returns the heuristic (LPT improved by local search) with
    status FALLBACK and the documented reason, without calling HiGHS."""
    calls = []
    monkeypatch.setattr(offline, "_run_highs", lambda *a, **k: calls.append(1))
    sizes = identical([3, 3, 2, 2, 2], 2)
    res = solve_assignment(sizes, time_limit_s=0)
    assert calls == []
    assert res.status is SolveStatus.FALLBACK
    assert res.fallback_reason == "time limit 0 s: no solve"
    expected = improve_assignment(sizes, lpt_assignment(sizes))
    assert res.assignment.tolist() == expected.tolist()
    assert res.lpt_objective_s == 7.0
    assert res.objective_s == 6.0  # local search swaps a 3 for two 2s
    assert res.bound_s == 6.0


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

    monkeypatch.setattr(offline, "_run_highs", boom)
    sizes = identical([5, 4, 3, 3, 3], 2)
    res = solve_assignment(sizes)
    assert res.status is SolveStatus.FALLBACK
    assert "highs exploded" in res.fallback_reason and "local search" in res.fallback_reason
    assert res.assignment.tolist() == improve_assignment(sizes, lpt_assignment(sizes)).tolist()
    assert res.bound_s <= res.objective_s


def test_missing_highspy_gives_fallback(monkeypatch):
    """Tests that an unavailable HiGHS (highspy missing) gives FALLBACK with the LPT-based heuristic and a
    reason saying so, through the real solver wrapper."""
    from pyomo.contrib.appsi.solvers import Highs

    monkeypatch.setattr(Highs, "available", lambda self: Highs.Availability.NotFound)
    sizes = identical([5, 4, 3, 3, 3], 2)
    res = solve_assignment(sizes)
    assert res.status is SolveStatus.FALLBACK
    assert "highspy is not available" in res.fallback_reason
    assert res.assignment.tolist() == improve_assignment(sizes, lpt_assignment(sizes)).tolist()


def test_solve_is_quiet(capfd):
    """Tests that a solve prints no solver log to stdout or stderr."""
    solve_assignment(identical([3, 3, 2, 2, 2], 2))
    solve_iteration_mip([1, 2], [2, 2], 1, 2, 50, COEF)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_no_incumbent_gives_fallback(monkeypatch):
    """Tests that a solver end without an incumbent gives FALLBACK with the LPT-based heuristic, a reason
    naming the termination, and the trivial bound."""
    out = offline._HighsOutcome("maxTimeLimit", False, -math.inf, None)
    monkeypatch.setattr(offline, "_run_highs", lambda *a, **k: out)
    sizes = identical([5, 4, 3, 3, 3], 2)
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
    out = offline._HighsOutcome("maxTimeLimit", True, solver_bound, {"x": x.ravel()})
    monkeypatch.setattr(offline, "_run_highs", lambda *a, **k: out)
    res = solve_assignment(sizes)
    assert res.status is SolveStatus.FEASIBLE
    assert res.assignment.tolist() == lpt_assignment(sizes).tolist()
    assert res.objective_s == 6.0 and res.bound_s == expected_bound


def test_solve_status_mapping():
    """Tests the single Pyomo-to-SolveStatus mapping, including the case where our own
    bound proves a time-limited incumbent within the gap."""
    from pyomo.contrib.appsi.base import TerminationCondition as TC

    assert offline._solve_status(TC.optimal, True) is SolveStatus.OPTIMAL
    assert offline._solve_status(TC.maxTimeLimit, True, 0.01, 1e-4) is SolveStatus.FEASIBLE
    assert offline._solve_status(TC.maxTimeLimit, True, 0.0, 1e-4) is SolveStatus.OPTIMAL
    assert offline._solve_status(TC.maxTimeLimit, False) is SolveStatus.FALLBACK
    assert offline._solve_status(TC.error, False) is SolveStatus.FALLBACK


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
        ({"sizes": np.ones(3)}, "sizes: expected a 2-D"),
        ({"sizes": np.array([[1.0, 1.0], [1.0, -2.0]])}, "sizes: request 1 .* client 1"),
        ({"sizes": np.array([[1.0], [0.0]])}, "sizes: request 1"),
        ({"sizes": np.array([[1.0], [np.nan]])}, "sizes: request 1"),
        ({"time_limit_s": -1.0}, "time_limit_s"),
        ({"time_limit_s": float("nan")}, "time_limit_s"),
        ({"mip_gap": -0.1}, "mip_gap"),
        ({"threads": 0}, "threads"),
        ({"warm_start": np.array([0, 1])}, "warm_start"),
        ({"warm_start": np.array([0, 1, 2])}, "warm_start: request 2"),
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


# --------------------------------------------------------------------------------------
# Exact iteration MIP: an independent brute force over all schedules
# --------------------------------------------------------------------------------------

COEF = LinearCoefficients(a_p=0.05, b_p=0.004, a_d=0.02, b_d=0.003, c_d=0.0005)


def t_prefill(coef, prompts):
    return coef.a_p + coef.b_p * sum(prompts)


def t_decode(coef, contexts):
    return coef.a_d + coef.b_d * len(contexts) + coef.c_d * sum(contexts)


def brute_force_client(s, o, res, reqs, B, M, budget, coef):
    """Least completion time of one client over every schedule (exhaustive DP).

    State: waiting requests and, for each running request, its decode steps done. At a
    boundary a schedule may decode the whole running batch or prefill any non-empty
    subset of waiting requests that fits slots, reserved memory and the budget.
    """

    @cache
    def best(waiting, running):
        if not waiting and not running:
            return 0.0
        options = []
        if running:
            ctx = [s[i] + done + 1 for i, done in running]
            nxt = tuple((i, d + 1) for i, d in running if d + 1 < o[i] - 1)
            options.append(t_decode(coef, ctx) + best(waiting, nxt))
        held = sum(res[i] for i, _ in running)
        for r in range(1, len(waiting) + 1):
            for p in itertools.combinations(waiting, r):
                if len(running) + r > B or held + sum(res[i] for i in p) > M:
                    continue
                if r > 1 and sum(s[i] for i in p) > budget:
                    continue
                nxt = tuple(sorted(running + tuple((i, 0) for i in p if o[i] > 1)))
                rest = tuple(i for i in waiting if i not in p)
                options.append(t_prefill(coef, [s[i] for i in p]) + best(rest, nxt))
        return min(options) if options else math.inf

    return best(tuple(sorted(reqs)), ())


def brute_force_makespan(s, o, num_clients, B, M, budget, coef, res=None):
    res = [a + b for a, b in zip(s, o, strict=True)] if res is None else res
    n = len(s)
    best = math.inf
    for assign in itertools.product(range(num_clients), repeat=n):
        times = [
            brute_force_client(
                tuple(s),
                tuple(o),
                tuple(res),
                [i for i in range(n) if assign[i] == j],
                B,
                M,
                budget,
                coef,
            )
            for j in range(num_clients)
        ]
        best = min(best, max(times))
    return best


def replay_actions(actions, s, o, res, B, M, budget, coef):
    """Independent replay of a schedule: checks every rule and returns the makespan."""
    seen = []
    times = []
    for acts in actions.values():
        running, t = {}, 0.0
        for kind, ids in acts:
            if kind == "prefill":
                assert ids and len(running) + len(ids) <= B
                assert sum(res[i] for i in list(running) + list(ids)) <= M
                assert len(ids) == 1 or sum(s[i] for i in ids) <= budget
                t += t_prefill(coef, [s[i] for i in ids])
                seen.extend(ids)
                running.update({i: 0 for i in ids if o[i] > 1})
            else:
                assert kind == "decode" and ids == () and running
                t += t_decode(coef, [s[i] + d + 1 for i, d in running.items()])
                running = {i: d + 1 for i, d in running.items() if d + 1 < o[i] - 1}
        assert not running
        times.append(t)
    assert sorted(seen) == list(range(len(s)))
    return max(times)


def greedy_makespan(s, o, num_clients, B, M, budget, coef):
    """LPT on s+o, then prefill-first FCFS on each client (the simulator's baseline rule)."""
    res = [a + b for a, b in zip(s, o, strict=True)]
    assign = lpt_assignment(identical(res, num_clients))
    times = []
    for j in range(num_clients):
        queue = [i for i in range(len(s)) if assign[i] == j]
        running, t = {}, 0.0
        while queue or running:
            p = []
            for i in queue:
                fits = len(running) + len(p) + 1 <= B
                fits &= sum(res[k] for k in list(running) + p + [i]) <= M
                fits &= not p or sum(s[k] for k in p + [i]) <= budget
                if not fits:
                    break
                p.append(i)
            if p:
                t += t_prefill(coef, [s[i] for i in p])
                queue = queue[len(p) :]
                running.update({i: 0 for i in p if o[i] > 1})
            else:
                t += t_decode(coef, [s[i] + d + 1 for i, d in running.items()])
                running = {i: d + 1 for i, d in running.items() if d + 1 < o[i] - 1}
        times.append(t)
    return max(times)


TINY = {
    # name: (prompt, output, clients, B, M, budget)
    "slots_bind": ([3, 5, 2], [2, 4, 1], 1, 2, 100, 2048),
    "memory_binds": ([4, 2, 3], [3, 2, 4], 1, 3, 12, 2048),
    "budget_binds_oversized_alone": ([6, 5, 9], [3, 1, 2], 1, 3, 100, 8),
    "two_clients": ([3, 5, 2, 4], [2, 4, 1, 3], 2, 2, 100, 2048),
}


@pytest.mark.parametrize("name", list(TINY))
def test_iteration_mip_matches_brute_force(name):
    """Tests that the exact MIP's optimum equals exhaustive enumeration of all schedules
    (slot-, memory- and budget-bound cases, one and two clients), and that its schedule
    replays under independently coded rules to the reported makespan."""
    s, o, J, B, M, budget = TINY[name]
    res = solve_iteration_mip(s, o, J, B, M, COEF, prefill_budget_tokens=budget)
    opt = brute_force_makespan(s, o, J, B, M, budget, COEF)
    assert res.status is SolveStatus.OPTIMAL
    assert res.makespan_s == pytest.approx(opt, abs=1e-5)
    res_tokens = [a + b for a, b in zip(s, o, strict=True)]
    assert replay_actions(res.actions, s, o, res_tokens, B, M, budget, COEF) == pytest.approx(
        res.makespan_s, rel=1e-9
    )
    # the MIP's objective is the replayed makespan (catches a wrong per-request constant)
    assert res.bound_s <= res.makespan_s
    assert res.bound_s == pytest.approx(res.makespan_s, abs=1e-5)
    for j, acts in res.actions.items():
        prefilled = sorted(i for kind, ids in acts if kind == "prefill" for i in ids)
        assert prefilled == [i for i in range(len(s)) if res.assignment[i] == j]
    json.dumps(res.to_dict(), allow_nan=False)


@settings(max_examples=12, deadline=None)
@given(
    s=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    o_seed=st.lists(st.integers(1, 4), min_size=3, max_size=3),
    B=st.integers(1, 3),
    slack=st.integers(0, 10),
)
def test_iteration_mip_matches_brute_force_random(s, o_seed, B, slack):
    """Tests MIP optimum == brute-force optimum on random one-client instances, with a
    KV capacity from just enough for the largest request to ample."""
    o = o_seed[: len(s)]
    M = max(a + b for a, b in zip(s, o, strict=True)) + slack
    res = solve_iteration_mip(s, o, 1, B, M, COEF, prefill_budget_tokens=8)
    opt = brute_force_makespan(s, o, 1, B, M, 8, COEF)
    assert res.makespan_s == pytest.approx(opt, abs=1e-5)


def test_iteration_mip_two_clients_beats_greedy():
    """Tests that on a 2-client instance the MIP makespan is <= the makespan of LPT plus
    prefill-first FCFS (a feasible schedule the MIP can express; here the MIP is about
    10% shorter) and equals the brute-force optimum."""
    s, o, B, M, budget = [6, 2, 5, 3, 4], [3, 2, 1, 3, 2], 2, 14, 9
    res = solve_iteration_mip(s, o, 2, B, M, COEF, prefill_budget_tokens=budget)
    greedy = greedy_makespan(s, o, 2, B, M, budget, COEF)
    assert res.status is SolveStatus.OPTIMAL
    assert res.makespan_s <= greedy + 1e-9
    assert res.makespan_s == pytest.approx(
        brute_force_makespan(s, o, 2, B, M, budget, COEF), abs=1e-5
    )
    res_tokens = [a + b for a, b in zip(s, o, strict=True)]
    assert replay_actions(res.actions, s, o, res_tokens, B, M, budget, COEF) == pytest.approx(
        res.makespan_s, rel=1e-9
    )


def test_iteration_mip_custom_reservation_binds():
    """Tests that reservation_tokens overrides s+o: with reservations that fill memory,
    two requests can never share a batch, and the optimum matches brute force."""
    s, o = [2, 2], [3, 3]
    res = solve_iteration_mip(s, o, 1, 2, 10, COEF, reservation_tokens=[6, 6])
    opt = brute_force_makespan(s, o, 1, 2, 10, 2048, COEF, res=[6, 6])
    assert res.makespan_s == pytest.approx(opt, abs=1e-5)
    assert all(len(ids) == 1 for kind, ids in res.actions[0] if kind == "prefill")


def test_build_iteration_model_sizes_and_default_k():
    """Tests the default K = n + sum(o_i - 1) and the documented component names."""
    m = build_iteration_model([1, 2], [3, 1], 1, 2, 50, COEF)
    assert len(m.ITERATIONS) == 2 + 2
    for name in ("x", "p", "f", "a", "up", "ud", "makespan", "assign_once", "decode_count"):
        assert hasattr(m, name)
    assert len(m.p) == 2 * 1 * 4


def test_iteration_mip_time_limit_zero_fallback():
    """Tests that time_limit_s=0 returns FALLBACK with no schedule and a reason."""
    res = solve_iteration_mip([1, 2], [2, 2], 1, 2, 50, COEF, time_limit_s=0)
    assert res.status is SolveStatus.FALLBACK
    assert res.makespan_s is None and res.actions is None and res.assignment is None
    assert res.fallback_reason == "time limit 0 s: no solve"
    json.dumps(res.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"output_tokens": [0, 2]}, "output_tokens: request 0"),
        ({"output_tokens": [2]}, "output_tokens"),
        ({"prompt_tokens": []}, "prompt_tokens: no requests"),
        ({"kv_capacity_tokens": 3}, "reservation_tokens: request"),
        ({"max_batch": 0}, "max_batch"),
        ({"num_clients": 0}, "num_clients"),
        ({"num_iterations": 0}, "num_iterations"),
    ],
)
def test_iteration_bad_inputs_raise(kwargs, match):
    """Tests that invalid iteration-MIP inputs raise ValueError naming the field."""
    args = (
        dict(
            prompt_tokens=[1, 2],
            output_tokens=[2, 2],
            num_clients=1,
            max_batch=2,
            kv_capacity_tokens=50,
            coef=COEF,
        )
        | kwargs
    )
    with pytest.raises(ValueError, match=match):
        build_iteration_model(**args)


def test_linear_coefficients_reject_non_finite():
    """Tests that a non-finite latency coefficient is rejected by name."""
    with pytest.raises(ValueError, match="b_d"):
        LinearCoefficients(a_p=0.0, b_p=0.0, a_d=0.0, b_d=float("inf"), c_d=0.0)


def test_assignment_result_is_frozen():
    """Tests that results cannot be mutated in place (record and array)."""
    res = solve_assignment(identical([1, 2], 1))
    assert isinstance(res, AssignmentResult)
    with pytest.raises(AttributeError):
        res.status = SolveStatus.FEASIBLE
    with pytest.raises(ValueError):
        res.assignment[0] = 0
