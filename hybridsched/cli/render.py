"""``render``: execute the notebooks and render their HTML reports."""

from __future__ import annotations

import argparse
import sys

from hybridsched.cli.argcheck import parameter_arg


def cmd_render(args) -> None:
    """Render into a staging folder beside ``--out``, then move every report, results folder
    and the index in at once (a failed notebook's stale report is removed in the same move)."""
    from hybridsched.jobs.staging import staged_output
    from hybridsched.reports.rendering import RenderError, render

    failed = None
    with staged_output(args.out) as stage:
        try:
            render(
                args.out,
                smoke=args.smoke,
                notebooks=args.notebooks or None,
                parameters=dict(args.parameter or []),
                progress=not args.quiet,
                publish_to=stage.dir,
            )
        except RenderError as e:  # the other notebooks' reports are still published
            failed = e
            for f in e.failures:
                stage.remove(f"{f.notebook}.html")
                stage.remove(f.notebook)
    if failed is not None:
        print(f"render failed: {failed}", file=sys.stderr)
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
