"""The robust hybrid against the exact optimum on fuzzed tiny instances (``make bench``: ``robust``).

Instances: 1-2 clients, 2-6 requests, ``B`` 2-3, in three regimes: ``ample`` memory,
``memory``-bound (``M`` between the largest reservation and half the total) and
``compute``-bound (long prompts, short outputs); the latency model is the roofline's
linear fit (the exact MIP needs a linear model). For each: the exact iteration MIP's
optimum, and the makespans of ``baseline``, ``hybrid`` and ``hybrid-robust``. Prints how
often each policy is worse than the baseline and its mean and worst ratio to the optimum
(targets for ``hybrid-robust``: never worse than the baseline; mean ratio <= 1.003).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

REGIMES = ("ample", "memory", "compute")


def tiny_instance(rng: np.random.Generator, regime: str, latency):
    from hybridsched.instance import Client, Instance

    n = int(rng.integers(2, 7))
    J = int(rng.integers(1, 3))
    B = int(rng.integers(2, 4))
    if regime == "compute":
        s = rng.integers(200, 1500, n)
        o = rng.integers(1, 4, n)
    else:
        s = rng.integers(10, 300, n)
        o = rng.integers(1, 7, n)
    res = s + o
    if regime == "memory":
        M = int(rng.integers(res.max(), max(res.max() + 1, res.sum() // 2 + 1)))
    else:
        M = 10**6
    req = pd.DataFrame({"prompt_tokens": s, "output_tokens": o})
    return Instance(req, tuple(Client(B, M, latency) for _ in range(J)))


def linear_latency():
    from hybridsched.latency.linear import fit_linear
    from hybridsched.latency.profiles import load_hardware_profile, load_model_profile
    from hybridsched.latency.roofline import RooflineLatency

    roof = RooflineLatency(
        load_model_profile("llama-65b"), load_hardware_profile("a100-80gb-sxm"), 4
    )
    return fit_linear(roof, 2).model


def fuzz(count: int = 1000, seed: int = 0, time_limit_s: float = 30.0) -> pd.DataFrame:
    from hybridsched.studies.exact import solve_exact
    from hybridsched.studies.run import run_policy

    lat = linear_latency()
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(count):
        regime = REGIMES[k % len(REGIMES)]
        inst = tiny_instance(rng, regime, lat)
        try:
            opt = solve_exact(inst, time_limit_s=time_limit_s).mip
        except RuntimeError:
            continue
        if opt.status.value != "optimal":
            continue
        row = {"case": k, "regime": regime, "n": inst.num_requests, "J": inst.num_clients,
               "opt_s": opt.makespan_s}  # fmt: skip
        for p in ("baseline", "hybrid", "hybrid-robust"):
            row[p] = run_policy(inst, p).metrics["makespan_s"]
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> None:
    print(f"  {len(df)} instances solved to optimality")
    for p in ("baseline", "hybrid", "hybrid-robust"):
        ratio = df[p] / df["opt_s"]
        worse = (df[p] > df["baseline"] * (1 + 1e-9)).sum()
        print(
            f"  {p:14s} worse than baseline on {worse:4d}; makespan / OPT mean {ratio.mean():.4f}, "
            f"max {ratio.max():.3f}; optimal on {(ratio < 1 + 1e-6).mean():.0%}"
        )
    for regime, g in df.groupby("regime"):
        r = (g["hybrid-robust"] / g["opt_s"]).mean()
        print(f"    {regime:8s} {len(g):4d} instances: hybrid-robust / OPT mean {r:.4f}")


def bench_robust(count: int = 1000) -> None:
    print(f"== hybrid-robust on {count} fuzzed tiny instances against the exact MIP ==")
    t0 = time.perf_counter()
    df = fuzz(count)
    summarize(df)
    print(f"  wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":  # pragma: no cover
    bench_robust(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
