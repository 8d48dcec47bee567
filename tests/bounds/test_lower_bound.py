"""Tests for hybridsched.bounds: the makespan lower bound T_LB and its parts (docs/model.md 5).

The central property is validity: no schedule the simulator produces beats the bound. It is
checked on random instances (roofline and linear latencies, slot- and memory-bound clients)
against every named policy of ``POLICIES``. All shipped rules admit by
reservation, so the reservation-share part (``volume_reserved``) is checked against them too.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridsched import studies
from hybridsched.bounds.floors import critical_paths, planning_sizes, work_floors
from hybridsched.bounds.lower_bound import ASSUMES, lower_bound, volume
from hybridsched.engine.schema import KVOverflowError
from hybridsched.instance import Client, Cluster, Instance, make_instance
from hybridsched.latency.linear import LinearLatency
from hybridsched.policies.registry import POLICIES, SolveSettings, make_rule
from hybridsched.policies.static import round_robin, simulate
from hybridsched.studies.run import run_policy

RTOL = 1e-9
PARTS = ("volume_memory", "volume_compute", "volume_reserved", "critical_path")


@cache
def roofline(tp: int):
    """The shipped LLaMA-65B / A100 roofline of a tp-GPU replica (KV capacity included)."""
    return Cluster(tp=tp).make_clients()[0].latency


def assert_bound_holds(lb, makespan: float, where: str = "") -> None:
    """T >= T_LB and T >= every part, to a relative tolerance of 1e-9."""
    slack = makespan * (1 + RTOL)
    assert lb.lower_bound_s <= slack, (
        f"{where}: T={makespan!r} < T_LB={lb.lower_bound_s!r} ({lb.binding})"
    )
    assert lb.tight_lower_bound_s <= slack, f"{where}: T={makespan!r} < tight T_LB"
    for name, value in lb.all_parts().items():
        assert value <= slack, f"{where}: T={makespan!r} < {name}={value!r}"


# b_p > 0: with b_p = 0 a one-token request has zero planning size, which the MMBPP refuses.
linear_latencies = st.builds(
    LinearLatency,
    a_p=st.floats(1e-4, 0.1),
    b_p=st.floats(1e-7, 1e-3),
    a_d=st.floats(1e-4, 0.1),
    b_d=st.floats(0.0, 1e-3),
    c_d=st.floats(0.0, 1e-5),
)


@st.composite
def random_instances(draw) -> Instance:
    """1-40 requests (s in 1..300, o and o_hat in 1..200) on 1-3 clients with B in 1..8 each,
    roofline (tp 2 or 4) or linear latency; KV capacity natural or binding (just above the
    largest request)."""
    n = draw(st.integers(1, 40))
    s = draw(st.lists(st.integers(1, 300), min_size=n, max_size=n))
    o = draw(st.lists(st.integers(1, 200), min_size=n, max_size=n))
    if draw(st.booleans()):
        o_hat = o
    else:
        o_hat = draw(st.lists(st.integers(1, 200), min_size=n, max_size=n))
    kind = draw(st.sampled_from(["roofline-2", "roofline-4", "linear"]))
    if kind == "linear":
        lat = draw(linear_latencies)
        natural = 10**6
    else:
        lat = roofline(int(kind[-1]))
        natural = lat.kv_capacity_tokens
    need = max(a + max(b, c) for a, b, c in zip(s, o, o_hat, strict=True))
    if draw(st.booleans()):  # memory-bound: room for about one to four requests
        M = need + draw(st.integers(0, 3 * need))
    else:
        M = natural
    J = draw(st.integers(1, 3))
    clients = tuple(Client(draw(st.integers(1, 8)), M, lat) for _ in range(J))
    req = pd.DataFrame({"prompt_tokens": s, "output_tokens": o, "predicted_output_tokens": o_hat})
    return Instance(req, clients)


@settings(max_examples=200)
@given(random_instances(), st.randoms(use_true_random=False))
def test_lower_bound_valid_for_every_policy(inst, rnd):
    """Tests on random instances that the makespan of every named policy (its rule under
    round-robin and under a random assignment) is >= T_LB and >= each part of the bound,
    including the reservation-share part (every shipped rule admits by reservation)."""
    lb = lower_bound(inst)
    lb_mixed = lower_bound(inst, mixed_iterations=True)
    assert lb.reservation_admission
    assert lb_mixed.lower_bound_s <= lb.lower_bound_s * (1 + 1e-12)
    assignments = {
        "round-robin": round_robin(inst),
        "random": np.array(
            [rnd.randrange(inst.num_clients) for _ in range(inst.num_requests)], dtype=np.int64
        ),
    }
    for name, spec in POLICIES.items():
        rule = make_rule(spec)
        for how, a in assignments.items():
            if how == "round-robin" or spec.dispatch == "mmbpp":
                try:
                    trace = simulate(inst, a, rule)
                except KVOverflowError:
                    # Under-predicted lengths outgrew the reservation: the simulator
                    # refuses (no schedule), which is what this error documents.
                    assert (inst.predicted < inst.output).any()
                    continue
                bound = lb_mixed if spec.mixed else lb  # chunked prefill: the mixed bound
                # simulate() is the paper's setting: reservation admission for every rule.
                assert_bound_holds(bound, float(trace["end_s"].max()), f"{name}/{how}")


@settings(max_examples=12)
@given(random_instances())
def test_lower_bound_valid_for_run_policy_with_mmbpp(inst):
    """Tests on random instances that studies.run_policy with the solved MMBPP dispatch
    (policies b, c and hybrid share one solve) gives makespans >= the full T_LB, whose MMBPP part
    is solved on the true floors, and that the traces pass the invariant checks whenever the
    predictions do not undershoot (an undershoot can overflow KV: the extension of section 8)."""
    solve = SolveSettings(time_limit_s=0.5, mip_gap=1e-3)
    lb = studies.full_lower_bound(inst, solve=solve)
    lb_mixed = studies.full_lower_bound(inst, solve=solve, mixed_iterations=True)
    check = bool((inst.predicted >= inst.output).all())
    a, info = studies.offline_assignment(inst, "mmbpp", solve)
    assert info["dispatch"] == "mmbpp"
    for name in POLICIES:
        given_a = a if POLICIES[name].dispatch == "mmbpp" else None
        try:
            r = run_policy(inst, name, solve=solve, check=check, assignment=given_a)
        except KVOverflowError:
            assert not check  # only under-predicted lengths can overflow
            continue
        except ValueError as e:  # fits in tokens, not in vLLM's 16-token blocks: refused
            assert POLICIES[name].admission == "on-demand" and "KV blocks" in str(e), e
            continue
        bound = studies.bound_for(name, lb, lb_mixed)
        if r.admission == "on-demand":
            bound = studies.full_lower_bound(
                inst, solve=solve, mixed_iterations=POLICIES[name].mixed, admission="on-demand"
            )
        assert_bound_holds(bound, r.metrics["makespan_s"], name)


@settings(max_examples=50)
@given(
    s=st.integers(1, 2000),
    o=st.integers(1, 300),
    lat=st.one_of(st.sampled_from([2, 4, 8]).map(roofline), linear_latencies),
    J=st.integers(1, 3),
    B=st.integers(1, 32),
)
def test_one_request_critical_path_is_the_makespan(s, o, lat, J, B):
    """Tests that for a single request the critical-path part equals the simulated makespan
    (prefill alone, then o - 1 decode steps alone) and hence T_LB equals it too."""
    req = pd.DataFrame({"prompt_tokens": [s], "output_tokens": [o]})
    inst = Instance(req, (Client(B, s + o + 10, lat),) * J)
    trace = simulate(inst, np.array([J - 1]), make_rule(POLICIES["hybrid"]))
    T = float(trace["end_s"].max())
    lb = lower_bound(inst)
    assert lb.critical_path_s == pytest.approx(T, rel=1e-12)
    assert lb.lower_bound_s == pytest.approx(T, rel=1e-12)
    # By hand: the same sum, one step at a time.
    by_hand = float(lat.prefill_time(s, s * s)) + sum(
        float(lat.decode_time(1, s + t)) for t in range(1, o)
    )
    assert T == pytest.approx(by_hand, rel=1e-12)


@pytest.fixture(scope="module")
def memory_bound_300():
    """The first 300 GSM8K requests on 4 clients of tp=2, B=32, with the MMBPP dispatch solved once:
    enough requests that the reservation share, not the critical path, binds."""
    from hybridsched.workloads.requests import load_gsm8k

    inst = make_instance(
        load_gsm8k().iloc[:300].reset_index(drop=True), Cluster(num_clients=4, tp=2)
    )
    a, _ = studies.offline_assignment(inst, "mmbpp", SolveSettings(time_limit_s=2.0))
    return inst, a


@pytest.mark.parametrize("policy", list(POLICIES))
def test_reserved_bound_binds_and_holds_on_memory_bound_clients(memory_bound_300, policy):
    """Tests that on memory-bound clients (4 x tp=2, 300 GSM8K requests) the reservation-share part
    is the binding part, well above the slot share, and every named policy, dispatched as
    documented, passes the trace checks and still meets it."""
    inst, mmbpp = memory_bound_300
    lb = lower_bound(inst)
    assert lb.binding == "volume_reserved"
    assert lb.volume_reserved_s > 1.3 * lb.volume_memory_s
    a = mmbpp if POLICIES[policy].dispatch == "mmbpp" else None
    r = run_policy(inst, policy, check=True, assignment=a)
    lb_mixed = lower_bound(inst, mixed_iterations=True)
    assert lb_mixed.binding == "volume_reserved"
    if r.admission == "on-demand":  # the reservation share is not valid for it
        lb = lower_bound(inst, reservation_admission=False)
        lb_mixed = lower_bound(inst, reservation_admission=False, mixed_iterations=True)
    assert_bound_holds(studies.bound_for(policy, lb, lb_mixed), r.metrics["makespan_s"], policy)


# --------------------------------------------------------------------------------------
# Known values (docs/model.md 5)
# --------------------------------------------------------------------------------------


def test_known_values_default_single_case():
    """Tests that on the default single case (1,319 GSM8K requests, 2 clients tp=4, B=32) the
    slot-share volume bound is about 91.15 s and binds (memory never binds on tp=4)."""
    lb = lower_bound(make_instance())
    assert lb.volume_memory_s == pytest.approx(91.15, abs=0.005)
    assert lb.binding == "volume_memory"
    assert lb.lower_bound_s == lb.volume_memory_s
    assert lb.volume_reserved_s < lb.volume_memory_s


def test_known_values_memory_bound_configuration():
    """Tests that on 4 clients of tp=2 (B=32) the reservation-share bound is about 118.6 s
    against about 84.2 s for the slot share, and that leaving out reservation admission drops it."""
    inst = make_instance(cluster=Cluster(num_clients=4, tp=2))
    lb = lower_bound(inst)
    assert lb.volume_reserved_s == pytest.approx(118.6, abs=0.01)
    assert lb.volume_memory_s == pytest.approx(84.2, abs=0.01)
    assert lb.binding == "volume_reserved" and lb.lower_bound_s == lb.volume_reserved_s
    no_res = lower_bound(inst, reservation_admission=False)
    assert no_res.volume_reserved_s == 0.0 and not no_res.reservation_admission
    assert no_res.admission == "on-demand"
    assert no_res.volume_memory_s == pytest.approx(84.2, abs=0.01)
    # Without reservations the KV-share part (c / M) binds, just above the slot share.
    assert no_res.binding == "volume_kv"
    assert no_res.lower_bound_s == pytest.approx(84.35, abs=0.01)


def test_lower_bound_is_the_largest_part_and_names_it(gsm8k_small):
    """Tests that lower_bound_s is the maximum of the parts, binding names it, a passed MMBPP
    bound is used when it is the largest, and every part states what it assumes."""
    lb = lower_bound(gsm8k_small)
    assert lb.lower_bound_s == max(lb.parts().values())
    assert lb.parts()[lb.binding] == lb.lower_bound_s
    assert set(lb.all_parts()) == set(ASSUMES)
    big = lower_bound(gsm8k_small, mmbpp_bound_s=lb.lower_bound_s * 2)
    assert big.binding == "mmbpp" and big.lower_bound_s == lb.lower_bound_s * 2
    assert big.to_dict()["mmbpp_s"] == lb.lower_bound_s * 2


# --------------------------------------------------------------------------------------
# Work floors and planning sizes
# --------------------------------------------------------------------------------------


def test_work_floors_by_hand_on_linear_clients():
    """Tests work_floors against a token-by-token sum on linear clients with different B:
    w = s b_p + sum_{t=1}^{o-1} phi_d(s + t), with phi_d = a_d/B + b_d + c_d c (memory),
    b_d + c_d c (compute) and a_d (s + o_hat)/M + b_d + c_d c (reserved)."""
    lat = LinearLatency(0.7, 0.01, 0.5, 0.1, 0.001)
    clients = (Client(2, 1000, lat), Client(5, 400, lat))
    s, o, o_hat = [10, 20, 3], [3, 1, 50], [4, 1, 40]
    inst = Instance(
        pd.DataFrame({"prompt_tokens": s, "output_tokens": o, "predicted_output_tokens": o_hat}),
        clients,
    )
    for variant in ("memory", "compute", "reserved"):
        w = work_floors(inst, variant)
        assert w.shape == (3, 2)
        for i in range(3):
            for j, c in enumerate(clients):
                fixed = {
                    "memory": 0.5 / c.max_batch,
                    "compute": 0.0,
                    "reserved": 0.5 * (s[i] + o_hat[i]) / c.kv_capacity_tokens,
                }
                by_hand = s[i] * 0.01 + sum(
                    fixed[variant] + 0.1 + 0.001 * (s[i] + t) for t in range(1, o[i])
                )
                assert w[i, j] == pytest.approx(by_hand, rel=1e-12), (variant, i, j)
    with pytest.raises(ValueError, match="variant"):
        work_floors(inst, "slots")


@pytest.mark.parametrize("variant", ["memory", "compute", "reserved"])
def test_work_floors_shape_and_positivity(gsm8k_small, memory_bound_small, variant):
    """Tests that work floors are (n, |J|), finite and positive on the roofline, identical across
    identical clients, and that the volume bound is their row minimum summed over |J|."""
    for inst in (gsm8k_small, memory_bound_small):
        w = work_floors(inst, variant)
        assert w.shape == (inst.num_requests, inst.num_clients)
        assert np.isfinite(w).all() and (w > 0).all()
        np.testing.assert_array_equal(w, np.repeat(w[:, :1], inst.num_clients, axis=1))
        assert volume(w) == pytest.approx(w[:, 0].sum() / inst.num_clients, rel=1e-12)
    cp = critical_paths(gsm8k_small)
    assert cp.shape == (gsm8k_small.num_requests, gsm8k_small.num_clients) and (cp > 0).all()
    # A request alone is never faster than its floors (at most B share the fixed cost).
    assert (cp >= work_floors(gsm8k_small, variant) * (1 - 1e-12)).all()


@settings(max_examples=100)
@given(
    tp=st.sampled_from([2, 4, 8]),
    contexts=st.lists(st.integers(1, 4000), min_size=1, max_size=32),
    extra_slots=st.integers(0, 8),
    prompts=st.lists(st.integers(1, 2048), min_size=1, max_size=8),
)
def test_per_token_floors_never_exceed_an_iteration(tp, contexts, extra_slots, prompts):
    """Tests the premise of every volume bound on the roofline: a decode of |D| <= B requests lasts
    at least the sum of its tokens' memory and compute floors, and at least the reservation-share
    floors when the reservations fit M; a prefill lasts at least phi_p * sum(s)."""
    lat = roofline(tp)
    c = np.asarray(contexts, dtype=float)
    n, B = len(c), len(c) + extra_slots
    t = float(lat.decode_time(n, c.sum()))
    floors = lat.decode_floors(c, B)
    assert t >= floors["memory"].sum() * (1 - 1e-12)
    assert t >= floors["compute"].sum() * (1 - 1e-12)
    M = int(c.sum()) + extra_slots * 100  # reservations: the contexts themselves, summing to <= M
    reserved = lat.decode_fixed_cost() * c / M + lat.decode_variable_floor(c)
    assert t >= reserved.sum() * (1 - 1e-12)
    p = np.asarray(prompts, dtype=float)
    assert float(
        lat.prefill_time(p.sum(), (p**2).sum())
    ) >= lat.prefill_floor_per_token() * p.sum() * (1 - 1e-12)


def test_planning_sizes_use_predicted_lengths(gsm8k_small):
    """Tests that planning_sizes are the largest-total work floors computed with o_hat in place of
    o: changing predicted_output_tokens changes the planning sizes, while the bound's
    memory, compute and critical-path parts (true lengths) and here T_LB stay put; only the
    reservation share, which by design uses s + o_hat, moves."""
    base = planning_sizes(gsm8k_small)
    assert base.shape == (gsm8k_small.num_requests, gsm8k_small.num_clients)
    np.testing.assert_allclose(
        base, work_floors(gsm8k_small, "memory"), rtol=1e-12
    )  # o_hat = o, slot-bound
    req = gsm8k_small.requests
    noisy = gsm8k_small.replace(
        requests=req.assign(predicted_output_tokens=req["output_tokens"] * 2 + 1)
    )
    planned = planning_sizes(noisy)
    assert not np.allclose(planned, base)
    as_if = noisy.replace(
        requests=noisy.requests.assign(output_tokens=noisy.requests["predicted_output_tokens"])
    )
    candidates = [work_floors(as_if, v) for v in ("memory", "compute", "reserved")]
    np.testing.assert_allclose(planned, max(candidates, key=np.sum), rtol=1e-12)
    lb0, lb1 = lower_bound(gsm8k_small), lower_bound(noisy)
    for part in ("volume_memory", "volume_compute", "critical_path"):
        assert lb1.parts()[part] == lb0.parts()[part]
    assert lb1.lower_bound_s == lb0.lower_bound_s
    assert lb1.volume_reserved_s > lb0.volume_reserved_s
