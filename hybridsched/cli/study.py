"""``single-case`` and ``study``: every policy on one workload, and the 100-case study."""

from __future__ import annotations

import argparse
import sys

from hybridsched.cli.argcheck import positive_int_arg
from hybridsched.cli.options import (
    _cluster_args,
    _engine_args,
    _prediction,
    _predictor_args,
    _report_dropped,
    _serving,
    _serving_args,
    _solve_args,
    _workload_args,
    _workload_options,
)
from hybridsched.cli.outputs import Outputs


def cmd_single_case(args) -> None:
    from hybridsched.policies.registry import POLICIES
    from hybridsched.studies.single_case import run_single_case

    res = run_single_case(
        clients=args.clients,
        tp=args.tp,
        max_batch=args.max_batch,
        requests=args.workload,
        num_requests=args.num_requests,
        policies=args.policies or list(POLICIES),
        time_limit_s=args.time_limit,
        mip_gap=args.mip_gap,
        seed=args.seed,
        model=args.model,
        hardware=args.hardware,
        latency=args.latency,
        **_prediction(args),
        workload_options=_workload_options(args),
        serving=_serving(args),
    )
    _report_dropped(res.params["workload"] or {})
    out = Outputs(args.out)
    out.add("single_case.csv", res.table)
    out.add("single_case.json", res.to_json())
    out.commit()
    cols = [
        "policy",
        "makespan_s",
        "utilization",
        "mean_batch",
        "num_prefill_iterations",
        "gap_to_lb",
        "gap_closed",
    ]
    print(res.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(
        f"T_LB = {res.bound.lower_bound_s:.3f} s ({res.bound.binding}); "
        f"tight T_LB = {res.bound.tight_lower_bound_s:.3f} s"
    )


def cmd_study(args) -> None:
    from hybridsched.studies.study import run_study

    res = run_study(
        cases=args.cases,
        requests_per_case=args.requests_per_case,
        clients=args.clients,
        tp=args.tp,
        max_batch=args.max_batch,
        policies=args.policies or ["baseline", "hybrid"],
        workers=args.workers,
        requests=args.workload,
        first_seed=args.first_seed,
        time_limit_s=args.time_limit,
        mip_gap=args.mip_gap,
        workload_options=_workload_options(args),
        **_prediction(args),
        serving=_serving(args),
        model=args.model,
        hardware=args.hardware,
        engine=args.engine,
        scheduler=args.scheduler,
    )
    _report_dropped(res.params["workload"] or {})
    out = Outputs(args.out)
    out.add("study_cases.csv", res.cases)
    out.add("study_summary.csv", res.summary)
    out.add("study.json", res.to_json())
    out.commit()
    print(res.summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"wall time {res.wall_s:.1f} s")
    if len(res.failures):
        print(f"{len(res.failures)} case(s) failed:", file=sys.stderr)
        print(res.failures.to_string(index=False), file=sys.stderr)
        raise SystemExit(1)


def add_single_case(sub) -> argparse.ArgumentParser:
    from hybridsched.policies.registry import POLICIES

    p = sub.add_parser("single-case", help="every policy and ablation on one workload, with T_LB")
    _cluster_args(p)
    _solve_args(p)
    p.add_argument("--policies", nargs="*", choices=list(POLICIES))
    _serving_args(p)
    p.add_argument("--out", required=True)
    return p


def add_study(sub) -> argparse.ArgumentParser:
    from hybridsched.policies.registry import POLICIES

    p = sub.add_parser("study", help="the 100-case study")
    p.add_argument("--cases", type=positive_int_arg, default=100)
    p.add_argument("--requests-per-case", type=positive_int_arg, default=1000)
    p.add_argument("--workers", type=positive_int_arg, default=2)
    p.add_argument("--first-seed", type=int, default=1, help="case k uses seed first_seed + k - 1")
    p.add_argument("--clients", type=positive_int_arg, default=2)
    p.add_argument("--tp", type=positive_int_arg, default=4)
    p.add_argument("--max-batch", type=positive_int_arg, default=32)
    p.add_argument("--model", default="llama-65b", help="model profile name or YAML path")
    p.add_argument("--hardware", default="a100-80gb-sxm", help="hardware profile name or YAML path")
    _workload_args(p)
    p.add_argument("--policies", nargs="*", choices=list(POLICIES))
    _predictor_args(p)
    _solve_args(p, mip_gap=1e-3)
    _serving_args(p)
    _engine_args(p, default="processes")
    p.add_argument("--out", required=True)
    return p
