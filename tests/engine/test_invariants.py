"""The engine's invariants (docs/model.md section 9, INV-1 .. INV-8), one property each.

Every test draws small random instances (one to three clients, heterogeneous or not,
arrivals at 0 or Poisson, predictions exact or off by up to 4x), runs a random named policy
under a random admission through ``run_policy``, and recounts one invariant from the run's
outputs (the trace, the request table, the evictions) without ``check_trace``. A run that
refuses its instance for a documented reason (an under-predicted request outgrew its
reservation, or was sent on its short prediction to a client that cannot hold its true
length) is not a failure of these properties.
"""

from __future__ import annotations

from itertools import chain

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridsched.engine.schema import KVOverflowError
from hybridsched.policies.registry import POLICIES, SolveSettings
from hybridsched.studies.bounds import full_lower_bound
from hybridsched.studies.run import run_policy
from tests.strategies import ADMISSIONS, serving_instances

SOLVE = SolveSettings(time_limit_s=1.0, replan_s=0.1)
CASES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
runs = st.tuples(
    serving_instances(homogeneous=False),
    st.sampled_from(sorted(POLICIES)),
    st.sampled_from(ADMISSIONS),
)


def _run(case):
    inst, policy, admission = case
    try:
        return inst, run_policy(inst, policy, solve=SOLVE, admission=admission)
    except KVOverflowError:
        assert (inst.predicted < inst.output).any()
        return inst, None
    except ValueError as e:  # a request no client holds alone in whole blocks
        assert "KV blocks" in str(e) and admission != "reservation"
        return inst, None


def _ids(rows) -> list[int]:
    return list(chain.from_iterable(rows))


@CASES
@given(case=runs)
def test_inv1_every_request_finishes_exactly_once(case):
    """INV-1: every request has one row in the request table, a first token and a finish."""
    inst, res = _run(case)
    if res is None:
        return
    req = res.requests
    assert sorted(req["request_id"]) == sorted(inst.requests["request_id"])
    assert req["finish_s"].notna().all() and req["first_token_s"].notna().all()
    assert (req["finish_s"] >= req["first_token_s"]).all()


@CASES
@given(case=runs)
def test_inv2_nothing_runs_before_it_arrives(case):
    """INV-2: no iteration processes a request before its arrival."""
    inst, res = _run(case)
    if res is None:
        return
    arrival = dict(zip(inst.requests["request_id"], inst.arrival, strict=True))
    tr = res.trace
    for start, ids, chunks in zip(tr["start_s"], tr["request_ids"], tr["chunk_ids"], strict=True):
        for i in (*ids, *chunks):
            assert start >= arrival[i] - 1e-12


@CASES
@given(case=runs)
def test_inv3_every_request_emits_exactly_its_output_tokens(case):
    """INV-3: each request is decoded ``o_i - 1 - e_i`` times (``e_i`` evictions while it
    was decoding): one token per prefill it completes (the first, and one per recompute),
    one per decode step; an eviction while its prompt was chunked in emits nothing."""
    inst, res = _run(case)
    if res is None:
        return
    tr = res.trace
    decoding = tr["kind"] != "prefill"  # decode rows and the decode part of mixed rows
    counts: dict = {}
    for i in _ids(tr.loc[decoding, "request_ids"]):
        counts[i] = counts.get(i, 0) + 1
    ev = res.evictions
    evicted = ev.loc[ev["prefilled_tokens"] == 0, "request_id"].value_counts().to_dict()
    for rid, o in zip(inst.requests["request_id"], inst.output, strict=True):
        assert counts.get(rid, 0) == o - 1 - evicted.get(rid, 0), rid


@CASES
@given(case=runs)
def test_inv4_kv_never_over_capacity(case):
    """INV-4: the KV tokens held during an iteration never exceed the client's ``M_j``."""
    inst, res = _run(case)
    if res is None:
        return
    M = np.array([c.kv_capacity_tokens for c in inst.clients])
    tr = res.trace
    assert (tr["kv_used_tokens"].to_numpy() <= M[tr["client"].to_numpy()]).all()


@CASES
@given(case=runs)
def test_inv5_batch_never_over_its_slots(case):
    """INV-5: the requests holding slots in an iteration never exceed the client's ``B_j``."""
    inst, res = _run(case)
    if res is None:
        return
    B = np.array([c.max_batch for c in inst.clients])
    tr = res.trace
    assert (tr["num_running"].to_numpy() <= B[tr["client"].to_numpy()]).all()
    decode_sizes = tr["request_ids"].map(len).to_numpy()
    assert (decode_sizes <= B[tr["client"].to_numpy()]).all()


@CASES
@given(case=runs)
def test_inv6_a_clients_iterations_never_overlap(case):
    """INV-6: on each client, an iteration starts no earlier than the previous one ends."""
    inst, res = _run(case)
    if res is None:
        return
    for _, g in res.trace.groupby("client"):
        start, end = g["start_s"].to_numpy(), g["end_s"].to_numpy()
        assert (start[1:] >= end[:-1]).all()
        assert (end >= start).all()


@CASES
@given(case=runs)
def test_inv7_same_instance_same_trace(case):
    """INV-7: the same instance, policy and admission give the same trace (determinism)."""
    inst, first = _run(case)
    if first is None:
        return
    _, second = _run(case)
    assert first.trace.equals(second.trace)
    assert first.evictions.equals(second.evictions)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=runs)
def test_inv8_makespan_never_below_the_lower_bound(case):
    """INV-8: the makespan is at least ``T_LB`` of the policy's model (its admission and
    its iteration kinds)."""
    inst, res = _run(case)
    if res is None:
        return
    spec = POLICIES[case[1]]
    adm = case[2] if isinstance(case[2], str) else case[2].name
    lb = full_lower_bound(inst, solve=SOLVE, mixed_iterations=spec.mixed, admission=adm)
    assert res.metrics["makespan_s"] >= lb.lower_bound_s * (1 - 1e-9)


@pytest.mark.parametrize("policy", ["vllm", "hybrid"])
def test_the_properties_see_real_runs(policy):
    """Tests that the drawn cases are not all refused: a fixed instance runs and keeps INV-1."""
    import pandas as pd

    from hybridsched.instance import Client, Instance
    from tests.strategies import FAST

    req = pd.DataFrame({"prompt_tokens": [10, 20, 5], "output_tokens": [3, 4, 6]})
    inst = Instance(req, (Client(2, 200, FAST),))
    res = run_policy(inst, policy, solve=SOLVE)
    assert res.requests["finish_s"].notna().all()
