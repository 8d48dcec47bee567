"""Ctrl-C and SIGTERM: one line on stderr saying what was kept, exit code 130.

``signals_as_interrupt()`` makes SIGTERM raise ``KeyboardInterrupt`` as Ctrl-C does, for
the length of a command (the handlers are put back after, so a caller running ``main``
in its own process keeps its own). ``interrupted_line(args)`` is the line ``main`` prints:
``interrupted; nothing written to DIR`` (every command moves its files in at the end,
all or nothing), or for a sweep ``interrupted; N of M cells kept in DIR, rerun the same
command to resume`` (its store keeps every finished cell).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading


@contextlib.contextmanager
def signals_as_interrupt():
    """SIGTERM raises ``KeyboardInterrupt`` in the block; SIGINT and SIGTERM handlers are
    restored on leaving it (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        for s, handler in previous.items():
            if handler is not None:
                signal.signal(s, handler)


def interrupted_line(args: argparse.Namespace) -> str:
    """What an interrupted command leaves, and how to resume; a second Ctrl-C while this
    is worked out is ignored (``signals_as_interrupt`` restores the handler)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = getattr(args, "out", None)
    if getattr(args, "command", "") == "sweep" and out:
        return f"interrupted; {_cells_kept(args.grid, out)}"
    return f"interrupted; nothing written to {out}" if out else "interrupted; nothing written"


def _cells_kept(grid: str, out: str) -> str:
    """``N of M cells kept in OUT, ...``: the grid's cells that a rerun will not run again."""
    resume = "rerun the same command to resume"
    try:
        from hybridsched.jobs.store import ResultStore
        from hybridsched.studies.cells import cell_id
        from hybridsched.studies.grid import expand_grid, load_grid

        cells = expand_grid(load_grid(grid)).cells
        done = ResultStore(out).done_ids()
    except Exception:  # the message must not fail: say it without the counts
        return f"the cells finished so far are kept in {out}, {resume}"
    kept = sum(cell_id(c) in done for c in cells)
    return f"{kept} of {len(cells)} cells kept in {out}, {resume}"
