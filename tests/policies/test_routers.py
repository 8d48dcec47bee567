"""Tests for the routers (docs/model.md section 11): choices on constructed cluster states,
heterogeneous clusters, late binding and the rolling MMBPP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridsched.engine.admission import Admission
from hybridsched.engine.loop import run
from hybridsched.engine.schema import PolicyError
from hybridsched.instance import Client, Instance
from hybridsched.latency.linear import LinearLatency
from hybridsched.offline.heuristics import lpt_assignment
from hybridsched.policies.lagrangian import Lagrangian
from hybridsched.policies.prefill_first import PrefillFirst
from hybridsched.policies.registry import make_router
from hybridsched.policies.rolling import RollingMMBPP, least_loaded_one
from hybridsched.policies.routers import LeastKV, LeastWork, PowerOfTwo, RoundRobin
from hybridsched.policies.static import StaticRouter
from hybridsched.trace.io import check_run

LAT = LinearLatency(0.05, 0.001, 0.02, 0.002, 0.00001)
SLOW = LinearLatency(0.10, 0.002, 0.04, 0.004, 0.00002)


class FakeView:
    """A constructed cluster state: capacities, outstanding work (s) and free KV per client."""

    def __init__(self, kv_capacity, work, free=None, on_demand=False):
        self.kv_capacity = np.asarray(kv_capacity, dtype=np.int64)
        self.num_clients = len(self.kv_capacity)
        self._work = list(work)
        self._free = list(free) if free is not None else list(self.kv_capacity)
        self._adm = Admission("on-demand" if on_demand else "reservation", block_size=1)

    def fits(self, prompt, predicted, j):
        return self._adm.fits_alone(int(prompt), int(predicted), int(self.kv_capacity[j]))

    def outstanding_s(self, j):
        return self._work[j]

    def free_kv(self, j):
        return self._free[j]


class FakeRequests:
    def __init__(self, prompt, predicted):
        self.prompt = np.asarray(prompt)
        self.predicted = np.asarray(predicted)
        self.arrival = np.zeros(len(self.prompt))
        self.request_id = np.arange(len(self.prompt))


def choices(router, view, prompt, predicted):
    router.start(FakeRequests(prompt, predicted), view)
    return [j for _, j in router.on_arrival(0.0, list(range(len(prompt))))]


# --------------------------------------------------------------------------------------
# each router's choice on a constructed state
# --------------------------------------------------------------------------------------


def test_least_work_picks_least_outstanding_seconds():
    """Tests that least-work picks the client with the least outstanding work, ties to the
    lower index, among clients that fit."""
    v = FakeView([100, 100, 100], work=[3.0, 1.0, 1.0])
    assert choices(LeastWork(), v, [10], [10]) == [1]
    v = FakeView([100, 10, 100], work=[3.0, 1.0, 2.0])  # client 1 too small for 20 tokens
    assert choices(LeastWork(), v, [10], [10]) == [2]


def test_least_kv_picks_most_free_memory():
    """Tests that least-kv picks the most free KV, ties to less work, then lower index."""
    v = FakeView([100, 100, 100], work=[0.0, 5.0, 1.0], free=[10, 80, 80])
    assert choices(LeastKV(), v, [5], [5]) == [2]
    v = FakeView([100, 100, 100], work=[0.0, 1.0, 1.0], free=[10, 80, 80])
    assert choices(LeastKV(), v, [5], [5]) == [1]


def test_round_robin_skips_a_client_too_small():
    """Tests that round-robin cycles 0, 1, 2, 0, ... and skips a client that cannot hold
    the request alone (the 5,765-token reservation on a 5,122-token client)."""
    v = FakeView([5122, 8000, 8000], work=[0, 0, 0])
    prompt = [100, 765, 100, 100]
    predicted = [100, 5000, 100, 100]
    # 0 -> client 0; the big one is the 2nd arrival: client 1 fits it.
    assert choices(RoundRobin(), v, prompt, predicted) == [0, 1, 2, 0]
    prompt = [765, 100, 765, 100]
    predicted = [5000, 100, 5000, 100]
    # 1st (big) skips client 0 -> 1; next to 2; big again: 0 too small -> 1; next to 2.
    assert choices(RoundRobin(), v, prompt, predicted) == [1, 2, 1, 2]


def test_power_of_two_is_deterministic_for_a_seed():
    """Tests that power-of-two gives the same choices for the same seed, that a different
    seed changes them on some input, and that each choice is the less-loaded of two."""
    v = FakeView([100] * 6, work=[5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    prompt, pred = [5] * 40, [5] * 40
    a = choices(PowerOfTwo(seed=7), v, prompt, pred)
    assert a == choices(PowerOfTwo(seed=7), v, prompt, pred)
    assert a != choices(PowerOfTwo(seed=8), v, prompt, pred)
    assert 0 not in a  # client 0 has the most work: it never beats another sampled client
    rng = np.random.default_rng(7)
    want = [max(rng.choice(6, size=2, replace=False)) for _ in range(40)]  # more index, less work
    assert a == want


def test_power_of_two_with_one_fitting_client():
    v = FakeView([10, 100, 10], work=[0.0, 9.0, 0.0])
    assert choices(PowerOfTwo(seed=1), v, [20, 20], [20, 20]) == [1, 1]


@pytest.mark.parametrize("router", [RoundRobin(), LeastWork(), LeastKV(), PowerOfTwo(seed=3)])
def test_a_request_that_fits_nowhere_is_an_error_naming_it(router):
    v = FakeView([50, 60], work=[0.0, 0.0])
    with pytest.raises(ValueError, match=r"request 0 \(row 0\).*fits no client.*largest 60"):
        choices(router, v, [40], [30])


def test_on_demand_fit_ignores_the_watermark():
    """Tests that on-demand fit is ``s_i + ô_i <= M``: the watermark never blocks an empty
    client, so a request with ``s_i + 1 > M - w`` still fits a client of ``M``."""
    v = FakeView([100, 200], work=[0.0, 5.0], on_demand=True)
    # s + o = 100 fits M=100 (s + 1 = 100 > 100 - 1 no longer matters).
    assert choices(LeastWork(), v, [99], [1]) == [0]


# --------------------------------------------------------------------------------------
# heterogeneous clusters through the engine
# --------------------------------------------------------------------------------------


def hetero_instance(n: int = 40, seed: int = 0, arrivals: bool = True) -> Instance:
    """Two clients of different sizes and speeds; a quarter of the requests fit only the
    large one (like the 5,765-token reservation on the 5,122-token client)."""
    rng = np.random.default_rng(seed)
    s = rng.integers(5, 40, n)
    o = rng.integers(2, 40, n)
    big = rng.random(n) < 0.25
    s[big] += 90
    req = pd.DataFrame({"prompt_tokens": s, "output_tokens": o})
    if arrivals:
        req["arrival_s"] = np.cumsum(rng.exponential(0.05, n))
    clients = (Client(4, 120, LAT), Client(6, 400, SLOW))
    return Instance(req, clients, prefill_budget_tokens=256)


@pytest.mark.parametrize(
    "name", ["round-robin", "least-work", "least-kv", "power-of-two", "rolling-mmbpp"]
)
@pytest.mark.parametrize("admission", ["reservation", "on-demand"])
def test_no_router_sends_a_request_where_it_cannot_fit(name, admission):
    """Tests that on a heterogeneous cluster every router sends each request to a client
    that can hold it alone, and the run passes every invariant."""
    inst = hetero_instance()
    res = run(inst, make_router(name, seed=1, replan_s=0.2), Lagrangian(), admission)
    check_run(res, inst)
    M = np.array([c.kv_capacity_tokens for c in inst.clients])[res.dispatch_client]
    assert (inst.prompt + inst.predicted <= M).all()
    assert (res.dispatch_client >= 0).all()
    big = inst.prompt + inst.predicted > 120
    assert big.any() and (res.dispatch_client[big] == 1).all()


def test_engine_refuses_a_dispatch_that_cannot_fit():
    """Tests that a router's dispatch to a too-small client is refused, naming it."""
    inst = hetero_instance(arrivals=False)
    a = np.zeros(inst.num_requests, dtype=np.int64)
    with pytest.raises(PolicyError, match=r"sent to client 0, which cannot hold it alone \(120"):
        run(inst, StaticRouter(assignment=a), PrefillFirst())


