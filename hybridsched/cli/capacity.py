"""``capacity``: the cheapest cluster that sustains a request rate under an SLO."""

from __future__ import annotations

import argparse

from hybridsched.cli.argcheck import nonnegative_int_arg, positive_int_arg
from hybridsched.cli.options import add_engine_args
from hybridsched.cli.outputs import Outputs


def cmd_capacity(args) -> None:
    from hybridsched.provenance import versions
    from hybridsched.studies.capacity import gpus_needed, plan_capacity, read_prices

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


def add_capacity(sub) -> argparse.ArgumentParser:
    from hybridsched.policies.registry import POLICIES

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
    p.add_argument("--tp", nargs="+", type=positive_int_arg, default=[1, 2, 4, 8])
    p.add_argument("--clients", nargs="+", type=positive_int_arg, default=[1, 2, 4, 8])
    p.add_argument("--max-batch", nargs="+", type=positive_int_arg, default=[32])
    p.add_argument(
        "--policies",
        nargs="+",
        choices=list(POLICIES),
        help="default: vllm (if built), baseline, hybrid, chunked",
    )
    p.add_argument(
        "--max-gpus", type=positive_int_arg, default=16, help="largest cluster considered (16)"
    )
    p.add_argument(
        "--num-requests", type=positive_int_arg, default=200, help="requests per simulation (200)"
    )
    p.add_argument(
        "--seed", type=nonnegative_int_arg, default=0, help="seed of the sample and the arrivals"
    )
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
    p.add_argument(
        "--workers", type=positive_int_arg, default=None, help="local workers (default: cores)"
    )
    add_engine_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--out", required=True)
    return p
