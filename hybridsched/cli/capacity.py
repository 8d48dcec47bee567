"""``capacity``: the cheapest cluster that sustains a request rate under an SLO."""

from __future__ import annotations

import argparse

from hybridsched.cli.argcheck import nonnegative_float_arg, nonnegative_int_arg, positive_int_arg
from hybridsched.cli.options import add_engine_args, add_workload_args, workload_options
from hybridsched.cli.outputs import Outputs


def cmd_capacity(args) -> None:
    from hybridsched.provenance import versions
    from hybridsched.studies.capacity import gpus_needed, plan_capacity, read_prices

    res = plan_capacity(
        workload=args.workload or "gsm8k",
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
        extra={"time_limit": args.time_limit, **workload_options(args)},
        engine=args.engine,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.quiet,
        seeds=args.seeds,
        min_duration_s=args.min_duration,
        warmup=args.warmup,
        allow_clairvoyant=args.allow_clairvoyant,
        stop_at_target=not args.full_frontier,
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
    from hybridsched.reports.capacity_plots import describe_choice, rates_table

    print(rates_table(res.candidates).to_string(index=False))
    for note in res.params["notes"]:
        print(f"note: {note}")
    print(describe_choice(res.choice, args.rate, args.max_gpus))
    if res.choice is None:
        raise SystemExit(1)


def add_capacity(sub) -> argparse.ArgumentParser:
    from hybridsched.policies.registry import POLICIES

    p = sub.add_parser(
        "capacity", help="the cheapest cluster that sustains a request rate under an SLO"
    )
    add_workload_args(p)
    p.add_argument("--slo-ttft", type=float, required=True, help="TTFT SLO in seconds")
    p.add_argument("--slo-tpot", type=float, required=True, help="TPOT SLO in seconds")
    p.add_argument("--rate", type=float, required=True, help="target rate, requests per second")
    p.add_argument(
        "--target", type=float, default=0.9, help="share of requests meeting the SLO (0.9)"
    )
    p.add_argument("--models", nargs="+", default=["llama-65b"])
    p.add_argument("--hardware", nargs="+", default=["h100-sxm-vllm"])
    p.add_argument("--tp", nargs="+", type=positive_int_arg, default=[1, 2, 4, 8])
    p.add_argument(
        "--clients",
        nargs="+",
        type=positive_int_arg,
        default=None,
        help="client counts tried for every tp (default: every count up to max-gpus / tp)",
    )
    p.add_argument("--max-batch", nargs="+", type=positive_int_arg, default=[32])
    p.add_argument(
        "--policies",
        nargs="+",
        choices=list(POLICIES),
        help="default: vllm, online-hybrid, baseline, chunked (the non-clairvoyant ones)",
    )
    p.add_argument(
        "--allow-clairvoyant",
        action="store_true",
        help="allow policies that plan with every arrival known in advance (hybrid, b, c, ...)",
    )
    p.add_argument(
        "--max-gpus", type=positive_int_arg, default=16, help="largest cluster considered (16)"
    )
    p.add_argument(
        "--num-requests",
        type=positive_int_arg,
        default=200,
        help="fewest requests per simulation (200); a run at rate r has r x --min-duration",
    )
    _add_steady_args(p)
    p.add_argument(
        "--seed", type=nonnegative_int_arg, default=0, help="seed of the sample and the arrivals"
    )
    p.add_argument(
        "--rel-tol", type=float, default=0.05, help="bisection stops within this share (0.05)"
    )
    p.add_argument("--prices", default=None, help="CSV: hardware, usd_per_gpu_hour")
    p.add_argument("--time-limit", type=float, default=10.0, help="MMBPP time limit in seconds")
    p.add_argument(
        "--workers", type=positive_int_arg, default=None, help="local workers (default: cores)"
    )
    add_engine_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--out", required=True)
    return p


def _add_steady_args(p: argparse.ArgumentParser) -> None:
    """How each rate is measured (docs/model.md section 12): run length, warm-up, seeds."""
    p.add_argument(
        "--min-duration",
        type=nonnegative_float_arg,
        default=600.0,
        help="seconds the arrivals of each run span at least (600)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=0.2,
        help="share of the arrival span not counted in the SLO attainment (0.2)",
    )
    p.add_argument(
        "--seeds",
        type=positive_int_arg,
        default=3,
        help="runs per rate (seeds --seed, --seed + 1, ...); a rate is sustained when all meet "
        "the target (3)",
    )
    p.add_argument(
        "--full-frontier",
        action="store_true",
        help="search every candidate, also those larger than the first that sustains the rate",
    )
