"""Tests for hybridsched.policies: the Lagrangian prefill-vs-decode rule, the baseline's
prefill-first rule, the queue sort keys and round-robin dispatch.

Most tests build a ``ClientState`` by hand on a client with a linear latency model whose
constants are powers of two, so every ``rho`` below is exact in floating point:
``a_p = 1`` makes the prefill waste ``t_prefill(P) - phi_p * sum(s) = a_p = 1`` for every
``P``, hence ``rho(0) = 1 / |P_0|`` and ``rho(m) = (lambda * sum_l idle_l + 1) / |P_m|``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridsched.engine.schema import DECODE, Action
from hybridsched.engine.state import ClientState
from hybridsched.instance import Client, Instance
from hybridsched.latency.linear import LinearLatency
from hybridsched.policies.lagrangian import Lagrangian
from hybridsched.policies.prefill_first import PrefillFirst
from hybridsched.policies.queue import SORT_KEYS, queue_key
from hybridsched.policies.static import round_robin, simulate

# a_p = 1 (the whole prefill waste), b_p = 1/16 s per prompt token; decode 1/2 + 1/32 |D| + 1/1024 sum(c).
LIN = LinearLatency(1.0, 1 / 16, 0.5, 1 / 32, 1 / 1024)


def lin_instance(
    prompts, outputs, max_batch=4, kv=10**6, predicted=None, budget=2048, num_clients=1
):
    """Requests with the given prompt/output lengths on identical LIN clients."""
    req = pd.DataFrame({"prompt_tokens": prompts, "output_tokens": outputs})
    if predicted is not None:
        req["predicted_output_tokens"] = predicted
    client = Client(max_batch=max_batch, kv_capacity_tokens=kv, latency=LIN)
    return Instance(req, (client,) * num_clients, prefill_budget_tokens=budget)


def make_state(
    inst: Instance,
    running: dict[int, int],
    queue: list[int],
    client: int = 0,
    decode_count: int = 7,
) -> ClientState:
    """The state a rule sees: ``running`` maps row -> predicted remaining decode steps."""
    c = inst.clients[client]
    st_ = ClientState()
    st_.client, st_.time_s = client, 0.0
    ids = inst.requests["request_id"].tolist()
    st_.running = {i: ids[i] for i in running}
    st_.queue = list(queue)
    st_.prefilling, st_.prefilled = {}, [0] * inst.num_requests
    st_.lingering, st_.block_size, st_.kv_watermark = {}, 0, 0  # reservation: no blocks
    st_.decode_count = decode_count
    pf = [0] * inst.num_requests
    for i, rem in running.items():
        pf[i] = decode_count + rem
    st_.predicted_finish = pf
    st_.kv_reserved_tokens = int(sum(inst.reservation[i] for i in running))
    st_.max_batch, st_.kv_capacity_tokens = c.max_batch, c.kv_capacity_tokens
    st_.prefill_budget_tokens = inst.prefill_budget_tokens
    st_.latency = c.latency
    st_.prompt, st_.predicted = inst.prompt.tolist(), inst.predicted.tolist()
    st_.reservation = inst.reservation.tolist()
    st_.charge, st_.admission = st_.reservation, "reservation"  # reservation admission
    st_.kv_limit, st_.kv_charged = c.kv_capacity_tokens, st_.kv_reserved_tokens
    return st_


def decide(rule, inst: Instance, state: ClientState) -> Action:
    return rule.start(inst, state.client)(state)


def prefilled_order(trace: pd.DataFrame) -> list[int]:
    """Request ids in the order they were prefilled (client by client)."""
    tr = trace.sort_values(["client", "iteration"])
    return [rid for ids in tr.loc[tr["kind"] == "prefill", "request_ids"] for rid in ids]


def prefill_action(rows) -> Action:
    return Action("prefill", tuple(rows))


# --------------------------------------------------------------------------------------
# The Lagrangian rule on hand-built states (docs/model.md 7.2-7.3)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule", [Lagrangian(), Lagrangian(min_prefill=3, lambda_s=100.0), PrefillFirst()]
)
def test_empty_batch_prefills_largest_feasible_head(rule):
    """Tests that with an empty running batch a rule prefills the largest head of the queue
    that fits the slots (B=4 of 6 waiting), whatever lambda or min_prefill say."""
    inst = lin_instance([16] * 6, [5] * 6, max_batch=4)
    st_ = make_state(inst, {}, [5, 3, 1, 0, 2, 4])
    assert decide(rule, inst, st_) == prefill_action([5, 3, 1, 0])


@pytest.mark.parametrize("rule", [Lagrangian(), PrefillFirst()])
def test_empty_batch_head_limited_by_memory_and_budget(rule):
    """Tests that the empty-batch prefill stops at the first request that would overflow the
    reserved KV memory, and at the 2048-token prefill budget, without skipping ahead."""
    # Reservations 32, 32, 64, 32: M = 100 holds the first two only (the third would need 128).
    inst = lin_instance([16, 16, 32, 16], [16, 16, 32, 16], max_batch=4, kv=100)
    assert decide(rule, inst, make_state(inst, {}, [0, 1, 2, 3])) == prefill_action([0, 1])
    # Prompts 1000 + 1000 fit the budget; adding 100 would make 2100 > 2048.
    inst = lin_instance([1000, 1000, 100, 100], [4] * 4, max_batch=4)
    assert decide(rule, inst, make_state(inst, {}, [0, 1, 2, 3])) == prefill_action([0, 1])
    # A single prompt over the budget still runs, alone.
    inst = lin_instance([3000, 10], [4, 4], max_batch=4)
    assert decide(rule, inst, make_state(inst, {}, [0, 1])) == prefill_action([0])


@pytest.mark.parametrize("rule", [Lagrangian(), Lagrangian(lambda_s=1e6), PrefillFirst()])
def test_full_batch_decodes(rule):
    """Tests that with no free slot a rule decodes, even with a long queue and a huge lambda."""
    inst = lin_instance([16] * 10, [50] * 10, max_batch=4)
    st_ = make_state(inst, {0: 1, 1: 1, 2: 3, 3: 40}, list(range(4, 10)))
    assert decide(rule, inst, st_) == DECODE


@pytest.mark.parametrize("rule", [Lagrangian(), PrefillFirst()])
def test_empty_queue_decodes(rule):
    """Tests that with nothing waiting a rule decodes, however many slots are free."""
    inst = lin_instance([16] * 2, [50] * 2, max_batch=4)
    assert decide(rule, inst, make_state(inst, {0: 10}, [])) == DECODE


def test_default_lambda_is_full_batch_time_per_slot_at_mean_context():
    """Tests that the default lambda is t_decode(B, B * (mean(s) + mean(o_hat)/2)) / B, from the
    predicted (not the true) lengths, scaled by lambda_multiplier, and that lambda_s overrides it."""
    inst = lin_instance([10, 30], [5, 7], max_batch=8, predicted=[20, 40])
    mean_ctx = 20 + 30 / 2  # mean(s) + mean(o_hat) / 2
    by_hand = (0.5 + 8 / 32 + 8 * mean_ctx / 1024) / 8
    assert Lagrangian().multiplier(inst, 0) == pytest.approx(by_hand, rel=1e-12)
    assert Lagrangian(lambda_multiplier=2.5).multiplier(inst, 0) == pytest.approx(
        2.5 * by_hand, rel=1e-12
    )
    assert Lagrangian(lambda_s=0.125).multiplier(inst, 0) == 0.125


def test_many_free_slots_and_long_queue_prefill_now():
    """Tests that 7 free slots of 8 and 20 waiting requests prefill the 7-request head now:
    rho(0) = 1/7, while waiting for the one departure (3 steps) costs rho(3) = (21 lambda + 1)/8,
    larger for the default lambda."""
    inst = lin_instance([16] * 21, [60] * 21, max_batch=8)
    st_ = make_state(inst, {0: 3}, list(range(1, 21)))
    rule = Lagrangian()
    lam = rule.multiplier(inst, 0)
    rho0, rho3 = 1 / 7, (lam * 7 * 3 + 1) / 8
    assert rho0 < rho3
    assert decide(rule, inst, st_) == prefill_action(range(1, 8))


def test_batch_about_to_empty_waits():
    """Tests that with 1 free slot of 4 and running requests that leave in 1, 1 and 2 steps the
    rule decodes (waits): rho(0) = 1/1 = 1, rho(1) = (lambda*1 + 1)/3 = 0.35 and
    rho(2) = (lambda*1 + lambda*3 + 1)/4 = 0.3 with lambda = 0.05, so waiting 2 steps is cheapest."""
    inst = lin_instance([16] * 13, [60] * 13, max_batch=4)
    st_ = make_state(inst, {0: 1, 1: 1, 2: 2}, list(range(3, 13)))
    lam = 0.05
    rho0 = 1.0 / 1
    rho1 = (lam * 1 + 1.0) / 3
    rho2 = (lam * 1 + lam * 3 + 1.0) / 4
    assert min(rho1, rho2) == rho2 < rho0
    assert decide(Lagrangian(lambda_s=lam), inst, st_) == DECODE
    # With the default lambda the same state also waits (lambda is about 0.14 s per slot-step here).
    lam_default = Lagrangian().multiplier(inst, 0)
    assert (4 * lam_default + 1) / 4 < 1.0
    assert decide(Lagrangian(), inst, st_) == DECODE
    # The baseline prefills the one free slot at once.
    assert decide(PrefillFirst(), inst, st_) == prefill_action([3])


def test_ties_prefill():
    """Tests that rho(0) == min rho(m) prefills: with B=2, one request leaving in 1 step and
    lambda = a_p = 1, rho(0) = 1/1 and rho(1) = (1*1 + 1)/2 = 1; a slightly smaller lambda waits
    and a slightly larger one prefills."""
    inst = lin_instance([16] * 4, [60] * 4, max_batch=2)
    st_ = make_state(inst, {0: 1}, [1, 2, 3])
    assert (1.0 * 1 + 1.0) / 2 == 1.0 / 1  # the tie is exact
    assert decide(Lagrangian(lambda_s=1.0), inst, st_) == prefill_action([1])
    assert decide(Lagrangian(lambda_s=0.99), inst, st_) == DECODE
    assert decide(Lagrangian(lambda_s=1.01), inst, st_) == prefill_action([1])


def test_idle_price_literal_vs_fillable_when_memory_binds():
    """Tests that the two idle prices decide differently when the queue (3) is shorter than the
    free slots (6) and memory lets only 1 request in now: the departure after 1 step frees room
    for all 3. With lambda = 1/2: rho(0) = 1; fillable rho(1) = (1/2 * min(6, 3) + 1)/3 = 5/6 < 1
    (wait); literal rho(1) = (1/2 * 6 + 1)/3 = 4/3 > 1 (prefill now)."""
    # Running rows 0, 1 reserve 64 each; queued rows 2, 3, 4 reserve 32 each; M = 160.
    inst = lin_instance([32, 32, 16, 16, 16], [32, 32, 16, 16, 16], max_batch=8, kv=160)
    st_ = make_state(inst, {0: 1, 1: 10}, [2, 3, 4])
    assert st_.kv_free_tokens == 32 and st_.free_slots == 6
    lam = 0.5
    assert (lam * 3 + 1) / 3 < 1 < (lam * 6 + 1) / 3
    assert decide(Lagrangian(lambda_s=lam, idle_price="fillable"), inst, st_) == DECODE
    assert decide(Lagrangian(lambda_s=lam, idle_price="literal"), inst, st_) == prefill_action([2])


def test_idle_price_irrelevant_when_only_slots_bind():
    """Tests that with plenty of memory a queue shorter than the free slots is prefilled now under
    both idle prices (waiting cannot grow |P|, so every rho(m) exceeds rho(0))."""
    inst = lin_instance([16] * 5, [30] * 5, max_batch=8)
    st_ = make_state(inst, {0: 1, 1: 10}, [2, 3, 4])
    for price in ("fillable", "literal"):
        assert decide(Lagrangian(lambda_s=0.01, idle_price=price), inst, st_) == prefill_action(
            [2, 3, 4]
        )


def test_horizon_limits_the_wait_considered():
    """Tests that H changes the decision: with 1 free slot of 4 and all 3 running requests leaving
    in 5 steps, lambda = 0.1: rho(0) = 1 and rho(5) = (0.1*1*5 + 1)/4 = 0.375, so H >= 5 waits,
    while H <= 4 sees no departure (every rho(m) = inf) and prefills now."""
    inst = lin_instance([16] * 13, [60] * 13, max_batch=4)
    st_ = make_state(inst, {0: 5, 1: 5, 2: 5}, list(range(3, 13)))
    assert (0.1 * 1 * 5 + 1) / 4 < 1
    for h in (1, 4):
        assert decide(Lagrangian(lambda_s=0.1, horizon=h), inst, st_) == prefill_action([3])
    for h in (5, 64):
        assert decide(Lagrangian(lambda_s=0.1, horizon=h), inst, st_) == DECODE


def test_min_prefill():
    """Tests that min_prefill=2 prices a 1-request prefill at infinity (so one free slot waits even
    when lambda makes waiting dear), unless the queue holds only one request, and that it never
    blocks a prefill into an empty batch."""
    inst = lin_instance([16] * 8, [60] * 8, max_batch=4)
    busy = {0: 40, 1: 40, 2: 40}
    long_queue = make_state(inst, busy, [3, 4, 5, 6, 7])
    one_waiting = make_state(inst, busy, [3])
    empty_batch = make_state(inst, {}, [3, 4])
    dear = Lagrangian(lambda_s=10.0)
    dear_min2 = Lagrangian(lambda_s=10.0, min_prefill=2)
    assert decide(dear, inst, long_queue) == prefill_action([3])
    assert decide(dear_min2, inst, long_queue) == DECODE
    assert decide(dear_min2, inst, one_waiting) == prefill_action([3])
    assert decide(Lagrangian(min_prefill=3), inst, empty_batch) == prefill_action([3, 4])


def test_lagrangian_never_skips_a_head_that_does_not_fit():
    """Tests that the Lagrangian rule decodes rather than prefill a later request when the head of
    the queue does not fit the free reserved memory."""
    inst = lin_instance([16, 60, 8], [16, 60, 8], max_batch=4, kv=130)  # reservations 32, 120, 16
    st_ = make_state(inst, {0: 50}, [1, 2])
    assert st_.kv_free_tokens == 98 < 120
    assert decide(Lagrangian(lambda_s=100.0), inst, st_) == DECODE


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"idle_price": "both"}, "idle_price"),
        ({"horizon": 0}, "horizon"),
        ({"lambda_s": -1.0}, "lambda"),
        ({"lambda_multiplier": -0.5}, "lambda"),
        ({"min_prefill": 0}, "min_prefill"),
    ],
)
def test_lagrangian_rejects_bad_knobs(kwargs, match):
    """Tests that an invalid knob of the Lagrangian rule raises ValueError naming it."""
    with pytest.raises(ValueError, match=match):
        Lagrangian(**kwargs)


# --------------------------------------------------------------------------------------
# PrefillFirst (the baseline)
# --------------------------------------------------------------------------------------


def test_prefill_first_never_skips_past_a_head_that_does_not_fit():
    """Tests that the baseline decodes when the head of the FCFS queue does not fit the free
    reserved memory, although a later, smaller request would."""
    inst = lin_instance([16, 60, 8], [16, 60, 8], max_batch=4, kv=140)  # reservations 32, 120, 16
    st_ = make_state(inst, {0: 50}, [1, 2])
    assert st_.kv_free_tokens == 108  # row 2 (16) would fit, row 1 (120) does not
    assert decide(PrefillFirst(), inst, st_) == DECODE
    # Once row 0 is gone the head fits and both are prefilled.
    assert decide(PrefillFirst(), inst, make_state(inst, {}, [1, 2])) == prefill_action([1, 2])


def test_prefill_first_fills_every_free_slot_within_the_budget():
    """Tests that the baseline prefills as many waiting requests as there are free slots, capped by
    the 2048-token budget (1000 + 1000 fit, a third 100-token prompt does not)."""
    inst = lin_instance([16] * 6, [30] * 6, max_batch=4)
    assert decide(
        PrefillFirst(), inst, make_state(inst, {0: 30}, [1, 2, 3, 4, 5])
    ) == prefill_action([1, 2, 3])
    inst = lin_instance([16, 1000, 1000, 100], [30] * 4, max_batch=8)
    assert decide(PrefillFirst(), inst, make_state(inst, {0: 30}, [1, 2, 3])) == prefill_action(
        [1, 2]
    )


@st.composite
def small_workloads(draw):
    n = draw(st.integers(1, 25))
    s = draw(st.lists(st.integers(1, 1200), min_size=n, max_size=n))
    o = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    B = draw(st.integers(1, 6))
    slack = draw(st.integers(0, 3000))
    M = max(a + b for a, b in zip(s, o, strict=True)) + slack
    J = draw(st.integers(1, 2))
    return lin_instance(s, o, max_batch=B, kv=M, num_clients=J)


@settings(max_examples=40)
@given(small_workloads())
def test_prefill_first_trace_is_fcfs_maximal_and_within_budget(inst):
    """Tests on random instances that the baseline's trace prefills each client's requests in
    FCFS order with no skipping, never exceeds the 2048-token budget with more than one request,
    makes every prefill maximal (the next waiting request did not fit slots, memory or budget),
    and only decodes with a waiting request when the batch is full or the head does not fit memory."""
    a = round_robin(inst)
    trace = simulate(inst, a, PrefillFirst(), check=True)
    s, res = inst.prompt, inst.reservation
    ids = inst.requests["request_id"].to_numpy()
    row_of = {int(r): i for i, r in enumerate(ids)}
    for j, c in enumerate(inst.clients):
        fcfs = [int(ids[i]) for i in np.flatnonzero(a == j)]
        tr = trace[trace["client"] == j].sort_values("iteration")
        assert prefilled_order(tr) == fcfs
        done = 0  # requests of this client prefilled so far
        for row in tr.itertuples():
            nxt = row_of[fcfs[done]] if done < len(fcfs) else None
            if row.kind == "prefill":
                assert row.prefill_tokens <= inst.prefill_budget_tokens or row.num_requests == 1
                done += row.num_requests
                nxt = row_of[fcfs[done]] if done < len(fcfs) else None
                if nxt is not None:
                    assert (
                        row.num_running == c.max_batch
                        or row.kv_reserved_tokens + res[nxt] > c.kv_capacity_tokens
                        or row.prefill_tokens + s[nxt] > inst.prefill_budget_tokens
                    )
            elif nxt is not None:
                assert (
                    row.num_running == c.max_batch
                    or row.kv_reserved_tokens + res[nxt] > c.kv_capacity_tokens
                )


@settings(max_examples=40)
@given(small_workloads(), st.sampled_from(["fillable", "literal"]), st.integers(1, 3))
def test_lagrangian_trace_prefills_queue_heads_within_budget(inst, price, min_prefill):
    """Tests on random instances that the Lagrangian rule (FCFS queue) passes every trace
    invariant, prefills each client's requests in queue order with no skipping, and never puts
    more than the 2048-token budget into a prefill of several requests."""
    a = round_robin(inst)
    rule = Lagrangian(sort="fcfs", idle_price=price, min_prefill=min_prefill)
    trace = simulate(inst, a, rule, check=True)
    ids = inst.requests["request_id"].to_numpy()
    for j in range(inst.num_clients):
        tr = trace[trace["client"] == j]
        assert prefilled_order(tr) == [int(ids[i]) for i in np.flatnonzero(a == j)]
        pre = tr[tr["kind"] == "prefill"]
        assert (
            (pre["prefill_tokens"] <= inst.prefill_budget_tokens) | (pre["num_requests"] == 1)
        ).all()


# --------------------------------------------------------------------------------------
# Queue order (docs/model.md 7.1)
# --------------------------------------------------------------------------------------

# Row:          0   1   2   3   4   5
PROMPTS = [40, 10, 40, 30, 20, 50]
OUTPUTS = [9, 1, 4, 7, 2, 3]  # true lengths; the sort keys must not look at them
PREDICTED = [3, 5, 5, 1, 5, 2]
IDS = [105, 101, 103, 100, 104, 102]  # ids out of row order: order is by row, not id


def sort_instance() -> Instance:
    """One client with B=1, so the prefill order in the trace is the queue order."""
    req = pd.DataFrame(
        {
            "request_id": IDS,
            "prompt_tokens": PROMPTS,
            "output_tokens": OUTPUTS,
            "predicted_output_tokens": PREDICTED,
        }
    )
    return Instance(req, (Client(max_batch=1, kv_capacity_tokens=10**6, latency=LIN),))


@pytest.mark.parametrize(
    "sort, rows",
    [
        ("fcfs", [0, 1, 2, 3, 4, 5]),
        ("longest", [1, 2, 4, 0, 5, 3]),  # predicted 5,5,5 (by row), 3, 2, 1
        ("shortest", [3, 5, 0, 1, 2, 4]),  # predicted 1, 2, 3, 5,5,5 (by row)
        ("prompt", [5, 0, 2, 3, 4, 1]),  # prompt 50, 40,40 (by row), 30, 20, 10
    ],
)
@pytest.mark.parametrize("rule_cls", [PrefillFirst, Lagrangian])
def test_queue_order_follows_documented_sort_key(sort, rows, rule_cls):
    """Tests that each sort key orders the queue as documented, ties broken by row, and uses the
    predicted (not true) output length: the prefill order of a B=1 client is the queue order."""
    inst = sort_instance()
    trace = simulate(inst, np.zeros(6, dtype=np.int64), rule_cls(sort=sort), check=True)
    assert prefilled_order(trace) == [IDS[r] for r in rows]


def test_random_sort_is_seed_deterministic():
    """Tests that the random sort key is a permutation fixed by its seed: the same seed gives the
    same key and queue order, different seeds (here 0 and 1) differ, and the simulated order is
    the argsort of default_rng(seed).permutation(n)."""
    inst = sort_instance()
    k0 = queue_key(inst, "random", seed=0)
    np.testing.assert_array_equal(k0, queue_key(inst, "random", seed=0))
    assert sorted(k0.tolist()) == list(range(6))
    assert not np.array_equal(k0, queue_key(inst, "random", seed=1))
    orders = []
    for seed in (0, 0, 1):
        trace = simulate(inst, np.zeros(6, dtype=np.int64), PrefillFirst(sort="random", seed=seed))
        orders.append(prefilled_order(trace))
    assert orders[0] == orders[1] != orders[2]
    expected = np.argsort(np.random.default_rng(0).permutation(6))
    assert orders[0] == [IDS[r] for r in expected]


def test_fcfs_key_is_arrival_time():
    """Tests that the fcfs key is the arrival time and that every documented key is accepted and
    an unknown one raises ValueError."""
    req = pd.DataFrame(
        {"prompt_tokens": [5, 5, 5], "output_tokens": [2, 2, 2], "arrival_s": [2.0, 0.5, 1.0]}
    )
    inst = Instance(req, (Client(1, 100, LIN),))
    np.testing.assert_array_equal(queue_key(inst, "fcfs"), [2.0, 0.5, 1.0])
    for key in SORT_KEYS:
        assert queue_key(inst, key).shape == (3,)
    with pytest.raises(ValueError, match="sort must be one of"):
        queue_key(inst, "lifo")


# --------------------------------------------------------------------------------------
# Round-robin dispatch
# --------------------------------------------------------------------------------------


def test_round_robin_is_i_mod_clients_in_arrival_order():
    """Tests that round_robin sends the i-th request in arrival order (ties by row) to client
    i mod |J|: arrivals [3, 1, 2, 1, 0] give arrival order rows 4, 1, 3, 2, 0."""
    req = pd.DataFrame(
        {"prompt_tokens": [5] * 5, "output_tokens": [2] * 5, "arrival_s": [3.0, 1.0, 2.0, 1.0, 0.0]}
    )
    c = Client(1, 100, LIN)
    inst = Instance(req, (c, c))
    a = round_robin(inst)
    expected = np.empty(5, dtype=np.int64)
    expected[[4, 1, 3, 2, 0]] = [0, 1, 0, 1, 0]
    np.testing.assert_array_equal(a, expected)
    inst3 = Instance(req.assign(arrival_s=0.0), (c, c, c))
    np.testing.assert_array_equal(round_robin(inst3), [0, 1, 2, 0, 1])


@given(n=st.integers(1, 50), J=st.integers(1, 5))
def test_round_robin_balances_counts(n, J):
    """Tests that round_robin with all arrivals at 0 is exactly row mod |J|, so client loads in
    request count differ by at most one."""
    req = pd.DataFrame({"prompt_tokens": [5] * n, "output_tokens": [2] * n})
    c = Client(1, 100, LIN)
    a = round_robin(Instance(req, (c,) * J))
    np.testing.assert_array_equal(a, np.arange(n) % J)
    counts = np.bincount(a, minlength=J)
    assert counts.max() - counts.min() <= 1
