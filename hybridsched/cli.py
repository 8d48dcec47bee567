"""Command line: batch runs and scripts (``python -m hybridsched COMMAND ...``).

Commands and the files they write (columns and keys are a contract):

- ``simulate --policy P [--router R] [--admission reservation|on-demand] [--arrivals SPEC]
  [--prediction-sigma S] [--slo-ttft S] [--slo-tpot S] --out DIR``: ``DIR/trace.csv``
  (engine/schema.py ``TRACE_COLUMNS``), ``DIR/requests.csv`` (one row per request:
  arrival, client, dispatch, first scheduled, first token, finish, TTFT, TPOT, e2e,
  queueing delay, preemptions, recomputed tokens), ``DIR/evictions.csv``
  (``EVICTION_COLUMNS``) and ``DIR/metrics.json`` (metrics with ``ttft_p50_s``,
  ``ttft_p99_s``, ``tpot_p50_s``, ``tpot_p99_s``, ``e2e_p99_s``, ``queue_p99_s``,
  ``throughput_rps``, ``slo_attainment``, ``goodput_rps``, ``num_preemptions``,
  ``recomputed_tokens``, ``router``, ``admission``, ``arrivals``; ``lower_bound_s``
  with its parts, ``gap_to_lb``, cluster, seed, versions).
- ``assign --out DIR``: ``DIR/assignment.csv`` (``request_id``, ``client``) and
  ``DIR/solve.json`` (``status``, ``objective_s``, ``bound_s``, ``gap``, ``runtime_s``,
  ``fallback_reason``, ``reason``, ``start``, ``warm_start_used``, ``solver_used``,
  ``local_search_rounds``, ``deadline_hit``, ``lpt_objective_s``, cluster, seed, versions).
- ``single-case --out DIR``: ``DIR/single_case.csv`` and ``DIR/single_case.json``.
  ``single-case`` and ``study`` take the serving options of ``simulate``.
- ``study --out DIR``: ``DIR/study_cases.csv``, ``DIR/study_summary.csv``, ``DIR/study.json``.
- ``export --workload W --format vidur --out FILE``: the workload as a trace another
  simulator replays (vidur, splitwise or hybridsched CSV).
- ``sweep --grid GRID.yaml --out DIR [--scheduler ADDRESS] [--workers N]``: every cell of
  the grid (``grid`` module) as one row of ``DIR/cells.parquet/part-*.parquet``
  (``cells.run_cell``), and ``DIR/sweep.json`` (grid, counts, engine, versions); a rerun
  skips the cells already done.
- ``capacity --workload W --slo-ttft S --slo-tpot S --rate R --out DIR``: per candidate
  cluster the highest sustained rate (``capacity`` module): ``DIR/candidates.csv``,
  ``DIR/evaluations.csv`` (every simulated rate) and ``DIR/capacity.json`` (the cheapest
  cluster, GPUs needed per policy, inputs, versions); exit 1 when none sustains ``R``.
- ``render [--smoke] [--out reports] [--notebooks NAME ...] [-p NAME=VALUE ...]``: the
  notebooks as HTML reports.
- ``calibrate --measurements CSV --model M --hardware H --out PROFILE.yaml``: a hardware
  profile fitted to measured iteration times, with its fit errors and outliers.

``simulate``, ``assign``, ``single-case``, ``study`` and ``export`` name their requests with
``--workload`` (a shipped name or a file; ``--requests`` is the older name) and shape them with
``--format``, ``--window START:END``, ``--rate-scale X``, ``--max-requests N``,
``--fit-context {error,drop}`` and ``--max-context`` (docs/model.md, "Workloads").

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


def _workload_args(p: argparse.ArgumentParser, format_flag: str = "--format") -> None:
    """The options that name and shape a workload (docs/model.md, "Workloads")."""
    g = p.add_argument_group("workload")
    g.add_argument(
        "--workload",
        "--requests",
        dest="workload",
        default=None,
        help="gsm8k (default), azure-code, azure-conv, mooncake-conv, or a file "
        "(--requests is the older name)",
    )
    g.add_argument(
        format_flag,
        dest="format",
        default=None,
        help="file format: hybridsched, vidur, splitwise, azure, mooncake (default: detected)",
    )
    g.add_argument("--window", default=None, metavar="START:END", help="time window in seconds")
    g.add_argument(
        "--rate-scale", default="1", help="divide arrival times by X (X times the load), default 1"
    )
    g.add_argument(
        "--max-requests", default=None, help="keep the first N requests in arrival order"
    )
    g.add_argument(
        "--fit-context",
        default="error",
        help="requests longer than the context: error (default) or drop (and count them)",
    )
    g.add_argument(
        "--max-context",
        default=None,
        help="context window in tokens (default: the model profile's, if it states one)",
    )


def _number(text, name: str, kind=float):
    try:
        v = kind(text)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    return v


def _workload_options(args) -> dict:
    """``load_workload`` keyword arguments from the workload options."""
    from hybridsched.arrivals import parse_arrivals

    max_context = args.max_context
    if max_context is not None:
        max_context = _number(max_context, "max-context", int)
    elif getattr(args, "model", None):
        from hybridsched.latency import load_model_profile

        max_context = getattr(load_model_profile(args.model), "max_context", None)
    rate_scale = _number(args.rate_scale, "rate-scale")
    if rate_scale != 1 and parse_arrivals(getattr(args, "arrivals", "table")).kind != "table":
        raise ValueError(
            f"rate-scale compresses a trace's own arrival times; with --arrivals "
            f"{args.arrivals} set the rate there instead"
        )
    return {
        "format": args.format,
        "window": args.window,
        "rate_scale": rate_scale,
        "max_requests": None
        if args.max_requests is None
        else _number(args.max_requests, "max-requests", int),
        "max_context": max_context,
        "fit_context": args.fit_context,
    }


def _report_dropped(info: dict) -> None:
    if info.get("num_dropped"):
        print(
            f"dropped {info['num_dropped']} request(s) of {info['workload']} longer than the "
            f"context of {info['max_context']} tokens (--fit-context drop)"
        )


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
    _workload_args(p)
    p.add_argument(
        "--num-requests",
        type=positive_int_arg,
        default=None,
        help="sample this many requests (seeded)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for sampling and random sort keys")
    _predictor_args(p)


def _predictor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--predictor",
        default=None,
        help="output-length predictor planners see: oracle (default), noisy:SIGMA, bucket, "
        "bucket:E1,E2,..., trained",
    )
    p.add_argument(
        "--prediction-sigma",
        type=nonnegative_float_arg,
        default=None,
        help="lognormal error of the predicted output lengths (= --predictor noisy:SIGMA)",
    )
    p.add_argument("--prediction-seed", type=int, default=0, help="seed of the prediction error")


def _prediction(args) -> dict:
    """The prediction keywords of ``requests_for`` and friends; both ways at once is an error."""
    from hybridsched.predictors import predictor_spec

    if args.predictor is not None and args.prediction_sigma is not None:
        raise ValueError("give --predictor or --prediction-sigma, not both")
    sigma = args.prediction_sigma or 0.0
    predictor_spec(args.predictor, sigma)  # a bad spec fails here, before any work
    return {
        "prediction_sigma": sigma,
        "prediction_seed": args.prediction_seed,
        "predictor": args.predictor,
    }


def _serving_args(p: argparse.ArgumentParser) -> None:
    from hybridsched.engine import ADMISSIONS, ROUTERS

    p.add_argument("--router", default=None, choices=ROUTERS, help="override the policy's router")
    p.add_argument(
        "--admission", default=None, choices=ADMISSIONS, help="override the policy's admission"
    )
    p.add_argument(
        "--arrivals",
        default="table",
        help="zero | table (the request table's arrival_s; default) | poisson:RATE | gamma:RATE,CV",
    )
    p.add_argument(
        "--arrival-seed",
        type=int,
        default=None,
        help="seed of the arrival process (default --seed)",
    )
    p.add_argument("--slo-ttft", type=float, default=None, help="SLO on TTFT, seconds")
    p.add_argument("--slo-tpot", type=float, default=None, help="SLO on TPOT, seconds")
    p.add_argument(
        "--replan-s", type=float, default=1.0, help="rolling-mmbpp: seconds between replans"
    )


def _serving(args):
    import math

    from hybridsched.arrivals import parse_arrivals
    from hybridsched.experiments import Serving

    for flag in ("slo_ttft", "slo_tpot", "replan_s"):
        v = getattr(args, flag, None)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError(f"--{flag.replace('_', '-')} must be a positive number, got {v}")
    return Serving(
        router=args.router,
        admission=args.admission,
        arrivals=str(parse_arrivals(args.arrivals)),
        arrival_seed=args.arrival_seed
        if args.arrival_seed is not None
        else getattr(args, "seed", 0),
        slo_ttft_s=args.slo_ttft,
        slo_tpot_s=args.slo_tpot,
    )


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
    from hybridsched.workloads import workload_info

    cluster = Cluster(
        model=args.model,
        hardware=args.hardware,
        num_clients=args.clients,
        tp=args.tp,
        max_batch=args.max_batch,
        latency=args.latency,
    )
    reqs = requests_for(
        args.workload,
        args.num_requests,
        args.seed,
        workload_options=_workload_options(args),
        **_prediction(args),
    )
    args.workload_info = workload_info(reqs)
    _report_dropped(args.workload_info)
    return make_instance(reqs, cluster), cluster


def _recorded_prediction(args) -> dict:
    """What an output file records of the predictions: sigma, seed and the predictor's spec."""
    from hybridsched.predictors import predictor_spec

    kw = _prediction(args)
    return {**kw, "predictor": predictor_spec(kw["predictor"], kw["prediction_sigma"]) or "oracle"}


