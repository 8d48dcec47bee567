"""The files a command writes, all at the end, each by atomic rename (``Outputs``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd


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
    """Collects output files and writes them all at the end, each by atomic rename."""

    def __init__(self, out: str | Path):
        self.dir = Path(out)
        self.files: dict[str, object] = {}
        self.options: dict[str, dict] = {}  # per file: keyword arguments of its writer
        self._tmp: list[tuple[Path, Path]] = []  # (partial file, final name), as written

    def add(self, name: str, content, **options) -> None:
        """``content``: a DataFrame (CSV; a name starting with ``trace`` is written by
        ``write_trace``, which takes ``options``), bytes (a figure) or anything JSON can hold."""
        self.files[name] = content
        self.options[name] = options

    def write(self) -> None:
        """Write the files added so far as ``NAME.partial``; nothing looks complete until
        ``commit``. Files added later are written by the next ``write`` or ``commit``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        done = {dst.name for _, dst in self._tmp}
        for name, content in self.files.items():
            if name in done:
                continue
            path = self.dir / (name + ".partial")
            if isinstance(content, pd.DataFrame):
                if name.startswith("trace"):
                    from hybridsched.trace.io import write_trace

                    write_trace(content, path, **self.options.get(name, {}))
                else:
                    from hybridsched.trace.csv_writer import write_csv

                    write_csv(content, path)  # the bytes of to_csv(index=False)
            elif isinstance(content, bytes):  # a rendered figure
                path.write_bytes(content)
            else:
                path.write_text(json.dumps(content, indent=2, default=_json_default) + "\n")
            self._tmp.append((path, self.dir / name))

    def discard(self) -> None:
        """Remove the partial files of ``write`` (a check failed after them)."""
        for src, _ in self._tmp:
            src.unlink(missing_ok=True)
        self._tmp = []

    def commit(self) -> None:
        """Write what ``write`` has not, rename every file into place, print the paths."""
        self.write()
        for src, dst in self._tmp:
            os.replace(src, dst)
        for _, dst in self._tmp:
            print(dst)


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
