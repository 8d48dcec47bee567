"""vLLM's automatic prefix cache in the engine (engine/prefix_cache.py, docs/model.md section 11).

The recorded vLLM schedules with prefix caching are replayed in ``test_vllm_fixtures.py``;
here: the work a cache saves is accounted exactly, the bound stays below every makespan
(and the bound without the cache's allowance would not), the trace check refuses hits that
were not there, and the ``prefix-affinity`` router keeps a shared prefix on one client.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hybridsched.engine.admission import Admission
from hybridsched.instance import Client, Instance
from hybridsched.latency.linear import LinearLatency
from hybridsched.policies.registry import SolveSettings
from hybridsched.studies.bounds import full_lower_bound
from hybridsched.studies.run import run_policy
from hybridsched.trace.check import check_trace
from hybridsched.trace.errors import TraceError
from hybridsched.workloads.prefixes import with_shared_prefix
from tests.engine.test_vllm_fixtures import FIXTURES, fixture_table

LAT = LinearLatency(0.01, 0.0001, 0.005, 0.0, 0.00001)
SOLVE = SolveSettings(time_limit_s=1.0)


def fixture_instance(name: str, lat=LAT) -> tuple[Instance, dict]:
    fx = json.loads((FIXTURES / f"{name}.json").read_text())
    st = fx["settings"]
    table = fixture_table(fx, prefixes=True)
    M = st["num_blocks_usable"] * st["block_size"]
    inst = Instance(
        table,
        (Client(st["max_num_seqs"], M, lat),),
        prefill_budget_tokens=st["max_num_batched_tokens"],
    )
    return inst, st


def run(inst, policy="vllm", cache=True, async_=False, router=None):
    adm = Admission("on-demand", block_size=16, async_scheduling=async_, prefix_caching=cache)
    return run_policy(inst, policy, solve=SOLVE, admission=adm, router=router, check=True)


def test_cached_and_computed_prompt_tokens_add_up():
    """Tests that without evictions every admitted prompt token is computed or found cached
    (``prefill_tokens_saved``), and that the hit rate is their share."""
    inst, _ = fixture_instance("prefix-ample.sync")
    res = run(inst)
    assert len(res.evictions) == 0
    saved = res.metrics["prefill_tokens_saved"]
    computed = int(res.trace["prefill_tokens"].sum())
    assert saved > 0
    assert saved + computed == int(inst.prompt.sum())
    assert res.metrics["prefix_cache_hit_rate"] == pytest.approx(saved / (saved + computed))


def test_cache_off_is_the_engine_without_prefix_identity():
    """Tests that ``prefix_caching=False`` runs exactly as a workload with no prefix columns."""
    inst, _ = fixture_instance("prefix-tight.sync")
    plain = inst.replace(
        requests=inst.requests.drop(
            columns=["prefix_parent", "prefix_group", "shared_prefix_tokens"]
        )
    )
    a, b = run(inst, cache=False), run(plain, cache=True)
    pd.testing.assert_frame_equal(a.trace, b.trace)
    assert len(a.hits) == 0 and "prefill_tokens_saved" not in a.metrics


@pytest.mark.parametrize("name", ["prefix-ample.sync", "prefix-tight.async"])
@pytest.mark.parametrize("policy", ["vllm", "amin"])
def test_bound_stays_below_the_makespan_with_a_prefix_cache(name, policy):
    """Tests that the bound with the cache's allowance is valid for chunked and whole-prompt
    rules, while the bound that ignores the cache exceeds the chunked run's makespan on
    these instances (so the allowance is needed, and this test can fail)."""
    inst, st = fixture_instance(name)
    res = run(inst, policy, async_=st["async_scheduling"])
    mixed = policy == "vllm"
    lb = full_lower_bound(inst, solve=SOLVE, mixed_iterations=mixed, admission="on-demand")
    assert lb.lower_bound_s <= res.metrics["makespan_s"] * (1 + 1e-9)
    if mixed:
        naive = full_lower_bound(
            inst, solve=SOLVE, mixed_iterations=True, admission="on-demand", cached=None
        )
        assert naive.lower_bound_s > res.metrics["makespan_s"]


def test_check_refuses_hits_that_were_not_there():
    """Tests that ``check_trace`` refuses a hits table claiming one more cached block."""
    inst, _ = fixture_instance("prefix-ample.sync")
    res = run(inst)
    bad = res.hits.copy()
    bad.loc[0, "cached_tokens"] += 16
    with pytest.raises(TraceError, match="prefilled exactly once"):
        check_trace(res.trace, inst, evictions=res.evictions, admission="on-demand", hits=bad)


def shared_groups(n=48, prefix=1024, seed=0) -> pd.DataFrame:
    """Two system prompts, requests in runs of two of a kind (A A B B ...), lightly loaded."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "request_id": np.arange(n),
            "prompt_tokens": prefix + rng.integers(20, 200, n),
            "output_tokens": rng.integers(2, 40, n),
            "arrival_s": np.arange(n) * 0.2,
            "prefix_group": ["A" if (k // 2) % 2 == 0 else "B" for k in range(n)],
            "shared_prefix_tokens": prefix,
        }
    )


def test_prefix_affinity_keeps_a_prefix_on_one_client():
    """Tests that on two equal clients ``prefix-affinity`` finds more of the prompts cached
    than round-robin, which splits every run of two across the clients."""
    lat = LinearLatency(0.002, 0.00002, 0.002, 0.0, 0.000002)
    inst = Instance(shared_groups(), (Client(16, 20000, lat), Client(16, 20000, lat)))
    rates = {
        r: run(inst, router=r).metrics["prefix_cache_hit_rate"]
        for r in ("round-robin", "prefix-affinity")
    }
    assert rates["prefix-affinity"] > rates["round-robin"] > 0


def test_shared_prefix_marks_every_prompt_and_refuses_a_second_identity():
    """Tests ``--shared-prefix N``: every prompt starts with min(N, s_i) shared tokens; a
    workload that already says which prompts share prefixes is refused by name."""
    df = shared_groups().drop(columns=["prefix_group", "shared_prefix_tokens"])
    out = with_shared_prefix(df, 1100)
    assert (out["shared_prefix_tokens"] == np.minimum(df["prompt_tokens"], 1100)).all()
    with pytest.raises(ValueError, match="shared_prefix"):
        with_shared_prefix(out, 10)
