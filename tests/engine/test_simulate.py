"""Tests for hybridsched.simulator: iteration semantics, determinism, errors, invariants."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridsched.engine.schema import DECODE, Action, PolicyError
from hybridsched.instance import Client, Cluster, Instance, make_instance
from hybridsched.latency.linear import LinearLatency
from hybridsched.policies.lagrangian import Lagrangian
from hybridsched.policies.prefill_first import PrefillFirst
from hybridsched.policies.static import round_robin, simulate
from hybridsched.trace.schema import TRACE_COLUMNS

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def single(s: int, o: int, client: Client, arrival: float = 0.0) -> Instance:
    return Instance(
        pd.DataFrame({"prompt_tokens": [s], "output_tokens": [o], "arrival_s": [arrival]}),
        (client,),
    )


def hand_makespan(lat, s: int, o: int) -> float:
    """Prefill of s tokens, then o - 1 decode steps of one request at contexts s+1..s+o-1."""
    t = float(lat.prefill_time(s, s * s))
    for step in range(1, o):
        t += float(lat.decode_time(1, s + step))
    return t


class ScriptRule:
    """A tiny online rule built from a function of the client state (for bad-rule tests)."""

    name = "script"

    def __init__(self, decide, key=None):
        self._decide, self._key = decide, key

    def queue_key(self, instance):
        return np.zeros(instance.num_requests) if self._key is None else self._key(instance)

    def start(self, instance, client):
        return self._decide


def assert_capacity(trace: pd.DataFrame, inst: Instance) -> None:
    """Independent capacity checks: slots and KV per row, from the ids in each decode row
    and from the trace's bookkeeping columns."""
    res = dict(zip(inst.requests["request_id"], inst.reservation, strict=True))
    B = np.array([c.max_batch for c in inst.clients])[trace["client"]]
    M = np.array([c.kv_capacity_tokens for c in inst.clients])[trace["client"]]
    assert (trace["num_running"].to_numpy() <= B).all()
    assert (trace["kv_reserved_tokens"].to_numpy() <= M).all()
    assert (trace["kv_used_tokens"].to_numpy() <= M).all()
    for ids, kind, b, m in zip(trace["request_ids"], trace["kind"], B, M, strict=True):
        assert len(ids) <= b
        if kind == "decode":
            assert sum(res[i] for i in ids) <= m


def assert_token_counts(trace: pd.DataFrame, inst: Instance) -> None:
    """Independent count: every request in exactly one prefill row and o_i - 1 decode rows."""
    pre = Counter(i for ids in trace.loc[trace["kind"] == "prefill", "request_ids"] for i in ids)
    dec = Counter(i for ids in trace.loc[trace["kind"] == "decode", "request_ids"] for i in ids)
    for rid, o in zip(inst.requests["request_id"], inst.output, strict=True):
        assert pre[rid] == 1
        assert dec[rid] == o - 1


def assert_arrivals(trace: pd.DataFrame, inst: Instance) -> None:
    arr = dict(zip(inst.requests["request_id"], inst.arrival, strict=True))
    for ids, kind, start in zip(trace["request_ids"], trace["kind"], trace["start_s"], strict=True):
        if kind == "prefill":
            assert all(start >= arr[i] for i in ids)


@st.composite
def instances(draw, memory_bound: bool = False, arrivals: bool = False, predictions: bool = False):
    """Small random instances with heterogeneous linear clients.

    ``memory_bound``: large B and KV memory of one to two of the largest requests, so
    memory, not slots, limits the batch. ``predictions``: ô_i differs from o_i, with
    memory large enough that nothing can overflow.
    """
    n = draw(st.integers(1, 25))
    s = draw(st.lists(st.integers(1, 60), min_size=n, max_size=n))
    o = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    cols = {"prompt_tokens": s, "output_tokens": o}
    if arrivals:
        cols["arrival_s"] = draw(
            st.lists(st.sampled_from([0.0, 0.3, 1.0, 2.5, 7.0, 20.0]), min_size=n, max_size=n)
        )
    if predictions:
        cols["predicted_output_tokens"] = draw(st.lists(st.integers(1, 60), min_size=n, max_size=n))
    req = pd.DataFrame(cols)
    pred = req.get("predicted_output_tokens", req["output_tokens"])
    need = int((req["prompt_tokens"] + np.maximum(req["output_tokens"], pred)).max())
    clients = []
    for _ in range(draw(st.integers(1, 3))):
        if memory_bound:
            B, M = draw(st.integers(8, 16)), need + draw(st.integers(0, need))
        else:
            B, M = draw(st.integers(1, 8)), need + draw(st.integers(0, 6 * need))
        if predictions:
            M = max(M, int((req["prompt_tokens"] + np.maximum(req["output_tokens"], pred)).sum()))
        coef = draw(
            st.tuples(
                st.floats(0.05, 2.0),
                st.floats(0.0, 0.05),
                st.floats(0.05, 1.0),
                st.floats(0.0, 0.2),
                st.floats(0.0, 0.005),
            )
        )
        clients.append(Client(B, M, LinearLatency(*coef)))
    return Instance(req, tuple(clients), prefill_budget_tokens=draw(st.integers(1, 300)))