# --------------------------------------------------------------------------------------
# the rolling MMBPP: late binding, replans, fallbacks
# --------------------------------------------------------------------------------------


def arrivals_instance(n=30, rate=20.0, seed=2) -> Instance:
    rng = np.random.default_rng(seed)
    req = pd.DataFrame(
        {
            "prompt_tokens": rng.integers(5, 60, n),
            "output_tokens": rng.integers(2, 50, n),
            "arrival_s": np.cumsum(rng.exponential(1 / rate, n)),
        }
    )
    return Instance(req, (Client(4, 300, LAT), Client(4, 300, SLOW)), prefill_budget_tokens=256)


class RecordingSolver:
    """A solver stand-in: LPT, recording every call's batch size and time limit."""

    def __init__(self, fail: bool = False):
        self.calls: list[int] = []
        self.fail = fail

    def __call__(self, sizes, loads, allowed, limit):
        self.calls.append(len(sizes))
        if self.fail:
            raise RuntimeError("solver exploded")
        return lpt_assignment(sizes, initial_loads=loads, allowed=allowed), {"status": "recorded"}


def test_rolling_late_binding_times():
    """Tests late binding: every request is dispatched at or after its arrival, and its
    first prefill starts at or after its dispatch; some are held past their arrival."""
    inst = arrivals_instance()
    res = run(inst, RollingMMBPP(replan_s=0.5), PrefillFirst(), "on-demand")
    check_run(res, inst)
    assert (res.dispatch_s >= inst.arrival).all()
    first = {}
    for start, kind, ids in zip(
        res.trace["start_s"], res.trace["kind"], res.trace["request_ids"], strict=True
    ):
        for r in ids if kind == "prefill" else ():
            first.setdefault(r, start)
    rows = inst.requests["request_id"].to_numpy()
    starts = np.array([first[r] for r in rows])
    assert (starts >= res.dispatch_s).all()
    assert (res.dispatch_s > inst.arrival).any()  # held in the cluster queue


