"""Benchmarks: figures, not pass/fail tests. Run with `make bench` (or `python benchmarks/run.py --only sim`).

Sections:
  sim    simulating the default single case (1,319 requests, 2 x tp=4, B=32): baseline and hybrid
         wall time, iterations per second, and the online rule's decision time per boundary.
  mmbpp  the offline MMBPP on the 1,319-request workload for 2, 4, 8, 16 clients: model build
         time, solve time to 0.1% gap (or the gap at the time limit), LPT vs MIP vs bound.
  mmbpp-scale  the MMBPP at scale (20,000 x 64 with a 0.01 s limit, 100,000 x 64 with 10 s,
         100,000 x 2, 1,000,000 x 256, and 100,000 x 64 per-client sizes): wall time of the
         whole stage, peak RSS (each case in its own process), objective vs trivial bound.
  bound  the lower bound's MMBPP part at 1,319 x 16 and 100,000 x 64: wall time, peak RSS.
  mip    the exact iteration MIP: the largest instance solved to optimality within 60 s.
  study  the 100-case study wall time on 2 workers, for both configurations.
  engine the serving engine against the pre-engine simulator, side by side (benchmarks/engine.py).
  scale  the whole CLI run at 100,000 requests on 64 clients and 1,000,000 on 256 (engine.py).
  phases the 100,000-request runs phase by phase: wall, CPU and peak RSS (engine.py).
  fit    the latency calibration on the shipped Llama-2-70B measurements (A100, H100): fit
         time, median/p90 error per kind (targets: median <= 5%, p90 <= 10%), and the
         leave-one-tp-out errors (fit without one tp, predict it), twice: everything refitted,
         and with the tp-dependent terms held at the all-data fit (labelled; see the note).
  workloads  loading each shipped workload (parse, validate, sort) and exporting it for Vidur.
  bounds the arrival-aware volume (tau sweep) on 1,000,000 requests, and T_LB / T* (the
         exact MIP's optimum) on seeded tiny instances: mean and min, default and tight.
  sweep  a 1,000-cell grid (about 1 s cells: baseline on 400-request samples) on a 2-worker
         local Dask cluster and on the process pool: wall time, cells per second, and the
         scheduling overhead per cell, (wall x workers - sum of cell times) / cells.
         `--sweep-cells` and `--sweep-requests` make it smaller.
  pred   the length predictors' errors on the GSM8K test split (MAE, MAPE, Spearman, interval
         coverage), against the best constant and a prompt-length-only regression.
  kernels  the measured-kernel latency model against aiconfigurator-core 0.12.0's own
         estimates of all 130,944 reference iterations (benchmarks/kernel_accuracy.py):
         median / p90 / max relative error per step kind, backend, table and model
         (target: median <= 5%).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np


def bench_sim(repeat: int = 5) -> None:
    from hybridsched.instance import make_instance
    from hybridsched.policies.registry import POLICIES, make_rule
    from hybridsched.policies.static import simulate
    from hybridsched.studies.run import offline_assignment

    inst = make_instance()
    print("== simulator: default single case (1,319 requests, 2 clients, tp=4, B=32), one core ==")
    for name in ("baseline", "hybrid", "chunked", "hybrid-chunked"):
        spec = POLICIES[name]
        a, _ = offline_assignment(inst, spec.dispatch)
        rule = make_rule(spec)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            tr = simulate(inst, a, rule)
            times.append(time.perf_counter() - t0)
        best = min(times)
        print(
            f"{name:14s} simulate: best {best * 1e3:7.1f} ms, median {statistics.median(times) * 1e3:7.1f} ms "
            f"over {repeat}; {len(tr)} iterations, {len(tr) / best:,.0f} iterations/s  (target: baseline < 200 ms, hybrid <= 300 ms)"
        )

    # Decision time of the Lagrangian rule per iteration boundary.
    spec = POLICIES["hybrid"]
    a, _ = offline_assignment(inst, spec.dispatch)
    inner = make_rule(spec)
    samples: list[int] = []

    class Timed:
        name = "timed-hybrid"

        def queue_key(self, instance):
            return inner.queue_key(instance)

        def start(self, instance, client):
            decide = inner.start(instance, client)
            clock = time.perf_counter_ns

            def timed(st):
                t0 = clock()
                act = decide(st)
                samples.append(clock() - t0)
                return act

            return timed

    for _ in range(3):
        simulate(inst, a, Timed())
    us = np.array(samples) / 1e3
    print(
        f"hybrid decision per boundary: p50 {np.percentile(us, 50):.1f} us, p99 {np.percentile(us, 99):.1f} us, "
        f"max {us.max():.1f} us over {len(us):,} decisions  (target: p99 <= 50 us)"
    )


def bench_mmbpp(time_limit_s: float = 10.0) -> None:
    from hybridsched.bounds.floors import planning_sizes
    from hybridsched.instance import Cluster, make_instance
    from hybridsched.offline.heuristics import lpt_assignment
    from hybridsched.offline.mmbpp import solve_assignment
    from hybridsched.offline.mmbpp_model import build_assignment_model
    from hybridsched.offline.mmbpp_problem import trivial_bound

    print(
        "== offline MMBPP: 1,319 GSM8K requests, tp=4 clients, gap target 0.1%, time limit "
        f"{time_limit_s:.0f} s (target: every case within 10 s) =="
    )
    print(
        f"{'clients':>7} {'build s':>8} {'solve s':>8} {'status':>9} {'LPT s':>10} {'MIP s':>10} {'bound s':>10} {'gap':>9}"
    )
    for m in (2, 4, 8, 16):
        sizes = planning_sizes(make_instance(cluster=Cluster(num_clients=m)))
        t0 = time.perf_counter()
        build_assignment_model(sizes)
        build = time.perf_counter() - t0
        lpt = lpt_assignment(sizes)
        lpt_obj = max(sizes[lpt == j, j].sum() for j in range(m))
        res = solve_assignment(sizes, time_limit_s=time_limit_s, mip_gap=1e-3)
        bound = max(res.bound_s, trivial_bound(sizes))
        print(
            f"{m:>7} {build:>8.3f} {res.runtime_s:>8.2f} {res.status.value:>9} {lpt_obj:>10.4f} "
            f"{res.objective_s:>10.4f} {bound:>10.4f} {res.gap:>9.2e}"
        )


SCALE_CASES = (  # requests, clients, time limit s, per-client sizes
    (20_000, 64, 0.01, False),
    (100_000, 64, 10.0, False),
    (100_000, 2, 10.0, False),
    (1_000_000, 256, 10.0, False),
    (100_000, 64, 10.0, True),
)


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would include the parent's from before exec)."""
    for line in open("/proc/self/status").read().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _scale_case(n: int, m: int, limit: float, unrelated: bool, seed: int = 0) -> dict:
    """One MMBPP case in this process: sizes ~ U(0.05, 5) s from default_rng(seed)."""
    from hybridsched.offline.mmbpp import solve_assignment

    rng = np.random.default_rng(seed)
    if unrelated:
        sizes = rng.uniform(0.05, 5.0, n)[:, None] * rng.uniform(0.8, 1.25, m)[None, :]
    else:
        sizes = rng.uniform(0.05, 5.0, n)
    t0 = time.perf_counter()
    res = solve_assignment(sizes, time_limit_s=limit, num_clients=m, threads=1, seed=seed)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "rss_mb": _peak_rss_mb(), **res.to_dict()}


