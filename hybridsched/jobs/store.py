"""A sweep's results directory: Parquet parts, one row per cell, that survive a crash.

``ResultStore(DIR)`` appends rows as ``DIR/cells.parquet/part-NNNNNN.parquet`` files, each written to
a temporary name and renamed, so a part is either whole or absent: a sweep stopped by a
crash or Ctrl-C keeps every part it finished. ``load()`` reads all parts (the latest row
per ``cell_id`` wins); ``done_ids()`` are the cells with ``status == 'ok'``, which a
rerun skips (failed cells are run again). Columns named in ``dtypes`` keep one type in
every part, so ``pandas.read_parquet(DIR / "cells.parquet")`` reads the folder too (with
the first part's columns; ``load()`` keeps every part's).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

_PART = re.compile(r"^part-(\d{6,})\.parquet$")


class ResultStore:
    """Parquet parts in one directory (module docstring)."""

    def __init__(self, out_dir: str | os.PathLike, dtypes: dict | None = None):
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise ValueError(f"out: {out} exists and is not a directory")
        self.dir = out / "cells.parquet"
        self.dtypes = dict(dtypes or {})

    def parts(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := _PART.match(p.name))]
        return [p for _, p in sorted(found)]

    def load(self) -> pd.DataFrame:
        """Every row saved so far; the latest row of each ``cell_id``."""
        parts = self.parts()
        if not parts:
            return pd.DataFrame()
        frames = []
        for p in parts:
            try:
                frames.append(pd.read_parquet(p))
            except Exception as e:
                raise ValueError(f"out: {p} is not a readable Parquet file ({e})") from None
        df = pd.concat(frames, ignore_index=True)
        df = df.astype({k: t for k, t in self.dtypes.items() if k in df.columns})
        if "cell_id" in df.columns:
            df = df.drop_duplicates("cell_id", keep="last").reset_index(drop=True)
        return df

    def done_ids(self) -> set[str]:
        df = self.load()
        if df.empty or "status" not in df.columns:
            return set()
        return set(df.loc[df["status"] == "ok", "cell_id"])

    def append(self, rows: list[dict]) -> Path | None:
        """Write ``rows`` as the next part; ``None`` when there is nothing to write."""
        if not rows:
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        parts = self.parts()
        n = int(_PART.match(parts[-1].name).group(1)) + 1 if parts else 0
        path = self.dir / f"part-{n:06d}.parquet"
        tmp = self.dir / f".{path.name}.partial"
        df = pd.DataFrame(rows)
        df = df.astype({k: t for k, t in self.dtypes.items() if k in df.columns})
        try:
            df.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        except BaseException:  # a full disk, or Ctrl-C while saving: no partial part left
            tmp.unlink(missing_ok=True)
            raise
        return path
