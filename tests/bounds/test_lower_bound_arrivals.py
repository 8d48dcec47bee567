"""Tests for the lower bound with arrivals, per admission mode, and its tight parts
(hybridsched.bounds, hybridsched.floors; docs/model.md sections 5 and 11).

Validity under reservation admission is checked against simulated schedules of every named
policy with random arrival times on heterogeneous and memory-bound clients; on-demand
admission (preemption by recompute) is checked through the parts' definitions: per-iteration
premises and hand-built preempted schedules.
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridsched.bounds.floors import critical_paths, sum_min_affine, work_floors
from hybridsched.bounds.lower_bound import (
    ASSUMES,
    arrival_volume,
    lower_bound,
    small_packing,
    tau_sweep,
    volume,
)
from hybridsched.engine.schema import KVOverflowError
from hybridsched.instance import Client, Cluster, Instance, make_instance
from hybridsched.latency.linear import LinearLatency, fit_linear
from hybridsched.policies.registry import POLICIES, make_rule
from hybridsched.policies.static import round_robin, simulate
from hybridsched.studies.exact import solve_exact
from hybridsched.workloads.arrivals import apply_arrivals

RTOL = 1e-9


@cache
def roofline(tp: int):
    return Cluster(tp=tp).make_clients()[0].latency


linear_latencies = st.builds(
    LinearLatency,
    a_p=st.floats(1e-4, 0.1),
    b_p=st.floats(1e-7, 1e-3),
    a_d=st.floats(1e-4, 0.1),
    b_d=st.floats(0.0, 1e-3),
    c_d=st.floats(0.0, 1e-5),
)
latencies = st.one_of(st.sampled_from([2, 4]).map(roofline), linear_latencies)


def assert_holds(lb, T: float, where: str = "") -> None:
    """T >= T_LB, the tight T_LB and every part, to a relative 1e-9."""
    slack = T * (1 + RTOL)
    assert lb.tight_lower_bound_s <= slack, f"{where}: T={T!r} < {lb.tight_lower_bound_s!r}"
    for name, v in lb.all_parts().items():
        assert v <= slack, f"{where}: T={T!r} < {name}={v!r}"


@st.composite
def arriving_instances(draw) -> Instance:
    """1-25 requests with arrivals in [0, 3] s (ties likely) on 1-3 clients, each with its own
    B, latency and KV capacity (natural or just above the largest request)."""
    n = draw(st.integers(1, 25))
    s = draw(st.lists(st.integers(1, 300), min_size=n, max_size=n))
    o = draw(st.lists(st.integers(1, 120), min_size=n, max_size=n))
    r = draw(
        st.lists(
            st.sampled_from([0.0, 0.05, 0.3, 1.0, 3.0]) | st.floats(0, 3), min_size=n, max_size=n
        )
    )
    need = max(a + b for a, b in zip(s, o, strict=True))
    clients = []
    for _ in range(draw(st.integers(1, 3))):
        lat = draw(latencies)
        natural = 10**6 if isinstance(lat, LinearLatency) else lat.kv_capacity_tokens
        M = need + draw(st.integers(0, 2 * need)) if draw(st.booleans()) else natural
        clients.append(Client(draw(st.integers(1, 6)), M, lat))
    req = pd.DataFrame({"prompt_tokens": s, "output_tokens": o, "arrival_s": r})
    return Instance(req, tuple(clients))


@settings(max_examples=60)
@given(arriving_instances(), st.randoms(use_true_random=False))
def test_bound_with_arrivals_valid_for_every_policy(inst, rnd):
    """Tests on random instances with arrivals (heterogeneous, memory-bound clients) that every
    named policy's makespan, under round-robin and a random assignment, meets T_LB, the tight
    T_LB and every part (chunked policies: the mixed-iteration bound)."""
    lb, lb_mixed = lower_bound(inst), lower_bound(inst, mixed_iterations=True)
    assert lb.lower_bound_s >= inst.arrival.max() * (1 - 1e-12)  # nothing ends before it arrives
    rand = np.array([rnd.randrange(inst.num_clients) for _ in range(inst.num_requests)])
    for name, spec in POLICIES.items():
        for a in (round_robin(inst), rand):
            try:
                trace = simulate(inst, a, make_rule(spec))
            except KVOverflowError:
                continue  # not reached with o_hat = o
            T = float(trace["end_s"].max())
            assert_holds(lb_mixed if spec.mixed else lb, T, name)


def test_zero_arrivals_give_the_arrival_free_parts_exactly(gsm8k_small, memory_bound_small):
    """Tests that with every r_i = 0 the arrival-aware volume parts equal the arrival-free
    sum_i min_j w_ij / |J| and the critical path max_i min_j cp_ij, bit for bit."""
    for inst in (gsm8k_small, memory_bound_small):
        for mixed in (False, True):
            lb = lower_bound(inst, mixed_iterations=mixed)
            for v in ("memory", "compute", "reserved", "kv"):
                assert lb.parts()[f"volume_{v}"] == volume(work_floors(inst, v, mixed))
            assert lb.critical_path_s == float(critical_paths(inst, mixed=mixed).min(axis=1).max())


def test_known_values_of_the_new_parts_on_the_single_case():
    """Tests the new parts on the paper's single case: the KV share stays below the slot share on
    tp=4 and the reservation share on tp=2 (so T_LB does not move), and the tight bound adds
    the prefill's fixed-cost share: 91.67 s (2 x tp=4) and 118.88 s (4 x tp=2)."""
    a = lower_bound(make_instance())
    assert a.lower_bound_s == a.volume_memory_s and a.volume_kv_s == pytest.approx(23.52, abs=0.01)
    assert a.volume_tight_s == pytest.approx(91.67, abs=0.01) and a.small_packing_s == 0.0
    assert a.tight_lower_bound_s == a.volume_tight_s > a.lower_bound_s
    b = lower_bound(make_instance(cluster=Cluster(num_clients=4, tp=2)))
    assert b.binding == "volume_reserved" and b.volume_kv_s == pytest.approx(84.35, abs=0.01)
    assert b.tight_lower_bound_s == pytest.approx(118.88, abs=0.01)