def _flag_names(message: str) -> str:
    """A cell's message with option names as flags: ``rate_scale must`` -> ``--rate-scale must``."""
    import re

    from hybridsched.cells import DEFAULTS

    alias = {"num_clients": "clients"}  # the Cluster's field behind --clients
    names = sorted([*DEFAULTS, *alias], key=len, reverse=True)
    return re.sub(
        r"^(" + "|".join(names) + r") must",
        lambda m: f"--{alias.get(m.group(1), m.group(1)).replace('_', '-')} must",
        message,
    )


def cell_params(args) -> dict:
    """The cell (``cells.DEFAULTS`` names) that a command's options describe."""
    from hybridsched.cells import DEFAULTS

    return {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}


def cmd_simulate(args) -> None:
    from hybridsched.cells import simulate_cell
    from hybridsched.experiments import POLICIES, SolveSettings, full_lower_bound, versions

    _serving(args)  # refuse bad serving options before any work
    try:
        cell = simulate_cell(cell_params(args))
    except ValueError as e:  # name the CLI's flags, not the cell's option names
        raise ValueError(_flag_names(str(e))) from None
    inst, run, cluster = cell.instance, cell.run, cell.instance.meta["cluster"]
    _report_dropped(cell.workload or {})
    solve = SolveSettings(args.time_limit, args.mip_gap)
    lb = full_lower_bound(
        inst, solve=solve, mixed_iterations=POLICIES[args.policy].mixed, admission=run.admission
    )
    m = dict(run.metrics)
    m.update(
        policy=args.policy,
        lower_bound_s=lb.lower_bound_s,
        lower_bound_parts=lb.all_parts(),
        tight_lower_bound_s=lb.tight_lower_bound_s,
        lower_bound_binding=lb.binding,
        lower_bound_assumes=lb.to_dict()["assumes"],
        gap_to_lb=(m["makespan_s"] - lb.lower_bound_s) / lb.lower_bound_s,
        clients=cluster["num_clients"],
        tp=cluster["tp"],
        max_batch=cluster["max_batch"],
        model=cluster["model"],
        hardware=cluster["hardware"],
        latency=cluster["latency"],
        requests=args.workload or "gsm8k",
        workload=cell.workload,
        seed=args.seed,
        arrivals=cell.params["arrivals"],
        rate_scale=cell.params["rate_scale"],
        **_recorded_prediction(args),
        knobs={
            "lambda_multiplier": args.lambda_multiplier,
            "horizon": args.horizon,
            "token_budget": args.token_budget,
        },
        offline=run.solve,
        router=run.router,
        admission=run.admission,
        arrival_seed=cell.params["arrival_seed"],
        replan_s=cell.params["replan_s"],
        router_log=run.router_log,
        simulate_s=run.simulate_s,
        versions=versions(),
    )
    out = Outputs(args.out)
    out.add("trace.csv", run.trace)
    out.add("requests.csv", run.requests)
    out.add("evictions.csv", run.evictions)
    out.add("metrics.json", m)
    out.commit()
    print(
        f"{args.policy} ({run.router}, {run.admission}): makespan {m['makespan_s']:.2f} s, "
        f"U {m['utilization']:.1%}, T_LB {lb.lower_bound_s:.2f} s, TTFT p99 "
        f"{m['ttft_p99_s']:.3f} s, TPOT p99 {m['tpot_p99_s']:.4f} s, "
        f"{m['num_preemptions']} preemptions"
    )