def test_rolling_replans_on_its_timer_and_when_a_client_runs_dry():
    """Tests the replan log: consecutive timer replans are at least ``replan_s`` apart
    unless a client ran dry; every request is planned exactly once."""
    inst = arrivals_instance(n=60, rate=40.0)
    router = RollingMMBPP(replan_s=0.25)
    res = run(inst, router, PrefillFirst(), "reservation")
    log = pd.DataFrame(res.router_log)
    assert list(log.columns) == [
        "time_s",
        "requests",
        "method",
        "status",
        "objective_s",
        "solve_s",
    ]
    assert log["requests"].sum() == inst.num_requests
    assert (log["requests"] > 0).all()
    assert log["time_s"].is_monotonic_increasing
    assert set(log["method"]) == {"lpt"} and set(log["status"]) == {"no solver"}
    # The first arrival finds every client dry: it is planned at once, at its arrival.
    assert log["time_s"].iloc[0] == inst.arrival.min()
    # Replans are driven by the timer or by a dry client: between two replans closer than
    # replan_s, some client had an empty queue; with a long timer only dry clients trigger.
    slow = run(inst, RollingMMBPP(replan_s=1e9), PrefillFirst(), "reservation")
    assert len(slow.router_log) >= 2  # clients ran dry and were refilled
    assert pd.DataFrame(slow.router_log)["requests"].sum() == inst.num_requests


def test_rolling_timer_replans_with_busy_clients():
    """Tests the timer: with every client busy (long jobs) and arrivals every 0.01 s, the
    held requests are planned at replans ``replan_s`` apart (not at each arrival)."""
    n = 40
    req = pd.DataFrame(
        {
            "prompt_tokens": [20] * n,
            "output_tokens": [200] * 4 + [5] * (n - 4),
            "arrival_s": [0.0] * 4 + list(0.01 * np.arange(1, n - 3)),
        }
    )
    inst = Instance(req, (Client(1, 1000, LAT), Client(1, 1000, LAT)), prefill_budget_tokens=256)
    res = run(inst, RollingMMBPP(replan_s=0.1), PrefillFirst())
    log = pd.DataFrame(res.router_log)
    times = log["time_s"].to_numpy()
    # While both clients have queues, replans come no faster than the timer.
    gaps = np.diff(times)
    assert (gaps >= 0.1 - 1e-12).sum() >= 2
    assert log["requests"].sum() == n
    assert len(log) < n - 4  # arrivals were batched


def test_rolling_uses_the_solver_and_records_it():
    inst = arrivals_instance(n=60, rate=200.0)
    solver = RecordingSolver()
    res = run(inst, RollingMMBPP(solve=solver, replan_s=0.1, min_solve=4), PrefillFirst())
    log = pd.DataFrame(res.router_log)
    assert solver.calls and (np.array(solver.calls) >= 4).all()
    used = log[log["method"] == "mmbpp"]
    assert len(used) == len(solver.calls)
    assert set(used["status"]) == {"recorded"}
    assert (log.loc[log["method"] == "lpt", "requests"] < 4).all()


def test_rolling_falls_back_to_lpt_when_the_solver_raises():
    """Tests that a failing solver degrades each replan to LPT, says so in the log, and the
    run still completes with every request served."""
    inst = arrivals_instance(n=60, rate=200.0)
    solver = RecordingSolver(fail=True)
    router = RollingMMBPP(solve=solver, replan_s=0.1, min_solve=4)
    res = run(inst, router, PrefillFirst(), "on-demand")
    check_run(res, inst)
    log = pd.DataFrame(res.router_log)
    failed = log[log["status"].str.startswith("solver failed: RuntimeError: solver exploded")]
    assert len(failed) == len(solver.calls) > 0
    assert set(failed["method"]) == {"lpt"}
    ok = RollingMMBPP(solve=RecordingSolver(), replan_s=0.1, min_solve=4)
    same = run(inst, ok, PrefillFirst(), "on-demand")
    # The stand-in solver is LPT too: the same plan, so the same dispatch.
    np.testing.assert_array_equal(same.dispatch_client, res.dispatch_client)


