"""``assign``: the offline MMBPP assignment (assignment.csv, solve.json)."""

from __future__ import annotations

import argparse

import pandas as pd

from hybridsched.cli.argcheck import positive_int_arg
from hybridsched.cli.options import (
    add_cluster_args,
    add_solve_args,
    instance_of,
    recorded_prediction,
)
from hybridsched.cli.outputs import Outputs


def cmd_assign(args) -> None:
    from hybridsched.bounds.floors import planning_sizes
    from hybridsched.offline.mmbpp import solve_assignment
    from hybridsched.provenance import versions

    inst, cluster = instance_of(args)
    res = solve_assignment(
        planning_sizes(inst),
        time_limit_s=args.time_limit,
        mip_gap=args.mip_gap,
        threads=args.threads,
    )
    out = Outputs(args.out)
    out.add(
        "assignment.csv",
        pd.DataFrame({"request_id": inst.requests["request_id"], "client": res.assignment}),
    )
    out.add(
        "solve.json",
        {
            **res.to_dict(),
            **cluster.to_dict(),
            "seed": args.seed,
            **recorded_prediction(args),
            "versions": versions(),
        },
    )
    out.commit()
    print(
        f"{res.status.value}: makespan {res.objective_s:.3f} s, bound {res.bound_s:.3f} s, gap {res.gap:.2e}"
    )
    if res.fallback_reason:
        print(f"fallback: {res.fallback_reason}")


def add_assign(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("assign", help="solve the offline MMBPP assignment")
    add_cluster_args(p)
    add_solve_args(p)
    p.add_argument(
        "--threads",
        type=positive_int_arg,
        default=None,
        help="HiGHS threads (default: HiGHS's own)",
    )
    p.add_argument("--out", required=True)
    return p
