"""``render``: execute the notebooks and render their HTML reports."""

from __future__ import annotations

import argparse
import sys

from hybridsched.cli.argcheck import parameter_arg


def cmd_render(args) -> None:
    from hybridsched.reports.rendering import RenderError, render

    try:
        render(
            args.out,
            smoke=args.smoke,
            notebooks=args.notebooks or None,
            parameters=dict(args.parameter or []),
            progress=not args.quiet,
        )
    except RenderError as e:
        print(f"render failed: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def add_render(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("render", help="execute the notebooks and render HTML reports")
    p.add_argument("--smoke", action="store_true", help="small runs (for CI)")
    p.add_argument("--out", default="reports")
    p.add_argument("--notebooks", nargs="*", help="notebook names (default: all)")
    p.add_argument(
        "--quiet", action="store_true", help="no progress (a line per notebook, a bar of its cells)"
    )
    p.add_argument(
        "-p",
        "--parameter",
        action="append",
        type=parameter_arg,
        metavar="NAME=VALUE",
        help="a notebook parameter (a Python literal, else a string); repeatable",
    )
    return p