def test_poisson_arrivals_lift_the_bound_past_the_last_arrival():
    """Tests that a Poisson workload over about 60 s (under capacity) gets T_LB above its last
    arrival, far above the arrival-free bound, the last requests' r_i + cp_i binding; and
    that with a second burst at 30 s the volume part binds at tau = 30 s: 30 s plus the
    burst's own arrival-free volume."""
    from hybridsched.workloads.requests import load_gsm8k

    base = load_gsm8k().iloc[:600].reset_index(drop=True)
    inst = make_instance(apply_arrivals(base, "poisson:10", seed=3))
    lb = lower_bound(inst)
    free = lower_bound(make_instance(base))
    assert free.lower_bound_s < inst.arrival.max() < lb.lower_bound_s
    assert lb.binding == "critical_path"
    assert lb.lower_bound_s == float((critical_paths(inst).min(axis=1) + inst.arrival).max())
    burst = make_instance(base.assign(arrival_s=np.where(np.arange(600) < 300, 0.0, 30.0)))
    second = lower_bound(make_instance(base.iloc[300:].reset_index(drop=True)))
    got = lower_bound(burst)
    assert got.binding == "volume_memory"
    assert got.volume_memory_s == pytest.approx(30.0 + second.volume_memory_s, rel=1e-12)
    assert got.volume_memory_s > free.volume_memory_s


@settings(max_examples=40)
@given(
    s=st.integers(1, 1500),
    o=st.integers(1, 150),
    r=st.floats(0.0, 100.0),
    lat=latencies,
    B=st.integers(1, 8),
)
def test_one_request_arriving_at_r_has_bound_r_plus_its_critical_path(s, o, r, lat, B):
    """Tests that a single request arriving at r is served in exactly r + cp and that T_LB
    (and the tight T_LB) equals it."""
    req = pd.DataFrame({"prompt_tokens": [s], "output_tokens": [o], "arrival_s": [r]})
    inst = Instance(req, (Client(B, s + o + 10, lat),))
    T = float(simulate(inst, np.array([0]), make_rule(POLICIES["hybrid"]))["end_s"].max())
    lb = lower_bound(inst)
    cp = float(critical_paths(inst)[0, 0])
    assert T == pytest.approx(r + cp, rel=1e-12)
    assert lb.critical_path_s == pytest.approx(r + cp, rel=1e-12)
    assert lb.lower_bound_s == pytest.approx(T, rel=1e-12)
    assert lb.tight_lower_bound_s == pytest.approx(T, rel=1e-12)


# --------------------------------------------------------------------------------------
# The tau sweep and the heterogeneous volume
# --------------------------------------------------------------------------------------