def bench_mmbpp_scale() -> None:
    print("== MMBPP at scale: whole offline stage, sizes ~ U(0.05, 5) s, seed 0, threads=1 ==")
    print(
        f"{'requests':>9} {'clients':>7} {'sizes':>10} {'limit s':>7} {'wall s':>7} {'RSS MB':>7} "
        f"{'status':>8} {'LPT/LB-1':>9} {'obj/LB-1':>9} {'LS rounds':>9}  reason"
    )
    for n, m, limit, unrelated in SCALE_CASES:
        cmd = [sys.executable, __file__, "--scale-case", f"{n},{m},{limit},{int(unrelated)}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        lb = r["bound_s"]
        print(
            f"{n:>9,} {m:>7} {'per-client' if unrelated else 'identical':>10} {limit:>7g} "
            f"{r['wall_s']:>7.2f} {r['rss_mb']:>7.0f} {r['status']:>8} "
            f"{r['lpt_objective_s'] / lb - 1:>9.2e} {r['objective_s'] / lb - 1:>9.2e} "
            f"{r['local_search_rounds']:>9}  {r['reason']}"
        )


def _bound_case(n: int, m: int, seed: int = 0) -> dict:
    """The lower bound's MMBPP part on (n, m) sizes with equal columns, in this process."""
    from hybridsched.offline.mmbpp import assignment_bound

    sizes = np.tile(np.random.default_rng(seed).uniform(0.05, 5.0, n)[:, None], (1, m))
    t0 = time.perf_counter()
    bound = assignment_bound(sizes, time_limit_s=10.0, threads=1)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "rss_mb": _peak_rss_mb(), "bound_s": bound}


