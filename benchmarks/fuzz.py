"""Fuzzing the engine: every policy, router and admission mode on random valid instances.

``make fuzz`` (default 3 minutes; ``--minutes``, ``--seed``) draws instances from a seeded
generator: one to four clients with heterogeneous KV memory (some requests fit only some
clients), batch limits from 1 to 16, prompts and outputs of a few to a few hundred tokens,
predictions exact, under or over by up to 4x, arrivals at 0, Poisson, or late bursts, some
with a shared prompt prefix. Each instance runs under every policy with its own router and
under every other router, with reservation and on-demand admission (blocks of 1, 4 and 16,
sync and async, prefix caching on). Each run must pass ``check_trace`` (every invariant of
docs/model.md section 9), keep its makespan at or above the instance's lower bound, emit
exactly ``o_i`` tokens per request by an independent recount of the trace (runs without
evictions), and give the same trace twice. A run that refuses the instance with a named ``ValueError`` or ``KVOverflowError``
(a reservation on an under-prediction) is counted, not failed. Any other outcome is a
failure, printed with the seed that reproduces it; shrunk reproducers become regression
tests.
"""

from __future__ import annotations

import argparse
import time
import traceback

import numpy as np
import pandas as pd

from hybridsched.engine.admission import Admission
from hybridsched.engine.schema import KVOverflowError
from hybridsched.instance import Client, Instance
from hybridsched.latency.linear import LinearLatency
from hybridsched.policies.registry import POLICIES, ROUTERS, SolveSettings
from hybridsched.studies.bounds import full_lower_bound
from hybridsched.studies.run import run_policy

LATENCIES = (
    LinearLatency(0.02, 0.0005, 0.01, 0.001, 0.00001),
    LinearLatency(0.04, 0.001, 0.02, 0.002, 0.00002),
)
ADMISSIONS = (
    "reservation",
    Admission("on-demand", block_size=1),
    Admission("on-demand", block_size=4, async_scheduling=True, prefix_caching=True),
    Admission("on-demand", block_size=16, prefix_caching=True),
)
SOLVE = SolveSettings(time_limit_s=0.5)


def instance(rng: np.random.Generator) -> Instance:
    """A random valid instance (module docstring)."""
    n, J = int(rng.integers(1, 40)), int(rng.integers(1, 5))
    Ms = rng.integers(64, 2048, J)
    s = rng.integers(1, 300, n)
    o = rng.integers(1, 200, n)
    o = np.maximum(1, np.minimum(o, Ms.max() - s - 16))  # fits the largest client in blocks
    s = np.minimum(s, Ms.max() - o - 16)
    keep = s >= 1
    s, o = s[keep], o[keep]
    f = rng.choice([0.25, 0.5, 1.0, 1.0, 2.0, 4.0], len(s))
    pred = np.maximum(1, np.minimum(np.round(o * f), Ms.max() - s - 16)).astype(int)
    kind = rng.integers(0, 3)
    arrival = (
        np.zeros(len(s))
        if kind == 0
        else np.sort(rng.exponential(0.05, len(s)).cumsum())
        if kind == 1
        else np.sort(rng.choice([0.0, 5.0, 5.001, 30.0], len(s)))  # late bursts
    )
    cols = {"prompt_tokens": s, "output_tokens": o, "predicted_output_tokens": pred}
    cols["arrival_s"] = arrival
    if rng.random() < 0.3:
        cols["prefix_group"] = "sys"
        cols["shared_prefix_tokens"] = np.minimum(s, int(rng.integers(1, 64)))
    B = rng.integers(1, 17, J)
    lats = [LATENCIES[int(rng.integers(0, 2))] for _ in range(J)]
    clients = tuple(Client(int(b), int(m), lat) for b, m, lat in zip(B, Ms, lats, strict=True))
    return Instance(pd.DataFrame(cols), clients, prefill_budget_tokens=int(rng.integers(16, 400)))


def recount(inst: Instance, trace: pd.DataFrame) -> np.ndarray:
    """Tokens each request emitted, counted from the trace alone (a run without evictions):
    one per decode it takes part in, plus its first token at the end of its prefill."""
    rows = trace.loc[trace["kind"] != "prefill", "request_ids"]
    ids = np.fromiter((r for t in rows for r in t), dtype=np.int64)
    counts = pd.Series(ids).value_counts()
    rid = inst.requests["request_id"].to_numpy()
    return counts.reindex(rid, fill_value=0).to_numpy() + 1


def one_run(inst, policy, router, adm, tally) -> None:
    try:
        res = run_policy(inst, policy, solve=SOLVE, router=router, admission=adm, check=True)
    except (ValueError, KVOverflowError) as e:
        tally["refused"] += 1
        tally.setdefault("refusals", set()).add(type(e).__name__)
        return
    again = run_policy(inst, policy, solve=SOLVE, router=router, admission=adm)
    if not res.trace.equals(again.trace):
        raise AssertionError("not deterministic: two runs gave different traces")
    mixed = POLICIES[policy].mixed
    adm_name = adm if isinstance(adm, str) else adm.name
    lb = full_lower_bound(inst, solve_mmbpp=False, mixed_iterations=mixed, admission=adm_name)
    if res.metrics["makespan_s"] < lb.lower_bound_s * (1 - 1e-9):
        raise AssertionError(f"makespan {res.metrics['makespan_s']} under T_LB {lb.lower_bound_s}")
    if len(res.evictions) == 0 and not res.inflight_preempted:
        got = recount(inst, res.trace)
        bad = np.flatnonzero(got != inst.output)
        if len(bad):
            i = int(bad[0])
            raise AssertionError(f"request row {i} emitted {got[i]} tokens, o_i = {inst.output[i]}")
    tally["ok"] += 1


def fuzz(minutes: float, seed: int = 0) -> tuple[str, list]:
    """Runs for ``minutes``; the summary line and the failures (seed, policy, router,
    admission, error)."""
    t_end = time.perf_counter() + 60 * minutes
    tally, failures, k = {"ok": 0, "refused": 0}, [], 0
    while time.perf_counter() < t_end:
        inst_seed = seed * 1_000_003 + k
        inst = instance(np.random.default_rng(inst_seed))
        policy = list(POLICIES)[k % len(POLICIES)]
        for router in (None, *[r for r in ROUTERS if r != "static"]):
            for adm in ADMISSIONS:
                try:
                    one_run(inst, policy, router, adm, tally)
                except Exception as e:  # a failure: keep going, report with its seed
                    failures.append((inst_seed, policy, router, str(adm), repr(e)[:300]))
                    if len(failures) <= 3:
                        traceback.print_exc()
        k += 1
    runs = tally["ok"] + tally["refused"] + len(failures)
    refusals = ", ".join(sorted(tally.get("refusals", ()))) or "none"
    line = (
        f"fuzz: {k} instances, {runs} runs in {minutes:g} min (seed {seed}): "
        f"{tally['ok']} passed every check, {tally['refused']} refused by name ({refusals}), "
        f"{len(failures)} failed"
    )
    return line, failures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    line, failures = fuzz(args.minutes, args.seed)
    print(line)
    for seed, policy, router, adm, err in failures[:20]:
        print(f"  FAILED seed={seed} policy={policy} router={router} admission={adm}: {err}")
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