@settings(max_examples=200)
@given(
    data=st.lists(
        st.tuples(st.floats(0, 10), st.sampled_from([0.0, 1.0, 2.5]) | st.floats(0, 5)),
        min_size=1,
        max_size=30,
    ),
    scale=st.floats(0.5, 4.0),
)
def test_tau_sweep_equals_brute_force(data, scale):
    """Tests the O(n log n) sweep against the O(n^2) definition, ties among arrivals included."""
    u = np.array([d[0] for d in data])
    r = np.array([d[1] for d in data])
    brute = max(tau + u[r >= tau].sum() / scale for tau in r)
    assert tau_sweep(u, r, scale) == pytest.approx(brute, rel=1e-12, abs=1e-12)


@settings(max_examples=100)
@given(
    w=st.integers(1, 6).flatmap(
        lambda n: st.lists(
            st.lists(st.floats(0.01, 10), min_size=n, max_size=n), min_size=1, max_size=3
        )
    ),
    r=st.lists(st.sampled_from([0.0, 0.5, 2.0]), min_size=6, max_size=6),
)
def test_arrival_volume_never_exceeds_the_best_assignment(w, r):
    """Tests validity of the heterogeneous volume with arrivals against its definition: for
    every assignment of requests to clients some client j has C_j >= tau + its work from tau,
    so the bound is at most the min over assignments of the max over clients of that."""
    W = np.array(w).T  # (n, J)
    n, J = W.shape
    arr = np.array(r[:n])
    best = min(
        max(tau_sweep(W[np.array(a) == j, j], arr[np.array(a) == j]) for j in set(a))
        for a in itertools.product(range(J), repeat=n)
    )
    assert arrival_volume(W, arr) <= best * (1 + 1e-12)
    assert arrival_volume(W, arr) >= tau_sweep(W.min(axis=1), arr, J) * (1 - 1e-12)


def test_heterogeneous_speeds_tighten_the_volume():
    """Tests that on one fast and one slow client (same B and M, one 4x slower linear model) the
    speed-weighted volume exceeds sum_i min_j w_ij / |J|, which ignores the slow client's speed."""
    fast = LinearLatency(0.01, 1e-4, 0.01, 1e-4, 1e-6)
    slow = LinearLatency(0.04, 4e-4, 0.04, 4e-4, 4e-6)
    req = pd.DataFrame({"prompt_tokens": [100] * 20, "output_tokens": [50] * 20})
    inst = Instance(req, (Client(4, 10**6, fast), Client(4, 10**6, slow)))
    w = work_floors(inst, "memory")
    assert lower_bound(inst).volume_memory_s > 1.5 * volume(w)
    np.testing.assert_allclose(lower_bound(inst).volume_memory_s, w[:, 0].sum() / 1.25, rtol=1e-12)


@settings(max_examples=200)
@given(
    s=st.integers(0, 500),
    m=st.integers(0, 60),
    a1=st.floats(-1, 1),
    b1=st.floats(-0.01, 0.01),
    a2=st.floats(-1, 1),
    b2=st.floats(-0.01, 0.01),
)
def test_sum_min_affine_equals_the_loop(s, m, a1, b1, a2, b2):
    """Tests the closed form of sum_{t=1}^m min(a1 + b1 (s+t), a2 + b2 (s+t)) against the loop."""
    loop = sum(min(a1 + b1 * (s + t), a2 + b2 * (s + t)) for t in range(1, m + 1))
    got = float(sum_min_affine(s, m, a1, b1, a2, b2))
    assert got == pytest.approx(loop, rel=1e-9, abs=1e-9)


# --------------------------------------------------------------------------------------
# Admission modes
# --------------------------------------------------------------------------------------


def test_on_demand_leaves_out_the_reservation_share(memory_bound_small):
    """Tests that admission='on-demand' reports the reservation share as 0, says so in its
    assumptions, agrees with the reservation_admission=False alias, never exceeds the
    reservation-admission volumes, and that bad or contradictory admissions are refused."""
    od = lower_bound(memory_bound_small, admission="on-demand")
    res = lower_bound(memory_bound_small)
    assert od.volume_reserved_s == 0.0 and od.admission == "on-demand"
    assert not od.reservation_admission and res.volume_reserved_s > 0
    assert "on-demand" in ASSUMES["volume_reserved"]
    assert od == lower_bound(memory_bound_small, reservation_admission=False)
    assert res == lower_bound(
        memory_bound_small, reservation_admission=True, admission="reservation"
    )
    for part in ("volume_memory", "volume_compute", "volume_kv", "critical_path"):
        assert od.parts()[part] <= res.parts()[part] * (1 + 1e-12)
    with pytest.raises(ValueError, match="admission must be one of.*'fcfs'"):
        lower_bound(memory_bound_small, admission="fcfs")
    with pytest.raises(ValueError, match="contradicts"):
        lower_bound(memory_bound_small, admission="on-demand", reservation_admission=True)
    with pytest.raises(ValueError, match="reservation admission"):
        work_floors(memory_bound_small, "reserved", on_demand=True)