def random_instance(rng: np.random.Generator) -> Instance:
    """Like ``instances`` but from a numpy generator, for cheap seeded sweeps."""
    n = int(rng.integers(1, 30))
    s, o = rng.integers(1, 60, n), rng.integers(1, 40, n)
    req = pd.DataFrame({"prompt_tokens": s, "output_tokens": o})
    if rng.random() < 0.5:
        req["arrival_s"] = np.round(rng.uniform(0, 15, n) * (rng.random(n) < 0.6), 2)
    need = int((s + o).max())
    mem = rng.random() < 0.4
    clients = []
    for _ in range(int(rng.integers(1, 4))):
        B = int(rng.integers(8, 17)) if mem else int(rng.integers(1, 9))
        M = need + int(rng.integers(0, (1 if mem else 6) * need + 1))
        coef = rng.uniform([0.05, 0.0, 0.05, 0.0, 0.0], [2.0, 0.05, 1.0, 0.2, 0.005])
        clients.append(Client(B, M, LinearLatency(*map(float, coef))))
    return Instance(req, tuple(clients), prefill_budget_tokens=int(rng.integers(1, 300)))


RULES = [PrefillFirst(), Lagrangian()]


def check_all(inst: Instance, rule) -> pd.DataFrame:
    trace = simulate(inst, round_robin(inst), rule, check=True)
    assert_capacity(trace, inst)
    assert_token_counts(trace, inst)
    assert_arrivals(trace, inst)
    return trace


# --------------------------------------------------------------------------------------
# exact iteration semantics
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("s", "o"), [(10, 3), (20, 1), (1, 2), (57, 40)])
def test_single_request_linear_makespan(linear_client, s, o):
    """Tests that one request's makespan is its prefill plus its o-1 decode steps at
    contexts s+1..s+o-1, computed by hand from the linear coefficients
    (prefill 1 + 0.01 s; decode 0.5 + 0.1 + 0.001 c)."""
    want = 1.0 + 0.01 * s + sum(0.5 + 0.1 * 1 + 0.001 * (s + t) for t in range(1, o))
    trace = simulate(single(s, o, linear_client), [0], PrefillFirst(), check=True)
    assert trace["end_s"].max() == pytest.approx(want, rel=1e-12)
    assert trace["kind"].tolist() == ["prefill"] + ["decode"] * (o - 1)
    assert trace["context_tokens"].tolist() == [0] + [s + t for t in range(1, o)]


@pytest.mark.parametrize("tp", [2, 4])
@pytest.mark.parametrize(("s", "o"), [(79, 127), (37, 1), (500, 300)])
def test_single_request_roofline_makespan(tp, s, o):
    """Tests that a one-request roofline makespan is prefill(s, s^2) plus decode(1, s+t), t = 1..o-1."""
    client = Cluster(num_clients=1, tp=tp).make_clients()[0]
    trace = simulate(single(s, o, client), [0], PrefillFirst())
    assert trace["end_s"].max() == pytest.approx(hand_makespan(client.latency, s, o), rel=1e-12)
    assert len(trace) == o


