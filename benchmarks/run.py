"""Benchmarks: figures, not pass/fail tests. Run with `make bench` (or `python benchmarks/run.py --only sim`).

Sections:
  sim    simulating the default single case (1,319 requests, 2 x tp=4, B=32): baseline and hybrid
         wall time, iterations per second, and the online rule's decision time per boundary.
  mmbpp  the offline MMBPP on the 1,319-request workload for 2, 4, 8, 16 clients: model build
         time, solve time to 0.1% gap (or the gap at the time limit), LPT vs MIP vs bound.
  mip    the exact iteration MIP: the largest instance solved to optimality within 60 s.
  study  the 100-case study wall time on 2 workers, for both configurations.
  engine the serving engine against the pre-engine simulator, side by side (benchmarks/engine.py).
  scale  the whole CLI run at 100,000 requests on 64 clients and 1,000,000 on 256 (engine.py).
  fit    the latency calibration on the shipped Llama-2-70B measurements (A100, H100): fit
         time, median/p90 error per kind (targets: median <= 5%, p90 <= 10%), and the
         leave-one-tp-out errors (fit without one tp, predict it).
  pred   the length predictors' errors on the GSM8K test split (MAE, MAPE, Spearman, interval
         coverage), against the best constant and a prompt-length-only regression.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def bench_sim(repeat: int = 5) -> None:
    from hybridsched.experiments import POLICIES, make_rule, offline_assignment
    from hybridsched.instance import make_instance
    from hybridsched.simulator import simulate

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
    from hybridsched.bounds import planning_sizes
    from hybridsched.instance import Cluster, make_instance
    from hybridsched.offline import (
        build_assignment_model,
        lpt_assignment,
        solve_assignment,
        trivial_bound,
    )

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


def bench_mip(limit_s: float = 60.0) -> None:
    from hybridsched.latency import (
        RooflineLatency,
        fit_linear,
        load_hardware_profile,
        load_model_profile,
    )
    from hybridsched.offline import LinearCoefficients, solve_iteration_mip

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
    from hybridsched.experiments import run_study

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
    from hybridsched.data import load_gsm8k
    from hybridsched.length_model import training_table
    from hybridsched.predictors import evaluate_predictor

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

    from hybridsched import calibration as cal
    from hybridsched.paths import data_dir
    from hybridsched.profiles import load_hardware_profile, load_model_profile

    csv = data_dir() / "latency" / "splitwise" / "perf_model_measured.csv"
    model = load_model_profile("llama-2-70b")
    print("== calibration: Llama-2-70B measured iteration times (splitwise), tp 2 and 8 ==")
    for hw, label in (("a100-80gb-sxm", "a100-80gb"), ("h100-80gb-sxm", "h100-80gb")):
        m = cal.load_splitwise(csv, "llama2-70b", label)
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
        loto = cal.leave_one_tp_out(m, model, base).set_index(["held_out_tp", "kind"])
        for (tp, kind), r in loto.iterrows():
            if kind != "all":
                print(
                    f"  held-out tp={tp} {kind:7s}: median {r['median']:.1%} p90 {r['p90']:.1%} max {r['max']:.1%}"
                )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--only",
        default="sim,mmbpp,mip,study,fit,engine,scale,pred",
        help="comma-separated sections",
    )
    args = p.parse_args()
    from engine import bench_engine, bench_scale  # benchmarks/engine.py

    sections = {
        "sim": bench_sim,
        "mmbpp": bench_mmbpp,
        "mip": bench_mip,
        "study": bench_study,
        "fit": bench_fit,
        "engine": bench_engine,
        "scale": bench_scale,
        "pred": bench_pred,
    }
    for name in args.only.split(","):
        sections[name.strip()]()
        print()


if __name__ == "__main__":
    main()
