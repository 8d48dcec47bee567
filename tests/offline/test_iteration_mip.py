"""Tests for hybridsched.iteration_mip: the exact iteration MIP against brute force."""

from __future__ import annotations

import itertools
import json
import math
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridsched.offline.heuristics import lpt_assignment
from hybridsched.offline.iteration_instance import LinearCoefficients
from hybridsched.offline.iteration_mip import solve_iteration_mip
from hybridsched.offline.iteration_model import build_iteration_model
from hybridsched.offline.solver_status import SolveStatus


def identical(work, num_clients):
    """(n, m) sizes for identical clients from a work vector."""
    return np.tile(np.asarray(work, dtype=float)[:, None], (1, num_clients))


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


def test_iteration_mip_is_quiet(capfd):
    """Tests that a solve prints no solver log to stdout or stderr."""
    solve_iteration_mip([1, 2], [2, 2], 1, 2, 50, COEF)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_iteration_mip_without_highspy_falls_back(monkeypatch):
    """Tests that with highspy not importable the exact MIP returns FALLBACK with no
    schedule and a reason naming highspy, instead of an ImportError."""
    import sys

    monkeypatch.setitem(sys.modules, "highspy", None)
    res = solve_iteration_mip([1, 2], [2, 2], 1, 2, 50, COEF)
    assert res.status is SolveStatus.FALLBACK and res.actions is None
    assert "highspy not installed" in res.fallback_reason