def test_two_requests_hand_trace(two_requests):
    """Tests that the baseline's whole trace on two_requests matches hand arithmetic: one
    prefill of both (1.3 s), a decode of both at context 11+21 (0.732 s), then request 0
    alone at context 12 (0.612 s)."""
    tr = simulate(two_requests, [0, 0], PrefillFirst(), check=True)
    assert tr["kind"].tolist() == ["prefill", "decode", "decode"]
    assert tr["request_ids"].tolist() == [(0, 1), (0, 1), (0,)]
    np.testing.assert_allclose(tr["duration_s"], [1.3, 0.732, 0.612], rtol=1e-12)
    np.testing.assert_allclose(tr["start_s"], [0.0, 1.3, 2.032], rtol=1e-12)
    assert tr["kv_reserved_tokens"].tolist() == [35, 35, 13]
    assert tr["kv_used_tokens"].tolist() == [30, 32, 12]
    assert tr["num_running"].tolist() == [2, 2, 1]
    assert list(tr.columns) == TRACE_COLUMNS


def test_prefill_budget_splits_prefills(two_requests):
    """Tests that a 15-token prefill budget prefills request 0 (10 tokens) alone and then
    request 1 (20 tokens, oversized but alone), before any decode."""
    inst = two_requests.replace(prefill_budget_tokens=15)
    tr = simulate(inst, [0, 0], PrefillFirst(), check=True)
    assert tr["kind"].tolist() == ["prefill", "prefill", "decode", "decode"]
    assert tr["request_ids"].tolist() == [(0,), (1,), (0, 1), (0,)]
    # Request 0 decodes at contexts 11 and 12, request 1 at 21.
    assert tr["context_tokens"].tolist() == [0, 0, 32, 12]


def test_output_one_leaves_after_prefill(linear_client):
    """Tests that requests with output_tokens = 1 appear only in their prefill row, free
    their slot at once (B = 2 holds three such requests in two back-to-back prefills), and
    never enter a decode."""
    req = pd.DataFrame({"prompt_tokens": [10, 20, 30], "output_tokens": [1, 1, 1]})
    inst = Instance(req, (linear_client,))
    tr = simulate(inst, [0, 0, 0], PrefillFirst(), check=True)
    assert tr["kind"].tolist() == ["prefill", "prefill"]
    assert tr["request_ids"].tolist() == [(0, 1), (2,)]
    assert tr["end_s"].max() == pytest.approx((1 + 0.01 * 30) + (1 + 0.01 * 30), rel=1e-12)


def test_output_one_mixed_with_longer(linear_client):
    """Tests that an o=1 request prefilled with a longer one is absent from every decode."""
    req = pd.DataFrame({"prompt_tokens": [10, 20], "output_tokens": [4, 1]})
    tr = simulate(Instance(req, (linear_client,)), [0, 0], PrefillFirst(), check=True)
    assert tr["request_ids"].tolist() == [(0, 1), (0,), (0,), (0,)]
    assert tr["num_running"].tolist() == [2, 1, 1, 1]


# --------------------------------------------------------------------------------------
# arrivals
# --------------------------------------------------------------------------------------


def test_client_idles_until_first_arrival(linear_client):
    """Tests that a client whose only request arrives at 3 s starts its prefill exactly then."""
    tr = simulate(single(10, 3, linear_client, arrival=3.0), [0], PrefillFirst(), check=True)
    assert tr["start_s"].iloc[0] == 3.0
    assert tr["end_s"].max() == pytest.approx(
        3.0 + hand_makespan(linear_client.latency, 10, 3), rel=1e-12
    )


def test_late_arrival_after_client_drains(linear_client):
    """Tests that a request arriving at 100 s, long after the client finished its first
    request (2.221 s), is prefilled at exactly 100 s: the client idles in between."""
    req = pd.DataFrame(
        {"prompt_tokens": [10, 20], "output_tokens": [3, 2], "arrival_s": [0.0, 100.0]}
    )
    tr = simulate(Instance(req, (linear_client,)), [0, 0], PrefillFirst(), check=True)
    first_done = hand_makespan(linear_client.latency, 10, 3)
    assert tr["request_ids"].tolist() == [(0,), (0,), (0,), (1,), (1,)]
    assert tr["end_s"].iloc[2] == pytest.approx(first_done, rel=1e-12)
    assert tr["start_s"].iloc[3] == 100.0


