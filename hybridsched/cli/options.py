"""Options and checks the commands share: the workload, cluster, predictor, serving, solve and
engine options, and what they become (``load_workload`` keywords, a ``Serving``, an instance)."""

from __future__ import annotations

import argparse

from hybridsched.cli.argcheck import nonnegative_float_arg, nonnegative_int_arg, positive_int_arg
from hybridsched.studies.config import NAMES, RunConfig

D = RunConfig()  # every flag's default


def add_workload_args(p: argparse.ArgumentParser, format_flag: str = "--format") -> None:
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


def workload_options(args) -> dict:
    """``load_workload`` keyword arguments from the workload options."""
    from hybridsched.workloads.arrivals import parse_arrivals

    max_context = args.max_context
    if max_context is not None:
        max_context = _number(max_context, "max-context", int)
    elif getattr(args, "model", None):
        from hybridsched.latency.profiles import load_model_profile

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


def report_dropped(info: dict) -> None:
    if info.get("num_dropped"):
        print(
            f"dropped {info['num_dropped']} request(s) of {info['workload']} longer than the "
            f"context of {info['max_context']} tokens (--fit-context drop)"
        )


def add_cluster_args(p: argparse.ArgumentParser, sample: bool = True) -> None:
    """The cluster, workload and predictor options (defaults: ``RunConfig``'s)."""
    p.add_argument(
        "--clients",
        type=positive_int_arg,
        default=D.clients,
        help=f"number of clients (replicas), default {D.clients}",
    )
    p.add_argument(
        "--tp",
        type=positive_int_arg,
        default=D.tp,
        help=f"tensor-parallel degree per client, default {D.tp}",
    )
    p.add_argument(
        "--max-batch",
        type=positive_int_arg,
        default=D.max_batch,
        help=f"max batch size B per client, default {D.max_batch}",
    )
    p.add_argument("--model", default=D.model, help="model profile name or YAML path")
    p.add_argument("--hardware", default=D.hardware, help="hardware profile name or YAML path")
    p.add_argument("--latency", default=D.latency, choices=["roofline", "linear"])
    add_workload_args(p)
    if sample:
        p.add_argument(
            "--num-requests",
            type=positive_int_arg,
            default=None,
            help="sample this many requests (seeded)",
        )
        p.add_argument(
            "--seed",
            type=nonnegative_int_arg,
            default=D.seed,
            help="seed for sampling and random sort keys",
        )
    add_predictor_args(p)


def add_predictor_args(p: argparse.ArgumentParser) -> None:
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
    p.add_argument(
        "--prediction-seed",
        type=nonnegative_int_arg,
        default=D.prediction_seed,
        help="seed of the prediction error",
    )


def prediction_of(args) -> dict:
    """The prediction keywords of ``requests_for`` and friends; both ways at once is an error."""
    from hybridsched.workloads.predictors import predictor_spec

    if args.predictor is not None and args.prediction_sigma is not None:
        raise ValueError("give --predictor or --prediction-sigma, not both")
    sigma = args.prediction_sigma or 0.0
    predictor_spec(args.predictor, sigma)  # a bad spec fails here, before any work
    return {
        "prediction_sigma": sigma,
        "prediction_seed": args.prediction_seed,
        "predictor": args.predictor,
    }


def add_serving_args(p: argparse.ArgumentParser) -> None:
    from hybridsched.instance import ADMISSIONS
    from hybridsched.policies.registry import ROUTERS

    p.add_argument("--router", default=None, choices=ROUTERS, help="override the policy's router")
    p.add_argument(
        "--admission", default=None, choices=ADMISSIONS, help="override the policy's admission"
    )
    p.add_argument(
        "--arrivals",
        default=D.arrivals,
        help="zero | table (the request table's arrival_s; default) | poisson:RATE | gamma:RATE,CV",
    )
    p.add_argument(
        "--arrival-seed",
        type=nonnegative_int_arg,
        default=None,
        help="seed of the arrival process (default --seed)",
    )
    p.add_argument("--slo-ttft", type=float, default=None, help="SLO on TTFT, seconds")
    p.add_argument("--slo-tpot", type=float, default=None, help="SLO on TPOT, seconds")
    p.add_argument(
        "--replan-s", type=float, default=D.replan_s, help="rolling-mmbpp: seconds between replans"
    )
    add_engine_args_kv(p)


