"""The ``vllm`` policy equals vLLM's own scheduler, step by step, on recorded schedules.

``tests/fixtures/vllm/`` holds schedules recorded from vLLM 0.33's real v1 ``Scheduler``
and ``AsyncScheduler`` (``scripts/record_vllm_schedules.py``; its README gives the schema).
Each is replayed through the engine on one client with vLLM's settings (32 slots, 2,048
tokens per step, 16-token blocks, the recorded number of blocks, watermark 0, chunked
prefill, sync or async) and iterations of exactly 1 s, so an engine iteration starting at
``t`` is vLLM's step ``t`` and a request arriving at step ``a`` arrives at ``t = a``. Every
step must schedule the same requests with the same token counts, and preempt the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hybridsched.engine.admission import Admission
from hybridsched.instance import Client, Instance
from hybridsched.latency.linear import LinearLatency
from hybridsched.policies.registry import SolveSettings
from hybridsched.studies.run import run_policy

FIXTURES = Path(__file__).parents[1] / "fixtures" / "vllm"
ONE_SECOND = LinearLatency(1.0, 0.0, 1.0, 0.0, 0.0)


def fixtures(prefix: bool) -> list[Path]:
    return [p for p in sorted(FIXTURES.glob("*.json")) if p.name.startswith("prefix") == prefix]


def recorded_steps(fx: dict) -> list[list[list[int]]]:
    """Each step's ``[request, tokens]`` in vLLM's order (the fixture README's decoder)."""
    steps = fx["summary"]["steps"]
    S = [{"A": [], "C": {}, "X": set(), "P": set(), "F": set()} for _ in range(steps)]
    for k, rid, n, _hit, _kind in fx["admit"]:
        S[k]["A"].append((rid, n))
    for k, rid, n in fx["chunk"]:
        S[k]["C"][rid] = n
    for k, rid in fx["skip"]:
        S[k]["X"].add(rid)
    for k, rid in fx["preempt"]:
        S[k]["P"].add(rid)
    for k, rid in fx["finish"]:
        S[k]["F"].add(rid)
    lag_at = dict((k0, v) for k0, v in fx["lag"])
    running, applied, lag, out = [], -1, 0, []
    for k in range(steps):
        lag = lag_at.get(k, lag)
        while applied < k - 1 - lag:  # outputs applied before schedule(k)
            applied += 1
            running = [r for r in running if r not in S[applied]["F"]]
        s = S[k]
        step = [[r, s["C"].get(r, 1)] for r in running if r not in s["X"] | s["P"]]
        step += [[r, n] for r, n in s["A"]]
        out.append(step)
        running = [r for r in running if r not in s["P"]] + [r for r, _ in s["A"]]
    return out


def prefix_columns(fx: dict) -> dict:
    """The fixture's prompt segments as the workload's prefix columns: a first turn starts
    with the shared system prompt (``sys``) or not; a later turn extends its parent's prompt
    and output (``[parent, ...]``) with its own text."""
    parent, group, shared = [], [], []
    for p, _o, _a, segs, par in fx["requests"]:
        sys_prompt = segs[0][0] == "sys"
        parent.append(par[0] if par else -1)
        group.append("sys" if sys_prompt and not par else None)
        shared.append(p - segs[-1][1] if par else (segs[0][1] if sys_prompt else 0))
    return {"prefix_parent": parent, "prefix_group": group, "shared_prefix_tokens": shared}


def fixture_table(fx: dict, prefixes: bool) -> pd.DataFrame:
    """The fixture's requests as a request table (with its prefix columns if ``prefixes``)."""
    req = pd.DataFrame([r[:3] for r in fx["requests"]], columns=["p", "o", "a"])
    return pd.DataFrame(
        {
            "request_id": np.arange(len(req)),
            "prompt_tokens": req["p"],
            "output_tokens": req["o"],
            "arrival_s": req["a"].astype(float),
            **(prefix_columns(fx) if prefixes else {}),
        }
    )


def replay(fx: dict):
    """The fixture's requests through the engine's ``vllm`` policy, with vLLM's settings."""
    st = fx["settings"]
    table = fixture_table(fx, st["enable_prefix_caching"])
    M = st["num_blocks_usable"] * st["block_size"]
    inst = Instance(
        table,
        (Client(st["max_num_seqs"], M, ONE_SECOND),),
        prefill_budget_tokens=st["max_num_batched_tokens"],
    )
    adm = Admission(
        "on-demand",
        st["watermark"],
        block_size=st["block_size"],
        async_scheduling=st["async_scheduling"],
        prefix_caching=st["enable_prefix_caching"],
    )
    return run_policy(
        inst, "vllm", solve=SolveSettings(time_limit_s=1.0), admission=adm, check=True
    )


def engine_steps(res) -> dict[int, dict[int, int]]:
    """Per step (an iteration's start time): request -> tokens scheduled."""
    out = {}
    tr = res.trace
    for start, ids, cids, ctoks in zip(
        tr["start_s"], tr["request_ids"], tr["chunk_ids"], tr["chunk_tokens"], strict=True
    ):
        step = {int(r): 1 for r in ids}
        step.update({int(r): int(x) for r, x in zip(cids, ctoks, strict=True)})
        out[int(round(start))] = step
    return out


@pytest.mark.parametrize(
    "path", fixtures(prefix=False) + fixtures(prefix=True), ids=lambda p: p.stem
)
def test_vllm_policy_schedules_every_step_as_vllm_does(path):
    """Tests that every step schedules the same requests and token counts as vLLM's recorded
    scheduler, that the same requests are preempted at the same steps, and that the run
    keeps every invariant (``check=True``)."""
    fx = json.loads(path.read_text())
    res = replay(fx)
    want = {k: {r: n for r, n in s} for k, s in enumerate(recorded_steps(fx)) if s}
    got = engine_steps(res)
    differ = [k for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
    assert not differ, (
        f"first differing step {differ[0]}: {want.get(differ[0])} vs {got.get(differ[0])}"
    )
    ours = sorted(
        [
            (int(round(t)), int(r))
            for t, r in zip(res.evictions["time_s"], res.evictions["request_id"], strict=True)
        ]
        + [(int(round(res.trace["start_s"].iloc[k])), r) for _, k, r in res.inflight_preempted]
    )
    assert ours == sorted(tuple(x) for x in fx["preempt"])
    assert len(want) == fx["summary"]["steps"] - fx["summary"]["empty_steps"]


@pytest.mark.parametrize("path", fixtures(prefix=True), ids=lambda p: p.stem)
def test_prefix_cache_hits_as_vllm_does(path):
    """Tests that with prefix caching every admission finds as many cached prompt tokens as
    in vLLM's recorded run (its hits, step by step), and that some do (the test can fail)."""
    fx = json.loads(path.read_text())
    res = replay(fx)
    want = sorted((k, rid, hit) for k, rid, _n, hit, _kind in fx["admit"] if hit)
    start = res.trace.set_index(["client", "iteration"])["start_s"]
    got = sorted(
        (int(round(start[(c, k)])), int(r), int(x))
        for c, k, r, x in res.hits.itertuples(index=False)
    )
    assert want and got == want
    assert res.metrics["prefill_tokens_saved"] == sum(x for *_, x in want)