def test_arrival_during_decode_waits_for_boundary(linear_client):
    """Tests that a request arriving at 1.5 s, while request 0 decodes in [1.1, 1.711],
    is prefilled at the next iteration boundary (1.711 s), not before it arrives."""
    req = pd.DataFrame(
        {"prompt_tokens": [10, 20], "output_tokens": [3, 2], "arrival_s": [0.0, 1.5]}
    )
    tr = simulate(Instance(req, (linear_client,)), [0, 0], PrefillFirst(), check=True)
    assert tr["request_ids"].tolist() == [(0,), (0,), (1,), (0, 1)]
    assert tr["start_s"].iloc[2] == pytest.approx(1.1 + 0.611, rel=1e-12)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
@given(inst=instances(arrivals=True))
def test_no_prefill_before_arrival(rule, inst):
    """Tests that with random arrivals no prefill starts before its requests arrive, and
    that a client never starts its first iteration before its earliest arrival."""
    tr = check_all(inst, rule)
    a = round_robin(inst)
    for j, g in tr.groupby("client"):
        assert g["start_s"].min() == pytest.approx(inst.arrival[a == j].min(), abs=1e-12)


# --------------------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [PrefillFirst(), Lagrangian(), Lagrangian(sort="random", seed=3)],
    ids=lambda r: f"{r.name}-{r.sort}",
)
def test_same_inputs_same_trace(gsm8k_small, rule):
    """Tests that simulating the same inputs twice (also on a freshly built instance) gives
    identical traces."""
    a = round_robin(gsm8k_small)
    t1 = simulate(gsm8k_small, a, rule)
    t2 = simulate(gsm8k_small, a, rule)
    fresh = make_instance(gsm8k_small.requests.copy(), Cluster())
    t3 = simulate(fresh, a.copy(), rule)
    pd.testing.assert_frame_equal(t1, t2)
    pd.testing.assert_frame_equal(t1, t3)


def test_rule_has_no_state_between_runs(gsm8k_small):
    """Tests that one rule object used on two different instances and back gives the same
    trace as before (no state carried between runs)."""
    rule = Lagrangian()
    a = round_robin(gsm8k_small)
    t1 = simulate(gsm8k_small, a, rule)
    other = make_instance(
        gsm8k_small.requests.iloc[:7].reset_index(drop=True), Cluster(num_clients=1)
    )
    simulate(other, np.zeros(7, dtype=int), rule)
    pd.testing.assert_frame_equal(simulate(gsm8k_small, a, rule), t1)


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "match"),
    [
        ([0], "shape"),
        ([0, 0, 0], "shape"),
        ([0, 2], "client 2"),
        ([-1, 0], "client -1"),
        ([0.0, 1.0], "integers"),
    ],
)
def test_bad_assignment(two_requests, assignment, match):
    """Tests that an assignment of the wrong length, to a client out of range or of
    non-integer type raises ValueError."""
    inst = two_requests.replace(clients=two_requests.clients * 2)
    with pytest.raises(ValueError, match=match):
        simulate(inst, assignment, PrefillFirst())


def test_assignment_to_client_too_small(linear_client):
    """Tests that assigning a request to a client whose KV memory cannot hold it raises
    ValueError naming the request, while the larger client takes it."""
    small = Client(2, 50, linear_client.latency)
    req = pd.DataFrame({"request_id": [4, 9], "prompt_tokens": [10, 60], "output_tokens": [3, 5]})
    inst = Instance(req, (linear_client, small))
    with pytest.raises(ValueError, match="request 9"):
        simulate(inst, [0, 1], PrefillFirst())
    simulate(inst, [1, 0], PrefillFirst(), check=True)


def _head(st):
    return Action("prefill", (st.queue[0],)) if st.queue else DECODE


BAD_RULES = {
    "decode-empty": (lambda st: DECODE, "empty running batch"),
    "prefill-nothing": (lambda st: Action("prefill", ()), "prefill of no request"),
    "prefill-unknown-row": (lambda st: Action("prefill", (99,)), "not waiting"),
    "prefill-running-row": (
        lambda st: Action("prefill", (next(iter(st.running)),)) if st.running else _head(st),
        "not waiting",
    ),
    "over-B": (lambda st: Action("prefill", tuple(st.queue)) if st.queue else DECODE, "exceeds B"),
    "over-budget": (
        lambda st: Action("prefill", tuple(st.queue[:2])) if st.queue else DECODE,
        "budget",
    ),
    "unknown-kind": (lambda st: Action("chunked", ()), "unknown action kind"),
}