def bench_bound() -> None:
    print("== lower bound, MMBPP part (assignment_bound), (n, m) sizes, 10 s limit ==")
    for n, m in ((1_319, 16), (100_000, 64)):
        cmd = [sys.executable, __file__, "--bound-case", f"{n},{m}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{n:>9,} x {m:<3}: {r['wall_s']:.2f} s, peak RSS {r['rss_mb']:.0f} MB "
            f"(sizes array {n * m * 8 / 2**20:.0f} MB), bound {r['bound_s']:.4f} s"
        )


def bench_mip(limit_s: float = 60.0) -> None:
    from hybridsched.latency.linear import fit_linear
    from hybridsched.latency.profiles import load_hardware_profile, load_model_profile
    from hybridsched.latency.roofline import RooflineLatency
    from hybridsched.offline.iteration_instance import LinearCoefficients
    from hybridsched.offline.iteration_mip import solve_iteration_mip

    roof = RooflineLatency(
        load_model_profile("llama-65b"), load_hardware_profile("a100-80gb-sxm"), 4
    )
    lin = fit_linear(roof, 4).model
    coef = LinearCoefficients(lin.a_p, lin.b_p, lin.a_d, lin.b_d, lin.c_d)
    rng = np.random.default_rng(0)
    print(
        f"== exact iteration MIP (linear latency fitted to the roofline, B=2, outputs 2..4): "
        f"time limit {limit_s:.0f} s per instance =="
    )
    print(
        f"{'requests':>8} {'clients':>7} {'vars':>7} {'cons':>7} {'iters':>5} {'status':>9} {'solve s':>8} {'gap':>8}"
    )
    largest = None
    for n in range(2, 9):
        for m in (1, 2):
            s = rng.integers(20, 120, n)
            o = rng.integers(2, 5, n)
            res = solve_iteration_mip(s, o, m, 2, 10**6, coef, time_limit_s=limit_s)
            print(
                f"{n:>8} {m:>7} {res.num_variables:>7} {res.num_constraints:>7} {res.num_iterations:>5} "
                f"{res.status.value:>9} {res.runtime_s:>8.2f} {res.gap:>8.1e}"
            )
            if res.status.value == "optimal":
                largest = (n, m)
        if largest is None or largest[0] < n:
            break
    print(
        f"largest instance solved to optimality within {limit_s:.0f} s: {largest[0]} requests on {largest[1]} client(s)"
        if largest
        else "none solved to optimality"
    )


def bench_study(workers: int = 2) -> None:
    from hybridsched.studies.study import run_study

    print(
        f"== 100-case study (1,000 of 1,319 requests per case), {workers} workers (target: <= 60 s each) =="
    )
    for clients, tp in ((2, 4), (4, 2)):
        res = run_study(
            cases=100,
            requests_per_case=1000,
            clients=clients,
            tp=tp,
            workers=workers,
            progress=False,
        )
        h = res.summary.set_index("policy").loc["hybrid"]
        print(
            f"{clients} clients tp={tp}: wall {res.wall_s:.1f} s; hybrid wins {int(h['wins'])}/100, "
            f"mean U gain {h['utilization_gain_pp_mean']:+.2f} pp, mean makespan reduction {h['makespan_reduction_mean']:.2%}; "
            f"{len(res.failures)} failed"
        )


