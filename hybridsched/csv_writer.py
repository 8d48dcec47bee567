"""CSV files as ``DataFrame.to_csv(index=False)`` writes them, written through pyarrow.

``write_csv(frame, path, tuple_columns)`` gives the bytes of pandas' ``to_csv`` (floats
as Python's shortest round-trip ``repr``, NaN as an empty field, tuple columns joined by
spaces) at a fraction of its time on large frames: ints, strings and joined ids go
through pyarrow's CSV writer. A frame it cannot write the same way (odd column names,
strings that need quoting, booleans, nullable or mixed columns) goes to ``to_csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from hybridsched.trace_flat import flatten

_QUOTED = (",", '"', "\n", "\r")


CHUNK_ROWS = 1 << 18  # rows formatted at a time: the writer's memory stays small at any size


def write_csv(frame: pd.DataFrame, path: str | Path, tuple_columns=()) -> None:
    """``frame`` to ``path`` as ``to_csv(index=False)``, ``tuple_columns`` space-joined.

    Rows are written in slices of ``CHUNK_ROWS``; each slice goes through pyarrow when
    every column allows it, else through ``to_csv`` (its rows are the same bytes).
    """
    tuple_columns = [c for c in tuple_columns if c in frame.columns]
    if not _plain_names(frame):
        _to_csv(frame, tuple_columns, path)
        return
    with open(path, "wb") as fh:
        fh.write((",".join(map(str, frame.columns)) + "\n").encode())
        for start in range(0, len(frame), CHUNK_ROWS):
            part = frame.iloc[start : start + CHUNK_ROWS]
            try:
                table = _arrow_table(part, tuple_columns)
            except (TypeError, ValueError, pa.ArrowException):
                table = None
            if table is None:
                _to_csv(part, tuple_columns, fh, header=False)
            else:
                opts = pcsv.WriteOptions(include_header=False, quoting_style="none")
                pcsv.write_csv(table, fh, opts)


def _to_csv(frame: pd.DataFrame, tuple_columns, target, header: bool = True) -> None:
    out = frame.copy() if tuple_columns else frame
    for c in tuple_columns:
        out[c] = [" ".join(map(str, r)) for r in out[c]]
    if isinstance(target, (str, Path)):
        out.to_csv(target, index=False, header=header)
        return
    target.write(out.to_csv(index=False, header=header).encode())


def _plain_names(frame: pd.DataFrame) -> bool:
    """Column names ``to_csv`` writes as they are (no quoting), each once."""
    names = frame.columns
    return names.is_unique and all(
        isinstance(c, str) and not any(x in c for x in _QUOTED) for c in names
    )


def _arrow_table(frame: pd.DataFrame, tuple_columns):
    """The frame as string/int columns formatted as ``to_csv`` would; ``None`` if not possible
    (names are checked by ``write_csv``)."""
    cols = {}
    for c in frame.columns:
        v = frame[c].to_numpy()
        if c in tuple_columns:
            cols[c] = _joined(v)
        elif v.dtype == np.float64:
            cols[c] = _floats(v)
        elif v.dtype.kind in "iu":
            cols[c] = pa.array(v)
        elif v.dtype == object and _plain_strings(v):
            cols[c] = pa.array(v, type=pa.string())
        else:
            return None
    return pa.table(cols)


def _floats(v: np.ndarray) -> pa.Array:
    """Python's ``repr`` of each float, as numpy prints it; NaN as ``to_csv``'s empty field."""
    text = list(map(repr, v.tolist()))
    nan = np.isnan(v)
    if nan.any():
        for k in np.flatnonzero(nan).tolist():
            text[k] = ""
    return pa.array(text, type=pa.string())


def _plain_strings(v: np.ndarray) -> bool:
    uniq = set(v)
    return all(type(x) is str and not any(q in x for q in _QUOTED) and x for x in uniq)


def _joined(v: np.ndarray) -> pa.Array:
    """Tuples of ints, each as its elements joined by single spaces."""
    _, flat = flatten(v)
    lens = np.fromiter(map(len, v), dtype=np.int64, count=len(v))
    off = np.zeros(len(v) + 1, dtype=np.int32 if lens.sum() < 2**31 else np.int64)
    np.cumsum(lens, out=off[1:])
    lst = (pa.ListArray if off.dtype == np.int32 else pa.LargeListArray).from_arrays(
        pa.array(off), pc.cast(pa.array(flat), pa.string())
    )
    return pc.binary_join(lst, " ")