def cmd_assign(args) -> None:
    from hybridsched.bounds import planning_sizes
    from hybridsched.experiments import versions
    from hybridsched.mmbpp import solve_assignment

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
        {
            **res.to_dict(),
            **cluster.to_dict(),
            "seed": args.seed,
            **_recorded_prediction(args),
            "versions": versions(),
        },
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
    from hybridsched.experiments import run_study

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


def cmd_export(args) -> None:
    from hybridsched.workloads import export_workload, load_workload, workload_info

    df = load_workload(
        args.workload or "gsm8k",
        arrivals=args.arrivals,
        seed=args.arrival_seed,
        **_workload_options(args),
    )
    info = workload_info(df)
    _report_dropped(info)
    path = export_workload(df, args.out, args.export_format)
    print(path)
    print(
        f"{info['workload']}: {len(df)} requests over {df['arrival_s'].max():.1f} s "
        f"as {args.export_format}"
    )


def cmd_sweep(args) -> None:
    from hybridsched.grid import load_grid, run_sweep

    res = run_sweep(
        load_grid(args.grid),
        args.out,
        engine=args.engine,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.quiet,
    )
    c = res.counts
    print(
        f"{c['cells']} cells: {c['ran']} ran ({c['failed']} failed), {c['already_done']} already "
        f"done, {c['invalid_skipped']} invalid skipped; {res.wall_s:.1f} s"
    )
    print(f"{args.out}/cells.parquet ({len(res.table)} rows), {args.out}/sweep.json")
    if c["failed"]:
        failed = res.table[res.table["status"] != "ok"]
        print(f"{len(failed)} cell(s) failed, e.g.: {failed['error'].iloc[0]}", file=sys.stderr)
        raise SystemExit(1)