def add_engine_args_kv(p: argparse.ArgumentParser) -> None:
    """The serving engine's settings, as vLLM names them (docs/model.md section 11)."""
    g = p.add_argument_group("serving engine (vLLM's settings)")
    g.add_argument(
        "--token-budget",
        "--max-num-batched-tokens",
        dest="token_budget",
        type=positive_int_arg,
        default=None,
        help="tokens per iteration (vLLM's max_num_batched_tokens; default 2048)",
    )
    g.add_argument(
        "--block-size",
        type=positive_int_arg,
        default=D.block_size,
        help=f"on-demand KV block, tokens (default {D.block_size}; 1 counts tokens)",
    )
    g.add_argument(
        "--watermark",
        type=float,
        default=D.watermark,
        help="share of the KV blocks kept free for admissions (default 0, vLLM's)",
    )
    g.add_argument(
        "--async-scheduling",
        choices=["on", "off"],
        default=None,
        help="plan the next iteration before this one returns (default: the hardware profile's)",
    )
    g.add_argument(
        "--kv-blocks", type=positive_int_arg, default=None, help="KV cache size in blocks"
    )
    g.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=D.gpu_memory_utilization,
        help="share of GPU memory the engine takes, for the KV cache size (default 0.9)",
    )
    g.add_argument(
        "--ep", type=positive_int_arg, default=D.ep, help="expert parallelism of an MoE model"
    )
    g.add_argument(
        "--prefix-caching",
        choices=["on", "off"],
        default="on",
        help="vLLM's automatic prefix cache, on demand (default on, as vLLM; used where the "
        "workload says which prompts share prefixes)",
    )
    g.add_argument(
        "--shared-prefix",
        type=nonnegative_int_arg,
        default=D.shared_prefix,
        metavar="N",
        help="every prompt starts with the same N tokens (a common system prompt; default 0)",
    )


def serving_of(args):
    import math

    from hybridsched.policies.registry import Serving
    from hybridsched.workloads.arrivals import parse_arrivals

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


def add_solve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--time-limit",
        type=nonnegative_float_arg,
        default=D.time_limit,
        help="MMBPP time limit in seconds",
    )
    p.add_argument(
        "--mip-gap",
        type=nonnegative_float_arg,
        default=D.mip_gap,
        help=f"MMBPP relative gap (default {D.mip_gap:g})",
    )


def instance_of(args):
    from hybridsched.instance import Cluster, make_instance
    from hybridsched.workloads.catalogue import workload_info
    from hybridsched.workloads.tables import requests_for

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
        workload_options=workload_options(args),
        **prediction_of(args),
    )
    args.workload_info = workload_info(reqs)
    report_dropped(args.workload_info)
    return make_instance(reqs, cluster), cluster


def recorded_prediction(args) -> dict:
    """What an output file records of the predictions: sigma, seed and the predictor's spec."""
    from hybridsched.workloads.predictors import predictor_spec

    kw = prediction_of(args)
    return {**kw, "predictor": predictor_spec(kw["predictor"], kw["prediction_sigma"]) or "oracle"}


def flag_names(message: str) -> str:
    """A cell's message with option names as flags: ``rate_scale must`` -> ``--rate-scale must``,
    ``num_requests: ...`` -> ``--num-requests: ...``."""
    import re

    alias = {"num_clients": "clients"}  # the Cluster's field behind --clients
    names = sorted([*NAMES, *alias], key=len, reverse=True)
    return re.sub(
        r"^(" + "|".join(names) + r")( must|:)",
        lambda m: f"--{alias.get(m.group(1), m.group(1)).replace('_', '-')}{m.group(2)}",
        message,
    )


def cell_params(args) -> dict:
    """The options (``RunConfig``'s names) that a command's flags set."""
    return {k: getattr(args, k) for k in NAMES if getattr(args, k, None) is not None}


def run_config(args) -> RunConfig:
    """The ``RunConfig`` a command's flags describe, after the flags' own checks."""
    serving_of(args)
    prediction_of(args)
    workload_options(args)
    try:
        return RunConfig.from_dict(cell_params(args))
    except ValueError as e:  # name the flags, not the options
        raise ValueError(flag_names(str(e))) from None


def add_engine_args(p: argparse.ArgumentParser, default: str = "dask") -> None:
    p.add_argument(
        "--engine",
        default=default,
        choices=["dask", "processes", "serial"],
        help=f"where cells run (default {default})",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="address of a running Dask scheduler (tcp://HOST:8786), given 5 s to answer "
        "(else exit 2); default: a local cluster",
    )