def bench_pred() -> None:
    from hybridsched.workloads.length_model import training_table
    from hybridsched.workloads.predictors import evaluate_predictor
    from hybridsched.workloads.requests import load_gsm8k

    print("== length predictors on the GSM8K test split (1,319 requests, truth: 175B outputs) ==")
    print(
        f"{'predictor':>22} {'MAE tok':>8} {'MAPE':>7} {'Spearman':>8} {'bias tok':>8} "
        f"{'coverage':>8} {'width tok':>9} {'time s':>7}"
    )
    for spec in ("oracle", "trained", "bucket", "bucket:32,64,128,256", "noisy:0.5", "noisy:0.25"):
        t0 = time.perf_counter()
        e = evaluate_predictor(spec, seed=0)
        print(
            f"{e['predictor']:>22} {e['mae_tokens']:>8.1f} {e['mape']:>7.1%} {e['spearman']:>8.3f} "
            f"{e['bias_tokens']:>+8.1f} {e['coverage']:>8.1%} {e['mean_width_tokens']:>9.1f} "
            f"{time.perf_counter() - t0:>7.2f}"
        )
    o = load_gsm8k()["output_tokens"].to_numpy(float)
    x, y = training_table()
    a = np.c_[np.ones(len(x)), x["prompt_tokens"]]
    coef = np.linalg.lstsq(a, y, rcond=None)[0]
    only = coef[0] + coef[1] * load_gsm8k()["prompt_tokens"].to_numpy(float)
    print(
        f"best constant (median) MAE {np.mean(np.abs(o - np.median(o))):.1f} tokens; prompt tokens "
        f"only (least squares on train) MAE {np.mean(np.abs(only - o)):.1f} tokens  "
        "(target: trained beats both)"
    )


def bench_fit() -> None:
    from dataclasses import replace

    from hybridsched.latency import calibration as cal
    from hybridsched.latency import holdout
    from hybridsched.latency.measurements import load_splitwise
    from hybridsched.latency.profiles import load_hardware_profile, load_model_profile
    from hybridsched.paths import data_dir

    csv = data_dir() / "latency" / "splitwise" / "perf_model_measured.csv"
    model = load_model_profile("llama-2-70b")
    print("== calibration: Llama-2-70B measured iteration times (splitwise), tp 2 and 8 ==")
    for hw, label in (("a100-80gb-sxm", "a100-80gb"), ("h100-80gb-sxm", "h100-80gb")):
        m = load_splitwise(csv, "llama2-70b", label)
        base = replace(load_hardware_profile(hw), memory_bytes=80 * 2**30)
        t0 = time.perf_counter()
        fit = cal.fit_profile(m, model, base)
        wall = time.perf_counter() - t0
        e = fit.errors.set_index(["kind", "tp"])
        parts = [
            f"{k} median {e.loc[(k, 'all'), 'median']:.1%} p90 {e.loc[(k, 'all'), 'p90']:.1%}"
            for k in ("prefill", "decode")
        ]
        print(
            f"{hw}: fit {wall:.1f} s, {len(fit.outliers)} outliers; "
            + "; ".join(parts)
            + "  (target: median <= 5%, p90 <= 10%)"
        )
        _print_loto(holdout, m, model, base)
    print(
        "  note: with two tp values, a fit on one tp cannot identify the tp-dependent terms\n"
        "  (per-GPU overhead, all-reduce bandwidths): 'refit' shows how far one tp predicts the\n"
        "  other with those terms at the guessed profile's values; 'tp terms from all data' holds\n"
        "  them at the fit on both tp values (they have seen the held-out tp) and refits only the\n"
        "  per-GPU constants: a test of the model's form across tp, not a clean hold-out."
    )


