"""The files a command writes, all at the end, all or nothing (``Outputs``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hybridsched.jobs.staging import Stage


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "value"):
        return o.value
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class Outputs:
    """Collects output files and moves them all into place at the end, all or nothing
    (``jobs/staging.py``: a target that cannot be written is a one-line ``ValueError``
    before any file is moved)."""

    def __init__(self, out: str | Path):
        self.dir = Path(out)
        self.files: dict[str, object] = {}
        self.options: dict[str, dict] = {}  # per file: keyword arguments of its writer
        self._stage: Stage | None = None
        self._written: set[str] = set()

    def add(self, name: str, content, **options) -> None:
        """``content``: a DataFrame (CSV; a name starting with ``trace`` is written by
        ``write_trace``, which takes ``options``), bytes (a figure) or anything JSON can hold."""
        self.files[name] = content
        self.options[name] = options

    def write(self) -> None:
        """Write the files added so far into the staging folder beside the output folder;
        nothing is in the output folder until ``commit``. Files added later are written
        by the next ``write`` or ``commit``."""
        if self._stage is None:
            self._stage = Stage(self.dir)
        for name, content in self.files.items():
            if name not in self._written:
                try:
                    _write_file(self._stage.path(name), name, content, self.options.get(name, {}))
                except OSError as e:  # a full disk: one line naming the file
                    raise self._stage.write_error(e, name) from None
                self._written.add(name)

    def discard(self) -> None:
        """Remove what ``write`` wrote (a check failed after it, or the run was stopped)."""
        if self._stage is not None:
            self._stage.close()
        self._stage, self._written = None, set()

    def commit(self) -> None:
        """Write what ``write`` has not, move every file into place, print the paths."""
        try:
            self.write()
            moved = self._stage.commit()
        finally:
            self.discard()
        for path in moved:
            print(self.dir / path.name)


def _write_file(path: Path, name: str, content, options: dict) -> None:
    """One output file: a DataFrame as CSV (a trace by ``write_trace``), bytes, or JSON."""
    if isinstance(content, pd.DataFrame):
        if name.startswith("trace"):
            from hybridsched.trace.io import write_trace

            write_trace(content, path, **options)
        else:
            from hybridsched.trace.csv_writer import write_csv

            write_csv(content, path)  # the bytes of to_csv(index=False)
    elif isinstance(content, bytes):  # a rendered figure
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(content, indent=2, default=_json_default) + "\n")


class ProgressBar:
    """A tqdm bar on stderr, on a terminal only (silent in a log, a pipe or with ``quiet``).

    Called with the count done so far and the total (the engine's
    ``progress(arrived, total)``).
    """

    def __init__(self, desc: str, unit: str, quiet: bool = False):
        self.desc, self.unit, self.quiet = desc, unit, quiet
        self._bar = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=self.desc, unit=self.unit, disable=True if self.quiet else None
            )
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