@pytest.mark.parametrize("case", BAD_RULES)
def test_infeasible_action_raises_policy_error(linear_client, case):
    """Tests that a rule choosing an infeasible iteration (decode with nothing running,
    empty prefill, a row not waiting, more than B slots, over the token budget, an unknown
    kind) raises PolicyError."""
    decide, match = BAD_RULES[case]
    req = pd.DataFrame({"prompt_tokens": [10, 20, 30], "output_tokens": [3, 2, 2]})
    inst = Instance(req, (linear_client,), prefill_budget_tokens=25)
    with pytest.raises(PolicyError, match=match):
        simulate(inst, [0, 0, 0], ScriptRule(decide))


def test_over_memory_raises_policy_error():
    """Tests that a prefill that would reserve more than M KV tokens raises PolicyError."""
    client = Client(4, 40, LinearLatency(1.0, 0.01, 0.5, 0.1, 0.001))
    req = pd.DataFrame(
        {"prompt_tokens": [10, 20], "output_tokens": [3, 2]}
    )  # reserves 13 + 22 > 34
    inst = Instance(req, (Client(4, 34, client.latency),))
    with pytest.raises(PolicyError, match="M=34"):
        simulate(
            inst,
            [0, 0],
            ScriptRule(lambda st: Action("prefill", tuple(st.queue)) if st.queue else DECODE),
        )


def test_bad_queue_key_raises_policy_error(two_requests):
    """Tests that a rule giving the wrong number of queue keys raises PolicyError."""
    rule = ScriptRule(_head, key=lambda inst: np.zeros(inst.num_requests + 1))
    with pytest.raises(PolicyError, match="queue_key"):
        simulate(two_requests, [0, 0], rule)


def test_duplicate_row_in_prefill_raises_policy_error(linear_client):
    """Tests that a prefill naming the same waiting row twice raises PolicyError."""
    client = Client(4, 1000, linear_client.latency)
    req = pd.DataFrame({"prompt_tokens": [10, 20], "output_tokens": [3, 2]})
    rule = ScriptRule(
        lambda st: Action("prefill", (st.queue[0], st.queue[0])) if st.queue else DECODE
    )
    with pytest.raises(PolicyError):
        simulate(Instance(req, (client,)), [0, 0], rule)


# --------------------------------------------------------------------------------------
# invariants on random instances
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
@given(inst=instances())
def test_invariants_heterogeneous(rule, inst):
    """Tests that on random instances with heterogeneous clients the trace passes
    check_trace, never exceeds B or M, and emits exactly o_i tokens per request."""
    check_all(inst, rule)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
@given(inst=instances(memory_bound=True, arrivals=True))
def test_invariants_memory_bound(rule, inst):
    """Tests that the invariants hold on memory-bound clients (KV memory for one or two of the
    largest requests, B up to 16) with arrivals."""
    check_all(inst, rule)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
@given(inst=instances(predictions=True))
def test_invariants_with_wrong_predictions(rule, inst):
    """Tests that the invariants hold when predicted lengths differ from the true ones (planners see
    ô_i, requests still emit exactly o_i tokens)."""
    check_all(inst, rule)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_invariants_seeded_sweep(rule):
    """Tests that the invariants hold on 150 further seeded random instances per rule (slot-bound,
    memory-bound, heterogeneous, with and without arrivals)."""
    for seed in range(150):
        check_all(random_instance(np.random.default_rng(seed)), rule)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_memory_bound_gsm8k(memory_bound_small, rule):
    """Tests that on 4 tp=2 clients (M = 5122) the trace is valid, reserved KV never passes
    5122, and memory, not B = 32, binds: the batch stays below 32 while reserved memory
    comes within one request's reservation of M."""
    tr = check_all(memory_bound_small, rule)
    assert tr["kv_reserved_tokens"].max() <= 5122
    assert tr["num_running"].max() < 32
    assert tr["kv_reserved_tokens"].max() > 5122 - memory_bound_small.reservation.max()


def test_mixed_tp_clients(gsm8k_small):
    """Tests that the invariants hold on heterogeneous roofline clients (one tp=2, one tp=4)."""
    c2 = Cluster(num_clients=1, tp=2, max_batch=16).make_clients()[0]
    c4 = Cluster(num_clients=1, tp=4).make_clients()[0]
    inst = gsm8k_small.replace(clients=(c2, c4))
    for rule in RULES:
        tr = check_all(inst, rule)
        assert set(tr["client"]) == {0, 1}