def _preempted_run(lat, s: int, o: int, evictions: list[int]) -> float:
    """The time of one request served alone and evicted after generating g tokens for each g in
    ``evictions`` (increasing, 1 <= g < o): each eviction's recompute prefill of s + g tokens
    emits token g + 1 in place of the decode step at context s + g (docs/model.md 11)."""
    t = float(lat.prefill_time(s, s * s))
    for step in range(1, o):
        c = s + step
        t += float(lat.prefill_time(c, c * c) if step in evictions else lat.decode_time(1, c))
    return t


@settings(max_examples=150)
@given(
    s=st.integers(1, 400),
    o=st.integers(2, 80),
    lat=latencies,
    B=st.integers(1, 8),
    picks=st.lists(st.floats(0, 1), max_size=6),
    mixed=st.booleans(),
)
def test_on_demand_parts_hold_for_a_preempted_request(s, o, lat, B, picks, mixed):
    """Tests the on-demand parts against a request evicted and recomputed any number of times
    (alone on one client, so its run is the makespan): every on-demand part stays below it,
    while the reservation-admission parts need not."""
    evictions = sorted({1 + int(p * (o - 2)) for p in picks})
    req = pd.DataFrame({"prompt_tokens": [s], "output_tokens": [o]})
    inst = Instance(req, (Client(B, s + o + 5, lat),))
    T = _preempted_run(lat, s, o, evictions)
    assert_holds(lower_bound(inst, admission="on-demand", mixed_iterations=mixed), T)


@settings(max_examples=150)
@given(
    lat=latencies,
    contexts=st.lists(st.integers(2, 3000), min_size=1, max_size=16),
    prompts=st.lists(st.integers(1, 2048), min_size=1, max_size=8),
    extra=st.integers(0, 6),
    M_extra=st.integers(0, 5000),
)
def test_per_iteration_premises_of_the_new_floors(lat, contexts, prompts, extra, M_extra):
    """Tests the premise of each new floor: an iteration lasts at least the floors charged to it.
    Decode of |D| requests holding sum c <= M: the KV share fixed * c / M. Prefill of |P| <= B
    prompts: the prefill share F_p / B + g s (and F_p s / M when sum s <= M, the KV share).
    Mixed iteration: decode tokens at their slot share plus the chunks at min(F_p, F_d) / B."""
    c = np.asarray(contexts, dtype=float)
    p = np.asarray(prompts, dtype=float)
    M = int(c.sum()) + M_extra
    F_d, F_p, g = lat.decode_fixed_cost(), lat.prefill_fixed_cost(), lat.prefill_token_floor()
    kv = F_d * c / M + lat.decode_variable_floor(c)
    assert float(lat.decode_time(len(c), c.sum())) >= kv.sum() * (1 - 1e-12)
    B = len(p) + extra
    t_p = float(lat.prefill_time(p.sum(), (p**2).sum()))
    assert t_p >= (F_p / B + g * p).sum() * (1 - 1e-12)
    Mp = int(p.sum()) + M_extra
    assert t_p >= (F_p * p / Mp + g * p).sum() * (1 - 1e-12)
    # mixed: decode batch c plus whole prompts p as chunks, |D| + |P| <= B
    Bm = len(c) + len(p) + extra
    t_m = float(lat.mixed_time(len(c), c.sum(), p.sum(), (p**2).sum(), 0.0))
    dec = lat.decode_floors(c, Bm)["memory"].sum()
    chunk = (min(F_p, F_d) / Bm + lat.prefill_floors()["memory"] * p).sum()
    assert t_m >= (dec + chunk) * (1 - 1e-12)


def test_the_naive_prefill_share_would_not_be_valid():
    """Tests why the prefill share leaves out the weight read: on a compute-bound prefill of
    2,048 tokens (32 prompts of 64 on tp=4, B=32), charging each prompt (overhead + comm(0) +
    weights / bw) / B on top of phi_p s exceeds the iteration, while F_p / B + g s does not."""
    lat = roofline(4)
    p = np.full(32, 64.0)
    t = float(lat.prefill_time(p.sum(), (p**2).sum()))
    naive = (lat.decode_fixed_cost() / 32 + lat.prefill_floor_per_token() * p).sum()
    ours = (lat.prefill_fixed_cost() / 32 + lat.prefill_token_floor() * p).sum()
    assert naive > t >= ours


