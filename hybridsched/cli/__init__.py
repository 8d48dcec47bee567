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
- ``validate --run FILE [--format vllm-bench|llmservingsim] [--model M] [--hardware H]
  --out DIR``: a real run's requests replayed through the ``vllm`` policy with the run's
  settings (``studies/validation.py``): ``DIR/requests.csv`` (per request: ``ttft``,
  ``tpot``, ``e2e`` real, simulated and relative error), ``DIR/summary.csv`` (mean, p50,
  p90, p99 of each, real and simulated, relative error), ``DIR/metrics.json`` (the errors
  as ``<metric>_<stat>_rel_error`` and ``<metric>_mape``, the run's settings) and
  ``DIR/cdf.png``.

``simulate``, ``assign``, ``single-case``, ``study`` and ``export`` name their requests with
``--workload`` (a shipped name or a file; ``--requests`` is the older name) and shape them with
``--format``, ``--window START:END``, ``--rate-scale X``, ``--max-requests N``,
``--fit-context {error,drop}`` and ``--max-context`` (docs/model.md, "Workloads").

Bad input exits with code 2 and one line naming the field and the value. Every command
writes all or nothing (``jobs/staging.py``): its files go to a staging folder beside
``--out`` and are moved in at the end, once every target was checked (a target that
cannot be written is the same one-line error, exit 2, nothing moved). Ctrl-C or SIGTERM
ends a command with one line, exit 130 (``interrupt``): nothing written, or for a sweep
the cells kept and how to resume.

One module per command or group (``simulate``, ``assign``, ``study`` for ``single-case``
and ``study``, ``export``, ``sweep``, ``capacity``, ``render``, ``calibrate``, ``validate``), each with
its ``cmd_*`` and the ``add_*`` that declares its options; ``common`` holds the options
they share and ``outputs`` the all-or-nothing writer. This module assembles the parser.
"""

from __future__ import annotations

import argparse
import os
import sys

from hybridsched.cli.argcheck import (
    OneLineParser,
    check_input_file,
    check_out_dir,
    check_out_file,
    check_profile,
    plain_message,
)
from hybridsched.cli.assign import add_assign, cmd_assign
from hybridsched.cli.calibrate import add_calibrate, cmd_calibrate
from hybridsched.cli.capacity import add_capacity, cmd_capacity
from hybridsched.cli.export import add_export, cmd_export
from hybridsched.cli.interrupt import interrupted_line, signals_as_interrupt
from hybridsched.cli.render import add_render, cmd_render
from hybridsched.cli.simulate import add_simulate, cmd_simulate
from hybridsched.cli.study import add_single_case, add_study, cmd_single_case, cmd_study
from hybridsched.cli.sweep import add_sweep, cmd_sweep
from hybridsched.cli.validate import add_validate, cmd_validate


def build_parser() -> argparse.ArgumentParser:
    """Every command's parser; each runs this module's ``cmd_*`` (looked up when built)."""
    parser = OneLineParser(prog="python -m hybridsched", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_simulate(sub).set_defaults(func=cmd_simulate)
    add_assign(sub).set_defaults(func=cmd_assign)
    add_single_case(sub).set_defaults(func=cmd_single_case)
    add_study(sub).set_defaults(func=cmd_study)
    add_export(sub).set_defaults(func=cmd_export)
    add_sweep(sub).set_defaults(func=cmd_sweep)
    add_capacity(sub).set_defaults(func=cmd_capacity)
    add_render(sub).set_defaults(func=cmd_render)
    add_calibrate(sub).set_defaults(func=cmd_calibrate)
    add_validate(sub).set_defaults(func=cmd_validate)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """The paths of a parsed command line, before any work (ValueError naming the flag)."""
    if getattr(args, "func", None) in (cmd_calibrate, cmd_export):  # --out is a file
        check_out_file(args.out, "--out")
    else:
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
    # SIGTERM ends a run as Ctrl-C does: one line, exit 130, nothing half-written (every
    # command moves its files in at the end; a sweep keeps the cells it finished).
    with signals_as_interrupt():
        try:
            check_args(args)
            args.func(args)
        except ValueError as e:
            print(f"error: {plain_message(str(e))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(interrupted_line(args), file=sys.stderr)
            return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
