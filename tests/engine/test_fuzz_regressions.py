"""Reproducers of failures ``make fuzz`` found (benchmarks/fuzz.py), kept so they stay fixed.
Each is the fuzzed instance as it was drawn (seed in the test's name)."""

from __future__ import annotations

import pandas as pd
import pytest

from hybridsched.engine.admission import Admission
from hybridsched.instance import Client, Instance
from hybridsched.latency.linear import LinearLatency
from hybridsched.policies.registry import SolveSettings
from hybridsched.studies.bounds import full_lower_bound
from hybridsched.studies.run import run_policy

FAST = LinearLatency(0.02, 0.0005, 0.01, 0.001, 0.00001)
SLOW = LinearLatency(0.04, 0.001, 0.02, 0.002, 0.00002)
SOLVE = SolveSettings(time_limit_s=0.5)


def seed_1000101() -> Instance:
    s = [86, 243, 62, 184, 44, 99, 143, 60, 43, 168, 194, 148, 294, 108, 103, 286, 240]
    s += [67, 192, 85, 230, 16, 77, 171, 215, 248, 290, 283, 91, 267, 47, 230, 102, 198]
    o = [26, 103, 126, 193, 88, 42, 12, 170, 190, 113, 172, 14, 154, 119, 63, 50, 189]
    o += [120, 123, 3, 114, 61, 127, 69, 4, 81, 21, 132, 126, 171, 184, 116, 22, 130]
    p = [26, 206, 126, 772, 44, 42, 6, 340, 190, 226, 172, 7, 154, 30, 63, 50, 189]
    p += [480, 123, 1, 28, 61, 127, 34, 2, 324, 21, 132, 504, 171, 184, 116, 88, 130]
    a = [0.0] * 8 + [5.0] * 8 + [5.001] * 11 + [30.0] * 7
    shared = [62] * 34
    for i, v in ((4, 44), (7, 60), (8, 43), (21, 16), (30, 47)):
        shared[i] = v
    table = pd.DataFrame(
        {"prompt_tokens": s, "output_tokens": o, "predicted_output_tokens": p, "arrival_s": a,
         "prefix_group": "sys", "shared_prefix_tokens": shared}
    )  # fmt: skip
    clients = (
        Client(1, 311, SLOW),
        Client(2, 838, SLOW),
        Client(13, 1844, FAST),
        Client(8, 1715, FAST),
    )
    return Instance(table, clients, prefill_budget_tokens=86)


def seed_1000306() -> Instance:
    table = pd.DataFrame(
        {
            "prompt_tokens": [80, 98, 220, 266, 282, 165, 198, 210, 141, 67, 7, 106, 16, 58],
            "output_tokens": [35, 34, 18, 160, 125, 129, 159, 22, 1, 166, 90, 182, 88, 147],
            "predicted_output_tokens": [35, 68, 72, 160, 250, 32, 40, 88, 4, 83, 45, 182, 22, 147],
            "arrival_s": [0.0] * 4 + [5.0] * 3 + [5.001] * 4 + [30.0] * 3,
            "prefix_group": "sys",
            "shared_prefix_tokens": 6,
        }
    )
    clients = (Client(8, 1019, SLOW), Client(15, 1112, FAST), Client(5, 1167, FAST))
    return Instance(table, clients, prefill_budget_tokens=226)


@pytest.mark.parametrize("block", [4, 16])
def test_seed_1000101_portfolio_places_requests_where_they_fit_in_blocks(block):
    """``hybrid-robust``'s round-robin and random candidates placed request 26 (290 + 21 =
    311 tokens) on the 311-token client, which holds it in tokens but not in whole blocks,
    and the engine refused the dispatch."""
    inst = seed_1000101()  # with exact predictions: no request outgrows its client
    req = inst.requests.assign(predicted_output_tokens=inst.requests["output_tokens"])
    adm = Admission("on-demand", block_size=block, prefix_caching=True)
    res = run_policy(
        inst.replace(requests=req), "hybrid-robust", solve=SOLVE, admission=adm, check=True
    )
    assert res.assignment[26] != 0


def test_seed_1000306_bound_holds_for_a_cache_of_small_blocks():
    """The bound's prefix-cache allowance was taken for 16-token blocks; the 6-token shared
    prefix fits no 16-token block, but a cache of 4-token blocks reuses 4 of its tokens,
    and the makespan (32.41857 s) fell under the bound (32.42057 s)."""
    inst = seed_1000306()
    adm = Admission("on-demand", block_size=4, async_scheduling=True, prefix_caching=True)
    res = run_policy(inst, "b", solve=SOLVE, router="round-robin", admission=adm, check=True)
    lb = full_lower_bound(inst, solve_mmbpp=False, admission="on-demand")
    assert lb.lower_bound_s <= res.metrics["makespan_s"] * (1 + 1e-9)
