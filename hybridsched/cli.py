"""Command line: batch runs and scripts (``python -m hybridsched COMMAND ...``).

Commands and the files they write (columns and keys are a contract):

- ``simulate --policy P --out DIR``: ``DIR/trace.csv`` (simulator.TRACE_COLUMNS) and
  ``DIR/metrics.json`` (metrics, ``lower_bound_s`` with its parts, ``gap_to_lb``,
  cluster, seed, versions).
- ``assign --out DIR``: ``DIR/assignment.csv`` (``request_id``, ``client``) and
  ``DIR/solve.json`` (``status``, ``objective_s``, ``bound_s``, ``gap``, ``runtime_s``,
  ``fallback_reason``).
- ``single-case --out DIR``: ``DIR/single_case.csv`` and ``DIR/single_case.json``.
- ``study --out DIR``: ``DIR/study_cases.csv``, ``DIR/study_summary.csv``, ``DIR/study.json``.
- ``render [--smoke] [--out reports] [--notebooks NAME ...] [-p NAME=VALUE ...]``: the
  notebooks as HTML reports.

Bad input exits with code 2 and one line naming the field and the value; nothing is
written unless the whole run succeeded (files are written to temporary names and
renamed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from hybridsched.argcheck import (
    OneLineParser,
    check_input_file,
    check_out_dir,
    check_profile,
    finite_float_arg,
    nonnegative_float_arg,
    parameter_arg,
    plain,
    positive_int_arg,
)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "value"):
        return o.value
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class Outputs:
    """Collects output files and writes them all at the end, each by atomic rename."""

    def __init__(self, out: str | Path):
        self.dir = Path(out)
        self.files: dict[str, object] = {}

    def add(self, name: str, content) -> None:
        self.files[name] = content

    def commit(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = []
        for name, content in self.files.items():
            path = self.dir / (name + ".partial")
            if isinstance(content, pd.DataFrame):
                if name.startswith("trace"):
                    from hybridsched.trace import write_trace

                    write_trace(content, path)
                else:
                    content.to_csv(path, index=False)
            else:
                path.write_text(json.dumps(content, indent=2, default=_json_default) + "\n")
            tmp.append((path, self.dir / name))
        for src, dst in tmp:
            os.replace(src, dst)
        for _, dst in tmp:
            print(dst)


def _cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--clients",
        type=positive_int_arg,
        default=2,
        help="number of clients (replicas), default 2",
    )
    p.add_argument(
        "--tp",
        type=positive_int_arg,
        default=4,
        help="tensor-parallel degree per client, default 4",
    )
    p.add_argument(
        "--max-batch",
        type=positive_int_arg,
        default=32,
        help="max batch size B per client, default 32",
    )
    p.add_argument("--model", default="llama-65b", help="model profile name or YAML path")
    p.add_argument("--hardware", default="a100-80gb-sxm", help="hardware profile name or YAML path")
    p.add_argument("--latency", default="roofline", choices=["roofline", "linear"])
    p.add_argument(
        "--requests", default=None, help="request CSV (default: shipped GSM8K test split)"
    )
    p.add_argument(
        "--num-requests",
        type=positive_int_arg,
        default=None,
        help="sample this many requests (seeded)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for sampling and random sort keys")
    p.add_argument(
        "--prediction-sigma",
        type=nonnegative_float_arg,
        default=0.0,
        help="lognormal error of the predicted output lengths planners see (default 0: exact)",
    )
    p.add_argument("--prediction-seed", type=int, default=0, help="seed of the prediction error")


def _solve_args(p: argparse.ArgumentParser, mip_gap: float = 1e-4) -> None:
    p.add_argument(
        "--time-limit", type=nonnegative_float_arg, default=10.0, help="MMBPP time limit in seconds"
    )
    p.add_argument(
        "--mip-gap",
        type=nonnegative_float_arg,
        default=mip_gap,
        help=f"MMBPP relative gap (default {mip_gap:g})",
    )


def _instance(args):
    from hybridsched.experiments import requests_for
    from hybridsched.instance import Cluster, make_instance

    cluster = Cluster(
        model=args.model,
        hardware=args.hardware,
        num_clients=args.clients,
        tp=args.tp,
        max_batch=args.max_batch,
        latency=args.latency,
    )
    reqs = requests_for(
        args.requests, args.num_requests, args.seed, args.prediction_sigma, args.prediction_seed
    )
    return make_instance(reqs, cluster), cluster


def cmd_simulate(args) -> None:
    from hybridsched.experiments import (
        POLICIES,
        RuleKnobs,
        SolveSettings,
        full_lower_bound,
        run_policy,
        versions,
    )

    inst, cluster = _instance(args)
    solve = SolveSettings(args.time_limit, args.mip_gap)
    knobs = RuleKnobs(
        lambda_multiplier=args.lambda_multiplier,
        horizon=args.horizon,
        seed=args.seed,
        token_budget=args.token_budget,
    )
    run = run_policy(inst, args.policy, knobs, solve, check=args.check)
    lb = full_lower_bound(inst, solve=solve, mixed_iterations=POLICIES[args.policy].mixed)
    m = dict(run.metrics)
    m.update(
        policy=args.policy,
        lower_bound_s=lb.lower_bound_s,
        lower_bound_parts=lb.parts(),
        lower_bound_binding=lb.binding,
        lower_bound_assumes=lb.to_dict()["assumes"],
        gap_to_lb=(m["makespan_s"] - lb.lower_bound_s) / lb.lower_bound_s,
        clients=cluster.num_clients,
        tp=cluster.tp,
        max_batch=cluster.max_batch,
        model=cluster.model,
        hardware=cluster.hardware,
        latency=cluster.latency,
        requests=args.requests or "gsm8k-test",
        seed=args.seed,
        prediction_sigma=args.prediction_sigma,
        prediction_seed=args.prediction_seed,
        knobs={
            "lambda_multiplier": args.lambda_multiplier,
            "horizon": args.horizon,
            "token_budget": args.token_budget,
        },
        offline=run.solve,
        simulate_s=run.simulate_s,
        versions=versions(),
    )
    out = Outputs(args.out)
    out.add("trace.csv", run.trace)
    out.add("metrics.json", m)
    out.commit()
    print(
        f"{args.policy}: makespan {m['makespan_s']:.2f} s, U {m['utilization']:.1%}, T_LB {lb.lower_bound_s:.2f} s"
    )


def cmd_assign(args) -> None:
    from hybridsched.bounds import planning_sizes
    from hybridsched.experiments import versions
    from hybridsched.offline import solve_assignment

    inst, cluster = _instance(args)
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
        {**res.to_dict(), **cluster.to_dict(), "seed": args.seed, "versions": versions()},
    )
    out.commit()
    print(
        f"{res.status.value}: makespan {res.objective_s:.3f} s, bound {res.bound_s:.3f} s, gap {res.gap:.2e}"
    )
    if res.fallback_reason:
        print(f"fallback: {res.fallback_reason}")


def cmd_single_case(args) -> None:
    from hybridsched.experiments import POLICIES, run_single_case

    res = run_single_case(
        clients=args.clients,
        tp=args.tp,
        max_batch=args.max_batch,
        requests=args.requests,
        num_requests=args.num_requests,
        policies=args.policies or list(POLICIES),
        time_limit_s=args.time_limit,
        mip_gap=args.mip_gap,
        seed=args.seed,
        model=args.model,
        hardware=args.hardware,
        latency=args.latency,
        prediction_sigma=args.prediction_sigma,
        prediction_seed=args.prediction_seed,
    )
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
    print(f"T_LB = {res.bound.lower_bound_s:.3f} s ({res.bound.binding})")


def cmd_study(args) -> None:
    from hybridsched.experiments import run_study

    res = run_study(
        cases=args.cases,
        requests_per_case=args.requests_per_case,
        clients=args.clients,
        tp=args.tp,
        max_batch=args.max_batch,
        policies=args.policies or ["baseline", "hybrid"],
        workers=args.workers,
        requests=args.requests,
        first_seed=args.first_seed,
        time_limit_s=args.time_limit,
        mip_gap=args.mip_gap,
    )
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


def cmd_render(args) -> None:
    from hybridsched.report import RenderError, render

    try:
        render(
            args.out,
            smoke=args.smoke,
            notebooks=args.notebooks or None,
            parameters=dict(args.parameter or []),
        )
    except RenderError as e:
        print(f"render failed: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def build_parser() -> argparse.ArgumentParser:
    from hybridsched.experiments import POLICIES

    parser = OneLineParser(prog="python -m hybridsched", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="run one policy through the simulator")
    p.add_argument("--policy", default="baseline", choices=list(POLICIES))
    _cluster_args(p)
    _solve_args(p)
    p.add_argument(
        "--lambda-multiplier",
        type=finite_float_arg,
        default=1.0,
        help="Lagrangian rule: multiplier on the default lambda",
    )
    p.add_argument(
        "--horizon", type=positive_int_arg, default=64, help="Lagrangian rule: horizon H"
    )
    p.add_argument(
        "--token-budget",
        type=positive_int_arg,
        default=None,
        help="chunked prefill: tokens per iteration (default: the 2048-token prefill budget)",
    )
    p.add_argument("--check", action="store_true", help="assert the trace invariants")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("assign", help="solve the offline MMBPP assignment")
    _cluster_args(p)
    _solve_args(p)
    p.add_argument(
        "--threads",
        type=positive_int_arg,
        default=None,
        help="HiGHS threads (default: HiGHS's own)",
    )
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_assign)

    p = sub.add_parser("single-case", help="every policy and ablation on one workload, with T_LB")
    _cluster_args(p)
    _solve_args(p)
    p.add_argument("--policies", nargs="*", choices=list(POLICIES))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_single_case)

    p = sub.add_parser("study", help="the 100-case study")
    p.add_argument("--cases", type=positive_int_arg, default=100)
    p.add_argument("--requests-per-case", type=positive_int_arg, default=1000)
    p.add_argument("--workers", type=positive_int_arg, default=2)
    p.add_argument("--first-seed", type=int, default=1, help="case k uses seed first_seed + k - 1")
    p.add_argument("--clients", type=positive_int_arg, default=2)
    p.add_argument("--tp", type=positive_int_arg, default=4)
    p.add_argument("--max-batch", type=positive_int_arg, default=32)
    p.add_argument(
        "--requests", default=None, help="request CSV to draw cases from (default: GSM8K test)"
    )
    p.add_argument("--policies", nargs="*", choices=list(POLICIES))
    _solve_args(p, mip_gap=1e-3)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("render", help="execute the notebooks and render HTML reports")
    p.add_argument("--smoke", action="store_true", help="small runs (for CI)")
    p.add_argument("--out", default="reports")
    p.add_argument("--notebooks", nargs="*", help="notebook names (default: all)")
    p.add_argument(
        "-p",
        "--parameter",
        action="append",
        type=parameter_arg,
        metavar="NAME=VALUE",
        help="a notebook parameter (a Python literal, else a string); repeatable",
    )
    p.set_defaults(func=cmd_render)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """The paths of a parsed command line, before any work (ValueError naming the flag)."""
    check_out_dir(getattr(args, "out", None), "--out")
    check_input_file(getattr(args, "requests", None), "--requests")
    for flag in ("model", "hardware"):
        if getattr(args, flag, None) is not None:
            check_profile(getattr(args, flag), f"--{flag}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a bad argument (one line on stderr, code 2) or --help (0)
        return e.code if isinstance(e.code, int) else 2
    try:
        check_args(args)
        args.func(args)
    except ValueError as e:
        print(f"error: {plain(str(e))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
