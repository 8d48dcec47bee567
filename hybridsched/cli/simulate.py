"""``simulate``: one policy through the serving engine (trace, requests, evictions, replans, metrics)."""

from __future__ import annotations

import argparse

from hybridsched.cli.argcheck import finite_float_arg, positive_int_arg
from hybridsched.cli.options import (
    add_cluster_args,
    add_serving_args,
    add_solve_args,
    cell_params,
    flag_names,
    recorded_prediction,
    report_dropped,
    serving_of,
)
from hybridsched.cli.outputs import Outputs, ProgressBar


def cmd_simulate(args) -> None:
    import functools

    import pandas as pd

    from hybridsched.jobs import background
    from hybridsched.policies.registry import POLICIES, SolveSettings
    from hybridsched.studies.bounds import cacheable, full_lower_bound
    from hybridsched.studies.cells import simulate_cell
    from hybridsched.trace.io import check_run

    serving_of(args)  # refuse bad serving options before any work
    # The bound needs only the instance: it is computed in the background (a forked
    # process, on the other core) while the policy runs. --check reads the finished run
    # there too while the files are written; nothing is renamed into place before the
    # check has passed.
    solve = SolveSettings(args.time_limit, args.mip_gap)
    spec = POLICIES[args.policy]
    jobs: dict = {}

    def start_bound(inst) -> None:
        adm = args.admission or spec.admission
        bound = functools.partial(
            full_lower_bound,
            solve=solve,
            mixed_iterations=spec.mixed,
            admission=adm,
            cached=cacheable(inst, adm, args.prefix_caching == "on", args.block_size),
        )
        jobs["bound"] = background.start(bound, inst)

    out = Outputs(args.out)
    bar = ProgressBar("simulate", "req", quiet=args.quiet)
    try:
        try:
            cell = simulate_cell(
                {**cell_params(args), "check": False}, on_instance=start_bound, progress=bar
            )
        except ValueError as e:  # name the CLI's flags, not the cell's option names
            raise ValueError(flag_names(str(e))) from None
        finally:
            bar.close()
        inst, run = cell.instance, cell.run
        report_dropped(cell.workload or {})
        if args.check:
            jobs["check"] = background.start(functools.partial(check_run, flat=run.flat), run, inst)
        out.add("trace.csv", run.trace, request_ids_flat=run.flat.rid)
        out.add("requests.csv", run.requests)
        out.add("evictions.csv", run.evictions)
        out.add("replans.csv", pd.DataFrame(run.router_log, columns=REPLAN_COLUMNS))
        out.write()
        lb = jobs["bound"].result()
        m = _metrics_json(args, cell, lb)
        out.add("metrics.json", m)
        out.write()
        if "check" in jobs:
            jobs["check"].result()
    except BaseException:
        for job in jobs.values():
            job.cancel()
        out.discard()
        raise
    out.commit()
    print(
        f"{args.policy} ({run.router}, {run.admission}): makespan {m['makespan_s']:.2f} s, "
        f"U {m['utilization']:.1%}, T_LB {lb.lower_bound_s:.2f} s, TTFT p99 "
        f"{m['ttft_p99_s']:.3f} s, TPOT p99 {m['tpot_p99_s']:.4f} s, "
        f"{m['num_preemptions']} preemptions"
    )


def _metrics_json(args, cell, lb) -> dict:
    """``metrics.json``: the run's metrics, the bound with its parts, the cell and versions."""
    from hybridsched.provenance import versions

    run, cluster = cell.run, cell.instance.meta["cluster"]
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
        **recorded_prediction(args),
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
        replans=_replan_summary(run.router_log),
        kv=_kv_summary(cell),
        simulate_s=run.simulate_s,
        versions=versions(),
    )
    return m


def _kv_summary(cell) -> dict:
    """The KV cache the engine ran: tokens per client, block size, watermark, engine loop."""
    from hybridsched.studies.config import RunConfig

    kv = RunConfig(**cell.params).kv() if cell.run.admission == "on-demand" else {}
    return {
        "kv_capacity_tokens": [int(c.kv_capacity_tokens) for c in cell.instance.clients],
        "request_overhead_s": float(cell.instance.clients[0].request_overhead_s),
        **kv,
    }


REPLAN_COLUMNS = ["time_s", "requests", "method", "status", "objective_s", "solve_s"]


def _replan_summary(log: list[dict]) -> dict:
    """What ``replans.csv`` holds, in a few numbers: replans, requests, methods, solve time."""
    import pandas as pd

    df = pd.DataFrame(log, columns=REPLAN_COLUMNS)
    return {
        "count": len(df),
        "requests": int(df["requests"].sum()),
        "by_method": {str(k): int(v) for k, v in df["method"].value_counts().items()},
        "solve_s": float(df["solve_s"].sum()),
        "file": "replans.csv",
    }


def add_simulate(sub) -> argparse.ArgumentParser:
    from hybridsched.policies.registry import POLICIES

    p = sub.add_parser("simulate", help="run one policy through the simulator")
    p.add_argument("--policy", default="baseline", choices=list(POLICIES))
    add_cluster_args(p)
    add_solve_args(p)
    p.add_argument(
        "--lambda-multiplier",
        type=finite_float_arg,
        default=1.0,
        help="Lagrangian rule: multiplier on the default lambda",
    )
    p.add_argument(
        "--horizon", type=positive_int_arg, default=64, help="Lagrangian rule: horizon H"
    )
    p.add_argument("--check", action="store_true", help="assert the trace invariants")
    add_serving_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True)
    return p
