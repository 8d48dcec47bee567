"""Serving-engine benchmarks (``make bench``, sections ``engine`` and ``scale``).

- ``engine``: the default single case through today's engine and through the
  pre-engine simulator (commit ``LEGACY``, unpacked from git into a temporary folder), in
  one run, side by side: best of 5 per policy, and the ratio (target: at most 1.2x).
- ``scale``: the whole CLI (``simulate --check``: routing, simulation, metrics,
  check_trace, bound, files) on GSM8K lengths sampled with replacement and Poisson
  arrivals at about 90% of the cluster's capacity, for ``vllm`` and ``online-hybrid``:
  wall time and peak RSS (targets for 100,000 requests on 64 clients: 30 s, 2 GiB).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEGACY = "a76e60f"  # the last commit before the serving engine

_TIMING = """
import time, sys
from hybridsched.experiments import POLICIES, make_rule, offline_assignment
from hybridsched.instance import make_instance
from hybridsched.simulator import simulate
inst = make_instance()
for name in ("baseline", "hybrid", "chunked"):
    spec = POLICIES[name]
    a, _ = offline_assignment(inst, spec.dispatch)
    rule = make_rule(spec)
    best = min(
        (lambda t0: (simulate(inst, a, rule), time.perf_counter() - t0)[1])(time.perf_counter())
        for _ in range(5)
    )
    print(name, best)
"""


def _timings(pythonpath: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    out = subprocess.run(
        [sys.executable, "-c", _TIMING], env=env, capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[0]: float(line.split()[1]) for line in out.strip().splitlines()}


def bench_engine() -> None:
    print("== engine vs the pre-engine simulator: default single case, best of 5 ==")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", LEGACY, "hybridsched", "data"],
                capture_output=True,
                check=True,
            ).stdout
        except (subprocess.CalledProcessError, FileNotFoundError):
            print(f"  skipped: commit {LEGACY} is not in this checkout's history")
            return
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        # Interleave the two, so that load on the machine hits both alike.
        old, new = {}, {}
        for _ in range(2):
            for k, v in _timings(Path(tmp)).items():
                old[k] = min(old.get(k, v), v)
            for k, v in _timings(ROOT).items():
                new[k] = min(new.get(k, v), v)
    for k in old:
        print(
            f"  {k:10s} before {old[k] * 1e3:7.1f} ms, engine {new[k] * 1e3:7.1f} ms, "
            f"ratio {new[k] / old[k]:.2f}x  (target <= 1.2x)"
        )


def _workload(n: int, path: Path, seed: int = 0) -> None:
    import numpy as np

    from hybridsched.data import load_gsm8k

    g = load_gsm8k()
    rows = np.random.default_rng(seed).integers(0, len(g), n)
    df = g.iloc[rows].reset_index(drop=True)
    df["request_id"] = np.arange(n)
    df.drop(columns=["arrival_s"]).to_csv(path, index=False)


def _cli(args: list[str]) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    code = (
        "import resource, subprocess, sys; "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(p.stdout[-400:]); print(p.stderr[-2000:], file=sys.stderr); "
        "print('RSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "sys.exit(p.returncode)"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, sys.executable, "-m", "hybridsched", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    rss = [line for line in p.stdout.splitlines() if line.startswith("RSS")]
    rss_gib = int(rss[-1].split()[1]) * 1024 / 2**30 if rss else float("nan")
    status = "ok" if p.returncode == 0 else f"exit {p.returncode}: {p.stderr.strip()[-300:]}"
    return wall, rss_gib, status


def bench_scale(cases=((100_000, 64), (1_000_000, 256))) -> None:
    print("== scale: the whole CLI run (simulate --check), GSM8K lengths, Poisson arrivals ==")
    per_client_rps = 6.3  # measured: 2 x tp=4 serve the single case at about 14 requests/s
    with tempfile.TemporaryDirectory() as tmp:
        for n, J in cases:
            reqs = Path(tmp) / f"req_{n}.csv"
            _workload(n, reqs)
            rate = 0.9 * per_client_rps * J
            for policy in ("vllm", "online-hybrid"):
                args = [
                    "simulate", "--policy", policy, "--clients", str(J), "--requests", str(reqs),
                    "--arrivals", f"poisson:{rate:g}", "--check", "--time-limit", "10",
                    "--out", str(Path(tmp) / f"out_{policy}_{n}"),
                ]  # fmt: skip
                wall, rss, status = _cli(args)
                target = "  (target: 30 s, 2 GiB)" if n == 100_000 else ""
                print(
                    f"  {policy:14s} {n:>9,} requests on {J:3d} clients at {rate:.0f} req/s: "
                    f"{wall:6.1f} s, peak RSS {rss:.2f} GiB, {status}{target}"
                )


if __name__ == "__main__":  # pragma: no cover
    which = sys.argv[1:] or ["engine", "scale"]
    if "engine" in which:
        bench_engine()
    if "scale" in which:
        bench_scale()