def _print_loto(holdout, m, model, base) -> None:
    """Leave-one-tp-out errors, both ways (calibration.leave_one_tp_out)."""
    labels = {"refit": "refit", "all-data": "tp terms from all data"}
    for mode, label in labels.items():
        loto = holdout.leave_one_tp_out(m, model, base, tp_terms=mode)
        for (tp, kind), r in loto.set_index(["held_out_tp", "kind"]).iterrows():
            if kind != "all":
                print(
                    f"  held-out tp={tp} {kind:7s} [{label}]: median {r['median']:.1%} "
                    f"p90 {r['p90']:.1%} max {r['max']:.1%}"
                )


def bench_workloads(repeat: int = 3) -> None:
    import tempfile
    from pathlib import Path

    from hybridsched.workloads.catalogue import WORKLOADS, export_workload, load_workload

    print("== workloads: load (best of 3) and export as a Vidur trace ==")
    with tempfile.TemporaryDirectory() as tmp:
        for name in WORKLOADS:
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                df = load_workload(name)
                times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            export_workload(df, Path(tmp) / f"{name}.csv")
            export_s = time.perf_counter() - t0
            print(
                f"{name}: {len(df)} requests, load {min(times) * 1e3:.0f} ms, "
                f"export {export_s * 1e3:.0f} ms"
            )


def _tiny_instance(rng, fits):
    """2-4 requests (s 10..300, o 1..4) on 1-2 identical linear clients, B 1..3, KV natural or
    binding (up to 200 tokens above the largest request)."""
    import pandas as pd

    from hybridsched.instance import Client, Instance

    n, J, B = int(rng.integers(2, 5)), int(rng.integers(1, 3)), int(rng.integers(1, 4))
    s, o = rng.integers(10, 301, n), rng.integers(1, 5, n)
    M = 10**6 if rng.random() < 0.7 else int((s + o).max() + rng.integers(0, 201))
    req = pd.DataFrame({"prompt_tokens": s, "output_tokens": o})
    return Instance(req, tuple(Client(B, M, fits[B]) for _ in range(J)))


def bench_bounds(num_tiny: int = 200, budget_s: float = 120.0, seed: int = 0) -> None:
    from hybridsched.bounds.lower_bound import arrival_volume, lower_bound, tau_sweep
    from hybridsched.instance import Cluster
    from hybridsched.latency.linear import fit_linear
    from hybridsched.studies.bounds import full_lower_bound
    from hybridsched.studies.exact import solve_exact

    n = 1_000_000
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.01, 1.0, (n, 2))
    r = np.sort(rng.uniform(0, 3600, n))
    sweep, vol = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        tau_sweep(w[:, 0], r, 2.0)
        t1 = time.perf_counter()
        arrival_volume(w, r)
        sweep.append(t1 - t0)
        vol.append(time.perf_counter() - t1)
    print(
        f"== bounds: on {n:,} requests, best of 3: tau sweep {min(sweep) * 1e3:.0f} ms, "
        f"arrival_volume (2 heterogeneous clients) {min(vol) * 1e3:.0f} ms  "
        "(target: well under 1 s) =="
    )
    roof = Cluster(tp=4).make_clients()[0].latency
    fits = {B: fit_linear(roof, B).model for B in (1, 2, 3)}
    rows, start = [], time.perf_counter()
    while len(rows) < num_tiny and time.perf_counter() - start < budget_s:
        inst = _tiny_instance(rng, fits)
        opt = solve_exact(inst, time_limit_s=30).mip
        if opt.status.name != "OPTIMAL":
            continue
        lb, full = lower_bound(inst), full_lower_bound(inst)
        rows.append((lb.lower_bound_s, full.lower_bound_s, lb.tight_lower_bound_s, opt.makespan_s))
    a = np.array(rows)
    for k, name in enumerate(("T_LB", "T_LB with MMBPP", "tight T_LB")):
        ratio = a[:, k] / a[:, 3]
        print(
            f"{name:16s} / T*: mean {ratio.mean():.4f}, min {ratio.min():.4f}, "
            f"max {ratio.max():.6f} over {len(a)} tiny instances (seed {seed}; target: mean >= 0.95)"
        )
    print(f"({time.perf_counter() - start:.0f} s)")


