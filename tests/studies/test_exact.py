"""The exact iteration MIP against the simulator, the heuristics and the lower bound."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridsched.bounds.lower_bound import lower_bound
from hybridsched.instance import Client, Instance
from hybridsched.latency.linear import LinearLatency, fit_linear
from hybridsched.latency.profiles import load_hardware_profile, load_model_profile
from hybridsched.latency.roofline import RooflineLatency
from hybridsched.offline.iteration_instance import LinearCoefficients
from hybridsched.offline.iteration_mip import solve_iteration_mip
from hybridsched.offline.solver_status import SolveStatus
from hybridsched.policies.registry import POLICIES
from hybridsched.policies.scripted import Scripted
from hybridsched.policies.static import simulate
from hybridsched.studies.run import run_policy
from hybridsched.trace.check import check_trace


def _fitted() -> LinearLatency:
    roof = RooflineLatency(
        load_model_profile("llama-65b"), load_hardware_profile("a100-80gb-sxm"), 4
    )
    return fit_linear(roof, 2).model


CASES = [
    # (prompt tokens, output tokens, clients, B, M)
    ([40, 90, 60], [3, 2, 4], 1, 2, 10**6),
    ([120, 30, 75, 50], [2, 4, 3, 1], 1, 2, 10**6),
    ([64, 64, 200, 30], [4, 3, 2, 3], 2, 2, 10**6),
    ([100, 150, 80], [3, 3, 2], 1, 3, 400),  # memory binds before B
    ([300, 20, 20, 20, 20], [2, 3, 3, 2, 2], 2, 2, 10**6),
]


@pytest.fixture(scope="module")
def solved():
    """Each tiny case solved to optimality by the exact MIP with the roofline's linear fit."""
    lat = _fitted()
    coef = LinearCoefficients(lat.a_p, lat.b_p, lat.a_d, lat.b_d, lat.c_d)
    out = []
    for s, o, m, B, M in CASES:
        res = solve_iteration_mip(np.array(s), np.array(o), m, B, M, coef, time_limit_s=60)
        inst = Instance(
            pd.DataFrame({"prompt_tokens": s, "output_tokens": o}),
            tuple(Client(B, M, lat) for _ in range(m)),
        )
        out.append((inst, res))
    return out


def test_mip_is_solved_to_optimality(solved):
    """Tests that every tiny case is solved to proven optimality (the other checks rely on it)."""
    for _, res in solved:
        assert res.status == SolveStatus.OPTIMAL
        assert res.bound_s <= res.makespan_s * (1 + 1e-9)


def test_mip_schedule_replays_to_the_same_makespan(solved):
    """Tests that the MIP's schedule, replayed through the simulator under the same linear model, keeps every invariant and gives the same makespan (relative error < 1e-6)."""
    for inst, res in solved:
        trace = simulate(inst, res.assignment.astype(np.int64), Scripted(res.actions))
        check_trace(trace, inst, assignment=res.assignment)
        assert trace["end_s"].max() == pytest.approx(res.makespan_s, rel=1e-6)


def test_bound_below_optimum_below_every_heuristic(solved):
    """Tests that T_LB <= MIP optimum <= the makespan of every named prefill/decode policy on
    each tiny case (chunked-prefill policies, outside the MIP's model, meet their own bound)."""
    for inst, res in solved:
        lb = lower_bound(inst).lower_bound_s
        assert lb <= res.makespan_s * (1 + 1e-9)
        for p in POLICIES:
            t = run_policy(inst, p, check=True).metrics["makespan_s"]
            if POLICIES[p].mixed:
                # Chunked prefill is outside the MIP's model (no mixed iterations): it may
                # beat T*, but never its own bound.
                assert lower_bound(inst, mixed_iterations=True).lower_bound_s <= t * (1 + 1e-9)
                continue
            if POLICIES[p].admission != "reservation":
                # On-demand admission is outside the MIP's model too (it admits on use).
                lb = lower_bound(inst, reservation_admission=False).lower_bound_s
                assert lb <= t * (1 + 1e-9)
                continue
            assert res.makespan_s <= t * (1 + 1e-9), (p, res.makespan_s, t)


def test_mip_beats_a_heuristic_somewhere(solved):
    """Tests that the optimum is strictly better than the baseline on at least one case (the oracle has teeth)."""
    gains = [
        run_policy(inst, "baseline").metrics["makespan_s"] - res.makespan_s for inst, res in solved
    ]
    assert max(gains) > 1e-6


def test_exact_claim_is_built_from_the_results():
    """Tests the index's line of the exact MIP notebook: the instance, T* and its status,
    the certified policies and the replay's makespan, each from the results."""
    from hybridsched import reports
    from hybridsched.instance import Cluster, linear_instance, make_instance
    from hybridsched.studies.bounds import full_lower_bound
    from hybridsched.studies.exact import exact_claim, solve_exact

    requests = pd.DataFrame({"prompt_tokens": [180, 60, 120], "output_tokens": [3, 2, 4]})
    roof = make_instance(requests, Cluster(num_clients=2, tp=4, max_batch=2))
    inst = linear_instance(roof, fit_linear(roof.clients[0].latency, 2).model)
    exact = solve_exact(inst, time_limit_s=60)
    bound = full_lower_bound(inst)
    runs = {p: run_policy(inst, p).metrics for p in ("baseline", "hybrid")}
    table = reports.exact_table({"exact MIP": exact.metrics, **runs}, bound)
    claim = exact_claim(exact, table, bound.lower_bound_s, inst)
    t_opt = exact.mip.makespan_s
    assert claim.startswith("On a tiny instance (3 requests, 2 clients, B=2, linear latency)")
    assert f"T* = {t_opt:.4f} s (proven optimal)" in claim
    assert f"T_LB = {bound.lower_bound_s:.4f} s <= T* <= T(policy) for 2 of 2 policies" in claim
    gaps = table.set_index("policy").loc[["baseline", "hybrid"], "gap_to_optimum"]
    best, gap = gaps.idxmin(), gaps.min()
    assert gap > 1e-6  # no policy reaches T* on this instance
    assert f"replays in the simulator in {exact.metrics['makespan_s']:.4f} s;" in claim
    assert claim.endswith(f"the closest policy, {best}, ends {gap:.1%} above T*.")
    for gaps, end in (
        ([0.0, 0.0, 0.1], "; 1 policy reaches T*."),
        ([0, 0, 0], "; every policy reaches T*."),
    ):
        tied = table.assign(gap_to_optimum=gaps)  # the optimum's row, then the two policies
        assert exact_claim(exact, tied, bound.lower_bound_s, inst).endswith(end)
