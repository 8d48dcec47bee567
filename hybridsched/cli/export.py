"""``export``: a workload as a trace another simulator replays."""

from __future__ import annotations

import argparse

from hybridsched.cli.argcheck import nonnegative_int_arg
from hybridsched.cli.options import add_workload_args, report_dropped, workload_options


def cmd_export(args) -> None:
    from hybridsched.jobs.staging import staged_file
    from hybridsched.workloads.catalogue import export_workload, load_workload, workload_info

    df = load_workload(
        args.workload or "gsm8k",
        arrivals=args.arrivals,
        seed=args.arrival_seed,
        **workload_options(args),
    )
    info = workload_info(df)
    report_dropped(info)
    with staged_file(args.out) as staged:  # replaces --out only once it is whole
        export_workload(df, staged, args.export_format)
    print(args.out)
    print(
        f"{info['workload']}: {len(df)} requests over {df['arrival_s'].max():.1f} s "
        f"as {args.export_format}"
    )


def add_export(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="write a workload as a trace another simulator replays")
    add_workload_args(p, format_flag="--input-format")
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
    p.add_argument(
        "--arrival-seed", type=nonnegative_int_arg, default=0, help="seed of the arrival process"
    )
    p.add_argument("--out", required=True, help="the file to write")
    return p