def test_replan_interval_must_be_positive():
    with pytest.raises(ValueError, match="replan_s must be a positive number, got 0"):
        RollingMMBPP(replan_s=0)


class SpyRouter(RollingMMBPP):
    """The rolling MMBPP, recording what it is shown and what it dispatches, and when."""

    def start(self, requests, view):
        super().start(requests, view)
        self.shown: dict[int, float] = {}
        self.sent: list[tuple[int, float]] = []

    def on_arrival(self, t, rows):
        for i in rows:
            self.shown[int(i)] = t
        out = list(super().on_arrival(t, rows))
        self.sent += [(i, t) for i, _ in out]
        return out

    def on_boundary(self, t, client):
        out = list(super().on_boundary(t, client))
        self.sent += [(i, t) for i, _ in out]
        return out


def test_a_router_never_sees_a_request_before_it_arrives():
    """Tests that requests reach the router at their arrival time exactly (never before),
    that it dispatches only requests it was shown, each once, at or after being shown, and
    that its view of a request has no true output length."""
    inst = arrivals_instance(n=50, rate=30.0)
    router = SpyRouter(replan_s=0.3)
    res = run(inst, router, PrefillFirst(), "on-demand")
    check_run(res, inst)
    assert router.shown == {i: float(a) for i, a in enumerate(inst.arrival)}
    sent = dict(router.sent)
    assert len(sent) == len(router.sent) == inst.num_requests
    assert all(sent[i] >= router.shown[i] for i in sent)
    assert not any("output" in name and "predicted" not in name for name in vars(router.req))


def test_round_robin_plan_ignores_true_lengths():
    """Tests that an immediate router's dispatch does not change when only the true output
    lengths change (it sees predictions only)."""
    inst = arrivals_instance(n=30)
    req = inst.requests.assign(predicted_output_tokens=inst.requests["output_tokens"])
    longer = req.assign(output_tokens=np.minimum(req["output_tokens"] * 3, 200))
    a = run(inst.replace(requests=req), RoundRobin(), PrefillFirst(), "on-demand")
    b = run(inst.replace(requests=longer), RoundRobin(), PrefillFirst(), "on-demand")
    np.testing.assert_array_equal(a.dispatch_client, b.dispatch_client)
    assert not a.trace.equals(b.trace)


@settings(max_examples=500, deadline=None)
@given(
    outs=st.lists(st.integers(0, 2**40), min_size=1, max_size=80),
    c=st.floats(1e-9, 1e4, allow_nan=False),
    tokens=st.integers(1, 2**40),
    tie=st.booleans(),
)
def test_least_loaded_one_uniform_shortcut_is_the_general_arithmetic(outs, c, tokens, tie):
    """Tests that on identical clients the one-pass choice (least outstanding tokens) and
    objective are bit for bit those of the priced loads, ties and all."""
    if tie:  # many clients with equal outstanding work, as when several are idle
        outs = [min(outs)] * (len(outs) // 2) + outs
    J = len(outs)
    fast = least_loaded_one(outs, [c] * J, [True] * J, True, tokens)
    slow = least_loaded_one(outs, [c] * J, [True] * J, False, tokens)
    assert fast == slow
    j, obj = slow
    assert outs[j] == min(outs) and outs.index(outs[j]) == j


class _NumpyOnly(RollingMMBPP):
    """The rolling MMBPP with its one-request shortcut off: every replan on numpy."""

    def _replan_one(self, t):
        return self._replan_numpy(t)


@pytest.mark.parametrize("hetero", [True, False])
@pytest.mark.parametrize("admission", ["reservation", "on-demand"])
def test_rolling_one_request_shortcut_makes_the_numpy_plans(hetero, admission):
    """Tests that the pure-Python one-request replan dispatches, logs and schedules exactly
    as the numpy replan, on heterogeneous and identical clients."""
    inst = hetero_instance(n=60, seed=3)
    if not hetero:
        inst = inst.replace(clients=(Client(4, 400, LAT),) * 3)
    a = run(inst, RollingMMBPP(replan_s=0.2), Lagrangian(), admission)
    b = run(inst, _NumpyOnly(replan_s=0.2), Lagrangian(), admission)
    assert sum(r["requests"] == 1 for r in a.router_log) >= 5  # the shortcut was taken
    pd.testing.assert_frame_equal(a.trace, b.trace)
    np.testing.assert_array_equal(a.dispatch_client, b.dispatch_client)
    drop = lambda log: [{k: v for k, v in r.items() if k != "solve_s"} for r in log]  # noqa: E731
    assert drop(a.router_log) == drop(b.router_log)
