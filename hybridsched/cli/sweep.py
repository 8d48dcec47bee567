"""``sweep``: every cell of a grid file, on Dask, resumable."""

from __future__ import annotations

import argparse
import sys

from hybridsched.cli.argcheck import positive_int_arg
from hybridsched.cli.options import add_engine_args


def cmd_sweep(args) -> None:
    from hybridsched.studies.grid import load_grid, run_sweep

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


def add_sweep(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sweep", help="run every cell of a grid file on Dask, resumable")
    p.add_argument("--grid", required=True, help="YAML: option name -> value or list of values")
    p.add_argument("--out", required=True, help="results directory (rerun to resume)")
    p.add_argument(
        "--workers",
        type=positive_int_arg,
        default=None,
        help="local workers (default: the machine's cores)",
    )
    add_engine_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p
