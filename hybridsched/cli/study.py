"""``single-case`` and ``study``: every policy on one workload, and the 100-case study."""

from __future__ import annotations

import argparse
import sys

from hybridsched.cli.argcheck import nonnegative_int_arg, positive_int_arg
from hybridsched.cli.options import (
    add_cluster_args,
    add_engine_args,
    add_serving_args,
    add_solve_args,
    report_dropped,
    run_config,
)
from hybridsched.cli.outputs import Outputs


def cmd_single_case(args) -> None:
    from hybridsched.policies.registry import POLICIES
    from hybridsched.studies.single_case import run_single_case

    res = run_single_case(run_config(args), policies=args.policies or list(POLICIES))
    report_dropped(res.params["workload"] or {})
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
        run_config(args),
        cases=args.cases,
        requests_per_case=args.requests_per_case,
        policies=args.policies or ["baseline", "hybrid"],
        workers=args.workers,
        first_seed=args.first_seed,
        engine=args.engine,
        scheduler=args.scheduler,
        progress=not args.quiet,
    )
    report_dropped(res.params["workload"] or {})
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
    add_cluster_args(p)
    add_solve_args(p)
    p.add_argument("--policies", nargs="*", choices=list(POLICIES))
    add_serving_args(p)
    p.add_argument("--out", required=True)
    return p


def add_study(sub) -> argparse.ArgumentParser:
    from hybridsched.policies.registry import POLICIES

    p = sub.add_parser("study", help="the 100-case study")
    p.add_argument("--cases", type=positive_int_arg, default=100)
    p.add_argument("--requests-per-case", type=positive_int_arg, default=1000)
    p.add_argument("--workers", type=positive_int_arg, default=2)
    p.add_argument(
        "--first-seed",
        type=nonnegative_int_arg,
        default=1,
        help="case k uses seed first_seed + k - 1",
    )
    add_cluster_args(p, sample=False)
    p.add_argument("--policies", nargs="*", choices=list(POLICIES))
    add_solve_args(p)
    add_serving_args(p)
    add_engine_args(p, default="processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True)
    return p
