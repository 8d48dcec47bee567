"""The portfolio planner (hybrid-robust): never worse than the baseline or the hybrid when
predictions are exact, planned on predictions only, and optimal where the MIP can tell."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridsched.instance import Client, Instance
from hybridsched.latency.linear import LinearLatency
from hybridsched.offline.mmbpp import solve_assignment
from hybridsched.policies.portfolio import plan
from hybridsched.policies.registry import SolveSettings
from hybridsched.studies.exact import solve_exact
from hybridsched.studies.run import run_policy

LAT = LinearLatency(0.02, 2e-5, 0.01, 1e-4, 1e-7)
FAST = SolveSettings(time_limit_s=2.0, mip_gap=1e-3)


@st.composite
def instances(draw):
    n = draw(st.integers(2, 14))
    J = draw(st.integers(1, 3))
    s = draw(st.lists(st.integers(5, 400), min_size=n, max_size=n))
    o = draw(st.lists(st.integers(1, 30), min_size=n, max_size=n))
    need = max(a + b for a, b in zip(s, o, strict=True))
    M = draw(st.sampled_from([need, need + sum(s) // 3, 10**6]))
    B = draw(st.integers(1, 4))
    req = pd.DataFrame({"prompt_tokens": s, "output_tokens": o})
    return Instance(req, tuple(Client(B, M, LAT) for _ in range(J)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_never_worse_than_baseline_or_hybrid(inst):
    """Tests that with exact predictions hybrid-robust's makespan is at most the baseline's and
    the paper hybrid's, and that its trace keeps every invariant."""
    robust = run_policy(inst, "hybrid-robust", solve=FAST, check=True).metrics["makespan_s"]
    for p in ("baseline", "hybrid"):
        assert robust <= run_policy(inst, p, solve=FAST).metrics["makespan_s"] * (1 + 1e-12), p


def test_plan_sees_only_predictions():
    """Tests that the plan depends on the predicted lengths only: changing the true output
    lengths (same predictions) leaves the chosen candidate and every predicted makespan alone."""
    rng = np.random.default_rng(3)
    s, pred = rng.integers(10, 200, 12), rng.integers(2, 20, 12)
    lo = pd.DataFrame({"prompt_tokens": s, "output_tokens": pred, "predicted_output_tokens": pred})
    hi = lo.assign(output_tokens=pred + rng.integers(0, 5, 12))
    clients = (Client(3, 10**6, LAT), Client(3, 10**6, LAT))

    def assign(sizes):
        return solve_assignment(sizes, time_limit_s=2).assignment

    a, b = plan(Instance(lo, clients), assign), plan(Instance(hi, clients), assign)
    assert a.name == b.name and a.candidates == b.candidates
    np.testing.assert_array_equal(a.assignment, b.assignment)


@pytest.mark.slow
def test_optimal_on_tiny_instances_where_the_hybrid_is_not():
    """Tests on tiny instances solved by the exact MIP that hybrid-robust is never below the
    optimum (a valid schedule) and matches it where the paper hybrid does not."""
    cases = [
        ([40, 90, 60], [3, 2, 4], 1, 2, 10**6),
        ([100, 150, 80], [3, 3, 2], 1, 3, 400),
        ([300, 20, 20, 20, 20], [2, 3, 3, 2, 2], 2, 2, 10**6),
    ]
    for s, o, J, B, M in cases:
        req = pd.DataFrame({"prompt_tokens": s, "output_tokens": o})
        inst = Instance(req, tuple(Client(B, M, LAT) for _ in range(J)))
        opt = solve_exact(inst, time_limit_s=60).mip.makespan_s
        robust = run_policy(inst, "hybrid-robust", solve=FAST).metrics["makespan_s"]
        hybrid = run_policy(inst, "hybrid", solve=FAST).metrics["makespan_s"]
        assert opt * (1 - 1e-6) <= robust <= hybrid * (1 + 1e-12)
        assert robust == pytest.approx(opt, rel=1e-6)