def cmd_capacity(args) -> None:
    from hybridsched.capacity import gpus_needed, plan_capacity, read_prices
    from hybridsched.experiments import versions

    res = plan_capacity(
        workload=args.workload,
        slo_ttft=args.slo_ttft,
        slo_tpot=args.slo_tpot,
        rate=args.rate,
        models=args.models,
        hardware=args.hardware,
        tp=args.tp,
        clients=args.clients,
        max_batch=args.max_batch,
        policies=args.policies,
        max_gpus=args.max_gpus,
        target=args.target,
        num_requests=args.num_requests,
        seed=args.seed,
        rel_tol=args.rel_tol,
        prices=read_prices(args.prices) if args.prices else None,
        extra={"time_limit": args.time_limit, "fit_context": args.fit_context},
        engine=args.engine,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.quiet,
    )
    out = Outputs(args.out)
    out.add("candidates.csv", res.candidates)
    out.add("evaluations.csv", res.evaluations)
    out.add(
        "capacity.json",
        {
            "params": res.params,
            "choice": res.choice,
            "gpus_needed": gpus_needed(res.candidates, args.rate).to_dict(orient="records"),
            "skipped": res.skipped,
            "versions": versions(),
        },
    )
    out.commit()
    cols = ["hardware", "tp", "clients", "max_batch", "policy", "gpus", "max_rate", "sustains"]
    print(res.candidates[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if res.choice is None:
        print(f"no candidate sustains {args.rate:g} req/s within {args.max_gpus} GPUs")
        raise SystemExit(1)
    c = res.choice
    print(
        f"cheapest for {args.rate:g} req/s: {c['clients']} x tp={c['tp']} {c['hardware']} "
        f"({c['gpus']} GPUs), B={c['max_batch']}, policy {c['policy']}: sustains {c['max_rate']:.3g} req/s"
    )


def _engine_args(p: argparse.ArgumentParser, default: str = "dask") -> None:
    p.add_argument(
        "--engine",
        default=default,
        choices=["dask", "processes", "serial"],
        help=f"where cells run (default {default})",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="address of a running Dask scheduler (tcp://HOST:8786); default: a local cluster",
    )


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


def cmd_calibrate(args) -> None:
    """Fit a hardware profile to measured iteration times and write it (calibration.py)."""
    import shlex

    from hybridsched.calibration import calibrate

    command = "python -m hybridsched calibrate " + " ".join(shlex.quote(a) for a in args.argv)
    report_text = calibrate(
        args.measurements,
        args.format,
        args.model,
        args.hardware,
        args.out,
        command,
        memory_bytes=args.memory_bytes,
        measured_model=args.measured_model,
        measured_hardware=args.measured_hardware,
        name=args.name,
    )
    print(report_text)


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
    _serving_args(p)
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
    _serving_args(p)
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
    p.add_argument("--model", default="llama-65b", help="model profile name or YAML path")
    p.add_argument("--hardware", default="a100-80gb-sxm", help="hardware profile name or YAML path")
    _workload_args(p)
    p.add_argument("--policies", nargs="*", choices=list(POLICIES))
    _predictor_args(p)
    _solve_args(p, mip_gap=1e-3)
    _serving_args(p)
    _engine_args(p, default="processes")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("export", help="write a workload as a trace another simulator replays")
    _workload_args(p, format_flag="--input-format")
    p.add_argument(
        "--format",
        dest="export_format",
        default="vidur",
        help="vidur (default: arrived_at,num_prefill_tokens,num_decode_tokens), splitwise, "
        "or hybridsched",
    )
    p.add_argument(
        "--arrivals",
        default="table",
        help="zero | table (the trace's times; default) | poisson:RATE | gamma:RATE,CV",
    )
    p.add_argument("--arrival-seed", type=int, default=0, help="seed of the arrival process")
    p.add_argument("--out", required=True, help="the file to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sweep", help="run every cell of a grid file on Dask, resumable")
    p.add_argument("--grid", required=True, help="YAML: option name -> value or list of values")
    p.add_argument("--out", required=True, help="results directory (rerun to resume)")
    p.add_argument(
        "--workers", type=int, default=None, help="local workers (default: the machine's cores)"
    )
    _engine_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "capacity", help="the cheapest cluster that sustains a request rate under an SLO"
    )
    p.add_argument("--workload", default="gsm8k", help="gsm8k (default) or a request CSV")
    p.add_argument("--slo-ttft", type=float, required=True, help="TTFT SLO in seconds")
    p.add_argument("--slo-tpot", type=float, required=True, help="TPOT SLO in seconds")
    p.add_argument("--rate", type=float, required=True, help="target rate, requests per second")
    p.add_argument(
        "--target", type=float, default=0.9, help="share of requests meeting the SLO (0.9)"
    )
    p.add_argument("--models", nargs="+", default=["llama-65b"])
    p.add_argument("--hardware", nargs="+", default=["a100-80gb-sxm"])
    p.add_argument("--tp", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--clients", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--max-batch", nargs="+", type=int, default=[32])
    p.add_argument(
        "--policies",
        nargs="+",
        choices=list(POLICIES),
        help="default: vllm (if built), baseline, hybrid, chunked",
    )
    p.add_argument("--max-gpus", type=int, default=16, help="largest cluster considered (16)")
    p.add_argument("--num-requests", type=int, default=200, help="requests per simulation (200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample and the arrivals")
    p.add_argument(
        "--rel-tol", type=float, default=0.05, help="bisection stops within this share (0.05)"
    )
    p.add_argument("--prices", default=None, help="CSV: hardware, usd_per_gpu_hour")
    p.add_argument(
        "--fit-context",
        default="error",
        choices=["error", "drop"],
        help="requests longer than the model's context: error (default) or drop",
    )
    p.add_argument("--time-limit", type=float, default=10.0, help="MMBPP time limit in seconds")
    p.add_argument("--workers", type=int, default=None, help="local workers (default: cores)")
    _engine_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_capacity)

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

    p = sub.add_parser("calibrate", help="fit a hardware profile to measured iteration times")
    p.add_argument(
        "--measurements", required=True, help="splitwise CSV of iteration times, or a Vidur folder"
    )
    p.add_argument("--format", default="splitwise", choices=["splitwise", "vidur"])
    p.add_argument("--model", required=True, help="model profile name or YAML path")
    p.add_argument("--hardware", required=True, help="base hardware profile name or YAML path")
    p.add_argument("--memory-bytes", default=None, help="override the memory size, e.g. '80 GiB'")
    p.add_argument(
        "--measured-model", default=None, help="the file's model label (default: known alias)"
    )
    p.add_argument("--measured-hardware", default=None, help="the file's hardware label")
    p.add_argument("--name", default=None, help="profile name (default: the --out file's stem)")
    p.add_argument("--out", required=True, help="profile YAML to write")
    p.set_defaults(func=cmd_calibrate)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """The paths of a parsed command line, before any work (ValueError naming the flag)."""
    if getattr(args, "func", None) is not cmd_calibrate:  # calibrate's --out is a file
        check_out_dir(getattr(args, "out", None), "--out")
    check_input_file(getattr(args, "requests", None), "--requests")
    w = getattr(args, "workload", None)
    if isinstance(w, str) and os.path.isdir(w):  # a named workload is no path; a folder is bad
        used = "--requests" if "--requests" in getattr(args, "argv", []) else "--workload"
        check_input_file(w, used)
    for flag in ("model", "hardware", "models"):
        value = getattr(args, flag, None)
        for v in value if isinstance(value, list) else [value] if value is not None else []:
            check_profile(v, f"--{flag}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a bad argument (one line on stderr, code 2) or --help (0)
        return e.code if isinstance(e.code, int) else 2
    args.argv = list(sys.argv[2:] if argv is None else argv[1:])
    try:
        check_args(args)
        args.func(args)
    except ValueError as e:
        print(f"error: {plain(str(e))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