# --------------------------------------------------------------------------------------
# Tiny instances: the exact optimum
# --------------------------------------------------------------------------------------


@cache
def _fitted(B: int) -> LinearLatency:
    return fit_linear(roofline(4), B).model


TINY = [
    # (prompt tokens, output tokens, clients, B, M)
    ([40, 90, 60], [3, 2, 4], 1, 2, 10**6),
    ([64, 64, 200, 30], [4, 3, 2, 3], 2, 2, 10**6),
    ([100, 150, 80], [3, 3, 2], 2, 1, 400),
]


@pytest.mark.parametrize("case", TINY)
def test_tight_bound_below_the_exact_optimum(case):
    """Tests T_LB, the tight T_LB and every part <= the exact MIP's optimum T* (1 + 1e-6) on
    tiny instances, and that the tight bound is within 25% of T*."""
    s, o, J, B, M = case
    inst = Instance(
        pd.DataFrame({"prompt_tokens": s, "output_tokens": o}),
        tuple(Client(B, M, _fitted(B)) for _ in range(J)),
    )
    opt = solve_exact(inst, time_limit_s=30).mip.makespan_s
    lb = lower_bound(inst)
    for name, v in lb.all_parts().items():
        assert v <= opt * (1 + 1e-6), (name, v, opt)
    assert lb.lower_bound_s <= lb.tight_lower_bound_s <= opt * (1 + 1e-6)
    assert lb.tight_lower_bound_s >= 0.75 * opt


@settings(max_examples=40)
@given(
    s=st.lists(st.integers(1, 300), min_size=1, max_size=5),
    o=st.lists(st.integers(1, 20), min_size=5, max_size=5),
    J=st.integers(1, 2),
    lat=linear_latencies,
)
def test_small_packing_is_exact_when_one_request_runs_at_a_time(s, o, J, lat):
    """Tests that with B = 1 (every iteration serves one request, so a client's time is the sum
    of its requests' critical paths) small_packing is the best partition of the critical paths,
    and a schedule with that partition achieves it."""
    n = len(s)
    inst = Instance(
        pd.DataFrame({"prompt_tokens": s, "output_tokens": o[:n]}),
        tuple(Client(1, 10**6, lat) for _ in range(J)),
    )
    cp = critical_paths(inst)[:, 0]
    parts = list(itertools.product(range(J), repeat=n))
    loads = [max(cp[np.array(a) == j].sum() for j in range(J)) for a in parts]
    best = int(np.argmin(loads))
    assert small_packing(inst) == pytest.approx(loads[best], rel=1e-12)
    trace = simulate(inst, np.array(parts[best]), make_rule(POLICIES["baseline"]))
    assert float(trace["end_s"].max()) == pytest.approx(loads[best], rel=1e-12)


def test_bound_table_shows_the_new_parts(gsm8k_small):
    """Tests that report.bound_table lists the KV-share and tight parts with what they assume,
    the paper's T_LB and the tight T_LB."""
    from hybridsched.reports.tables import bound_table

    lb = lower_bound(gsm8k_small)
    t = bound_table({"small": lb})
    for part in ("volume_kv", "volume_tight", "small_packing"):
        assert t.loc[part, "small"] == lb.all_parts()[part] and t.loc[part, "assumes"]
    assert t.loc["T_LB", "small"] == lb.lower_bound_s
    assert t.loc["T_LB (tight)", "small"] == lb.tight_lower_bound_s >= lb.lower_bound_s


@pytest.mark.parametrize("policy", [p for p, spec in POLICIES.items() if spec.mixed])
def test_tight_mixed_bound_holds_when_a_chunk_shares_a_decode_step(policy):
    """Tests the mixed-iteration tight bound where a mixed iteration carries both kinds: one
    decoding request and a one-token request whose prompt arrives while it decodes (the
    batch caps of the tight floors must cover decode tokens and chunks together)."""
    lat = LinearLatency(0.05, 1e-5, 0.05, 1e-5, 0.0)
    req = pd.DataFrame(
        {"prompt_tokens": [10, 10], "output_tokens": [6, 1], "arrival_s": [0.0, 0.06]}
    )
    inst = Instance(req, (Client(2, 10**6, lat),))
    trace = simulate(inst, np.array([0, 0]), make_rule(POLICIES[policy]))
    assert (trace["kind"] == "mixed").any()
    assert_holds(lower_bound(inst, mixed_iterations=True), float(trace["end_s"].max()), policy)
