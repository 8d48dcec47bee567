"""Static plans (round-robin, the MMBPP) place each request only where it fits, and the
watermark never keeps a request from an empty client."""

from __future__ import annotations

import pandas as pd
import pytest

from hybridsched.engine.admission import Admission
from hybridsched.instance import Client, Cluster, Instance
from hybridsched.policies.registry import POLICIES, SolveSettings
from hybridsched.policies.static import round_robin
from hybridsched.studies.run import run_policy
from tests.strategies import FAST

SOLVE = SolveSettings(time_limit_s=1.0, replan_s=0.1)


def heterogeneous() -> Instance:
    """Two clients: one with 1,000,000 KV tokens, a llama-65b tp=2 client with 5,122 (B=13);
    requests of 10 + 5 and 4,000 + 1,765 tokens: the second fits only the first client."""
    small = Cluster(num_clients=1, tp=2).make_clients()[0]
    small = Client(13, small.kv_capacity_tokens, small.latency)
    big = Client(13, 1_000_000, small.latency)
    req = pd.DataFrame({"prompt_tokens": [10, 4000], "output_tokens": [5, 1765]})
    return Instance(req, (big, small))


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("admission", ["reservation", "on-demand"])
def test_every_policy_runs_when_a_request_fits_only_some_clients(policy, admission):
    """Tests the heterogeneous reproducer under every policy and both admissions: each request
    runs on a client that can hold it, and every invariant holds."""
    inst = heterogeneous()
    assert inst.clients[1].kv_capacity_tokens == 5122
    res = run_policy(inst, policy, solve=SOLVE, admission=admission, check=True)
    assert res.assignment[1] == 0


def test_round_robin_skips_a_client_that_cannot_hold_the_request():
    """Tests that the static round-robin plan skips a client too small and keeps its turn."""
    req = pd.DataFrame({"prompt_tokens": [10, 300, 10, 10], "output_tokens": [5, 5, 5, 5]})
    inst = Instance(req, (Client(4, 1000, FAST), Client(4, 100, FAST)))
    assert round_robin(inst).tolist() == [0, 0, 1, 0]


@pytest.mark.parametrize("policy", ["vllm", "hybrid-amin", "online-hybrid"])
def test_the_watermark_never_blocks_an_empty_client(policy):
    """Tests that a request whose prompt needs more than M minus the watermark runs on an
    empty client under on-demand admission (one client of M = 1,000, B = 4; 995 + 5 tokens;
    watermark 0.01, i.e. 10 tokens at block size 1)."""
    req = pd.DataFrame({"prompt_tokens": [995], "output_tokens": [5]})
    inst = Instance(req, (Client(4, 1000, FAST),))
    adm = Admission("on-demand", 0.01, block_size=1)
    assert adm.kv_limit(1000) < 995
    res = run_policy(inst, policy, solve=SOLVE, admission=adm, check=True)
    assert res.requests["finish_s"].notna().all()
