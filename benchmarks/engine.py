"""Serving-engine benchmarks (``make bench``, sections ``engine`` and ``scale``).

- ``engine``: the default single case through today's engine and through the
  pre-engine simulator (commit ``LEGACY``, unpacked from git into a temporary folder), in
  one run, side by side: best of 5 per policy, and the ratio (target: at most 1.2x).
- ``scale``: the whole CLI (``simulate --check``: routing, simulation, metrics,
  check_trace, bound, files) on GSM8K lengths sampled with replacement and Poisson
  arrivals at about 90% of the cluster's capacity, for ``vllm`` and ``online-hybrid``:
  wall time, CPU time (user + sys), peak memory (PSS summed over the CLI and its check
  process) and the largest process's peak RSS (targets for 100,000 requests on 64
  clients: 30 s, 2 GiB), ``repeat`` times each. The machine may be shared: CPU time is
  the steadier figure.
- ``phases``: the same runs, phase by phase, one after the other in one process (routing
  + simulation, request table + metrics, check_trace, bound, files): wall and CPU time
  per phase and the peak RSS reached by the end of each. The CLI computes the bound
  beside the simulation and runs the check beside the files (``background.py``), so its
  wall time is less than the phases' sum.
"""

from __future__ import annotations

import json
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

    from hybridsched.workloads.requests import load_gsm8k

    g = load_gsm8k()
    rows = np.random.default_rng(seed).integers(0, len(g), n)
    df = g.iloc[rows].reset_index(drop=True)
    df["request_id"] = np.arange(n)
    df.drop(columns=["arrival_s"]).to_csv(path, index=False)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux ``/proc``)."""
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                for child in fh.read().split():
                    out += _tree(int(child))
    except OSError:
        pass
    return out


def _pss(pid: int) -> int:
    """Proportional set size in bytes: shared pages split between the processes sharing them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cli(args: list[str], every_s: float = 0.2) -> tuple[float, float, float, float, str]:
    """Run the CLI: wall s, CPU s (user + sys), peak memory GiB, peak RSS GiB, status.

    Peak memory is the PSS summed over the CLI and its children (the ``--check`` process
    shares the parent's pages copy-on-write, so their RSS would count those twice),
    sampled every ``every_s``; peak RSS is the largest single process's (``ru_maxrss``).
    """
    import resource

    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.Popen(
        [sys.executable, "-m", "hybridsched", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    peak = 0
    while p.poll() is None:
        peak = max(peak, sum(_pss(q) for q in _tree(p.pid)))
        time.sleep(every_s)
    err = p.stderr.read()
    p.stderr.close()
    wall = time.perf_counter() - t0
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = r.ru_utime + r.ru_stime - before.ru_utime - before.ru_stime
    rss_gib = r.ru_maxrss * 1024 / 2**30
    mem_gib = peak / 2**30 if peak else float("nan")
    status = "ok" if p.returncode == 0 else f"exit {p.returncode}: {err.strip()[-300:]}"
    return wall, cpu, mem_gib, rss_gib, status


def bench_scale(cases=((100_000, 64, 3), (1_000_000, 256, 1))) -> None:
    """Each case ``(requests, clients, repeat)``: ``repeat`` runs per policy, then the median."""
    print("== scale: the whole CLI run (simulate --check), GSM8K lengths, Poisson arrivals ==")
    per_client_rps = 6.3  # measured: 2 x tp=4 serve the single case at about 14 requests/s
    with tempfile.TemporaryDirectory() as tmp:
        for n, J, repeat in cases:
            reqs = Path(tmp) / f"req_{n}.csv"
            _workload(n, reqs)
            rate = 0.9 * per_client_rps * J
            target = "  (target: 30 s, 2 GiB)" if n == 100_000 else ""
            for policy in ("vllm", "online-hybrid"):
                args = [
                    "simulate", "--policy", policy, "--clients", str(J), "--requests", str(reqs),
                    "--arrivals", f"poisson:{rate:g}", "--check", "--time-limit", "10",
                    "--out", str(Path(tmp) / f"out_{policy}_{n}"),
                ]  # fmt: skip
                runs = []
                for _ in range(repeat):
                    wall, cpu, mem, rss, status = _cli(args)
                    runs.append((wall, cpu, mem))
                    print(
                        f"  {policy:14s} {n:>9,} requests on {J:3d} clients at {rate:.0f} req/s: "
                        f"wall {wall:6.1f} s, CPU {cpu:6.1f} s, peak memory {mem:.2f} GiB "
                        f"(largest process {rss:.2f} GiB), {status}{target}"
                    )
                if repeat > 1:
                    w, c, m = (sorted(x)[len(x) // 2] for x in zip(*runs, strict=True))
                    print(
                        f"  {policy:14s} median of {repeat}: wall {w:6.1f} s, CPU {c:6.1f} s, "
                        f"peak memory {m:.2f} GiB; wall {min(r[0] for r in runs):.1f}-"
                        f"{max(r[0] for r in runs):.1f} s"
                    )


_PHASES = """
import json, resource, sys, tempfile, time
import pandas as pd
from hybridsched.cells import cluster_of, requests_of, resolve
from hybridsched.cli import Outputs
from hybridsched.experiments import POLICIES, RuleKnobs, SolveSettings, full_lower_bound, run_policy
from hybridsched.instance import make_instance
from hybridsched.metrics import metrics, request_table
from hybridsched.trace import check_run

policy, path, J, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
out = {}
def phase(name, fn):
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    value = fn()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    out[name] = (time.perf_counter() - t0, cpu, r1.ru_maxrss / 2**20)
    return value
p = resolve(dict(policy=policy, clients=J, workload=path, arrivals="poisson:" + rate))
inst = phase("instance", lambda: make_instance(requests_of(p), cluster_of(p)))
solve = SolveSettings(10.0, 1e-4, replan_s=1.0)
run = phase("routing + simulation", lambda: run_policy(inst, policy, RuleKnobs(), solve))
def table():
    req = request_table(run.trace, inst, run.evictions)
    return metrics(run.trace, inst, run.evictions, req=req)
phase("request table + metrics", table)
phase("check_trace", lambda: check_run(run, inst, flat=run.flat))
phase("bound", lambda: full_lower_bound(inst, solve=solve, mixed_iterations=POLICIES[policy].mixed,
      admission=run.admission))
def files():
    o = Outputs(tempfile.mkdtemp())
    o.add("trace.csv", run.trace, request_ids_flat=run.flat.rid)
    for name, x in (("requests.csv", run.requests),
                    ("evictions.csv", run.evictions), ("replans.csv", pd.DataFrame(run.router_log)),
                    ("metrics.json", dict(run.metrics))):
        o.add(name, x)
    o.commit()
phase("files", files)
print("PHASES", json.dumps({"iterations": len(run.trace), "phases": out}))
"""


def bench_phases(cases=((100_000, 64),)) -> None:
    print("== scale, phase by phase (one process; run_policy's own metrics are in routing) ==")
    per_client_rps = 6.3
    with tempfile.TemporaryDirectory() as tmp:
        for n, J in cases:
            reqs = Path(tmp) / f"req_{n}.csv"
            _workload(n, reqs)
            rate = f"{0.9 * per_client_rps * J:g}"
            for policy in ("vllm", "online-hybrid"):
                p = subprocess.run(
                    [sys.executable, "-c", _PHASES, policy, str(reqs), str(J), rate],
                    capture_output=True, text=True, cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )  # fmt: skip
                line = [x for x in p.stdout.splitlines() if x.startswith("PHASES")]
                if not line:
                    print(f"  {policy}: failed: {p.stderr.strip()[-300:]}")
                    continue
                res = json.loads(line[-1][len("PHASES") :])
                print(
                    f"  {policy}, {n:,} requests on {J} clients, {res['iterations']:,} iterations:"
                )
                for name, (wall, cpu, rss) in res["phases"].items():
                    print(
                        f"    {name:24s} wall {wall:6.1f} s, CPU {cpu:6.1f} s, peak RSS {rss:.2f} GiB"
                    )


if __name__ == "__main__":  # pragma: no cover
    which = sys.argv[1:] or ["engine", "scale", "phases"]
    if "engine" in which:
        bench_engine()
    if "scale" in which:
        bench_scale()
    if "phases" in which:
        bench_phases()