def bench_sweep(
    cells: int = 1000, num_requests: int = 400, workers: int = 2, kinds=("dask", "processes")
) -> None:
    import tempfile

    from hybridsched.jobs.executor import Executor
    from hybridsched.studies.grid import expand_grid, run_cells, workload_tables

    grid = {"num_requests": num_requests, "policy": "baseline", "seed": list(range(cells))}
    todo = expand_grid(grid).cells
    tables = workload_tables(todo)
    print(
        f"== sweep runner: {cells:,} cells (baseline, {num_requests} requests each), {workers} workers =="
    )
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            from hybridsched.jobs.store import ResultStore

            t0 = time.perf_counter()
            with Executor(kind, workers) as eng:
                started = time.perf_counter() - t0
                t1 = time.perf_counter()
                rows = run_cells(todo, eng, ResultStore(tmp), tables=tables)
                wall = time.perf_counter() - t1
            total = time.perf_counter() - t0
        busy = sum(r["wall_s"] for r in rows)
        failed = sum(r["status"] != "ok" for r in rows)
        print(
            f"{kind:9s}: start {started:5.1f} s, run {wall:7.1f} s ({len(rows) / wall:5.2f} cells/s), "
            f"total {total:7.1f} s; mean cell {busy / len(rows):.3f} s; overhead per cell "
            f"{(wall * workers - busy) / len(rows) * 1e3:6.1f} ms; {failed} failed"
        )


def bench_fuzz(minutes: float = 1.0) -> None:
    from fuzz import fuzz  # benchmarks/fuzz.py; `make fuzz` runs it longer

    print(f"== fuzz: every policy x router x admission on random instances, {minutes:g} min ==")
    line, failures = fuzz(minutes)
    print(line)
    for seed, policy, router, adm, err in failures[:5]:
        print(f"  FAILED seed={seed} policy={policy} router={router} admission={adm}: {err}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--only",
        default="sim,mmbpp,mmbpp-scale,bound,mip,study,fit,engine,scale,phases,workloads,bounds,"
        "sweep,pred,kernels,vllm,real,fuzz",
        help="comma-separated sections",
    )
    p.add_argument("--sweep-cells", type=int, default=1000)
    p.add_argument("--sweep-requests", type=int, default=400)
    p.add_argument("--sweep-engines", default="dask,processes")
    p.add_argument("--scale-case", help=argparse.SUPPRESS)  # n,m,limit,unrelated: one case
    p.add_argument("--bound-case", help=argparse.SUPPRESS)  # n,m: one bound case
    args = p.parse_args()
    if args.bound_case:
        n, m = args.bound_case.split(",")
        print(json.dumps(_bound_case(int(n), int(m))))
        return
    if args.scale_case:
        n, m, limit, unrelated = args.scale_case.split(",")
        print(json.dumps(_scale_case(int(n), int(m), float(limit), bool(int(unrelated)))))
        return
    from engine import bench_engine, bench_phases, bench_scale  # benchmarks/engine.py
    from fidelity import bench_real, bench_vllm  # benchmarks/fidelity.py
    from kernel_accuracy import bench_kernels  # benchmarks/kernel_accuracy.py

    sections = {
        "sim": bench_sim,
        "mmbpp": bench_mmbpp,
        "mmbpp-scale": bench_mmbpp_scale,
        "bound": bench_bound,
        "mip": bench_mip,
        "study": bench_study,
        "fit": bench_fit,
        "engine": bench_engine,
        "scale": bench_scale,
        "phases": bench_phases,
        "workloads": bench_workloads,
        "bounds": bench_bounds,
        "sweep": lambda: bench_sweep(
            args.sweep_cells, args.sweep_requests, kinds=args.sweep_engines.split(",")
        ),
        "pred": bench_pred,
        "kernels": bench_kernels,
        "vllm": bench_vllm,
        "real": bench_real,
        "fuzz": bench_fuzz,
    }
    for name in args.only.split(","):
        sections[name.strip()]()
        print()


if __name__ == "__main__":
    main()
