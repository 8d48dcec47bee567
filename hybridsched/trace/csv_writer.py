"""CSV files as ``DataFrame.to_csv(index=False)`` writes them, written through pyarrow.

``write_csv(frame, path, tuple_columns)`` gives the bytes of pandas' ``to_csv`` (floats
as Python's shortest round-trip ``repr``, NaN as an empty field, tuple columns joined by
spaces) at a fraction of its time on large frames: ints, strings and joined ids go
through pyarrow's CSV writer. A frame it cannot write the same way (odd column names,
strings that need quoting, booleans, nullable or mixed columns) goes to ``to_csv``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from hybridsched.trace.flat import flatten

_QUOTED = (",", '"', "\n", "\r")


CHUNK_ROWS = 1 << 18  # rows formatted at a time: the writer's memory stays small at any size


def write_csv(frame: pd.DataFrame, path: str | Path, tuple_columns=(), flat=None) -> None:
    """``frame`` to ``path`` as ``to_csv(index=False)``, ``tuple_columns`` space-joined.

    Rows are written in slices of ``CHUNK_ROWS``; each slice goes through pyarrow when
    every column allows it, else through ``to_csv`` (its rows are the same bytes).
    ``flat`` maps a tuple column to its elements one after the other in row order (as
    a writer kept them), read instead of the tuples; their count is checked per row.
    """
    tuple_columns = [c for c in tuple_columns if c in frame.columns]
    if not _plain_names(frame):
        _to_csv(frame, tuple_columns, path)
        return
    offsets = {c: _offsets(frame[c], v, c) for c, v in (flat or {}).items() if c in tuple_columns}
    with open(path, "wb") as fh:
        fh.write((",".join(map(str, frame.columns)) + "\n").encode())
        for start in range(0, len(frame), CHUNK_ROWS):
            part = frame.iloc[start : start + CHUNK_ROWS]
            given = {}
            for c, off in offsets.items():
                o = off[start : start + CHUNK_ROWS + 1]
                given[c] = (o - o[0], flat[c][o[0] : o[-1]])
            try:
                table = _arrow_table(part, tuple_columns, given)
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


def _offsets(col: pd.Series, flat: np.ndarray, name: str) -> np.ndarray:
    """Where each row's elements start in ``flat`` (and the end): from the tuples' lengths."""
    vals = col.to_numpy()
    off = np.zeros(len(vals) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, vals), dtype=np.int64, count=len(vals)), out=off[1:])
    if off[-1] != len(flat):
        raise ValueError(f"{name}: {len(flat)} flat elements for {int(off[-1])} in the column")
    return off


def _arrow_table(frame: pd.DataFrame, tuple_columns, given=None):
    """The frame as string/int columns formatted as ``to_csv`` would; ``None`` if not possible
    (names are checked by ``write_csv``). ``given``: column -> (offsets, elements)."""
    cols = {}
    for c in frame.columns:
        v = frame[c].to_numpy()
        if given and c in given:
            cols[c] = _joined_flat(*given[c])
        elif c in tuple_columns:
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


# Where pyarrow's float-to-string cast writes what Python's repr writes: the same
# shortest round-trip digits, positional, for 1e-4 <= |x| < 1e10 (outside it the two
# switch to exponents at other places), except that repr ends integral values in ".0".
_ARROW_FLOATS = (1e-4, 1e10)


def _floats(v: np.ndarray) -> pa.Array:
    """Python's ``repr`` of each float, as numpy prints it; NaN as ``to_csv``'s empty field.

    Through pyarrow's cast where this pyarrow passes ``_arrow_floats_agree`` (checked
    once); values outside ``_ARROW_FLOATS`` (and every value, if it does not) through
    ``repr`` one by one.
    """
    nan = np.isnan(v)
    if not _arrow_floats_agree():
        text = list(map(repr, v.tolist()))
        for k in np.flatnonzero(nan).tolist():
            text[k] = ""
        return pa.array(text, type=pa.string())
    finite = np.isfinite(v)
    text = _arrow_floats(v, nan, finite)
    mag = np.abs(v)
    lo, hi = _ARROW_FLOATS
    odd = finite & (mag != 0) & ((mag < lo) | (mag >= hi))
    if odd.any():
        exact = pa.array(list(map(repr, v[odd].tolist())), type=pa.string())
        text = pc.replace_with_mask(text, pa.array(odd), exact)
    return text


def _arrow_floats(v: np.ndarray, nan: np.ndarray, finite: np.ndarray) -> pa.Array:
    text = pc.cast(pa.array(v), pa.string())
    integral = finite & (v == np.floor(v))
    if integral.any():
        dot0 = pc.binary_join_element_wise(text, pa.scalar(".0"), pa.scalar(""))
        text = pc.if_else(pa.array(integral), dot0, text)
    if nan.any():
        text = pc.if_else(pa.array(nan), pa.scalar(""), text)
    return text


@functools.cache
def _arrow_floats_agree() -> bool:
    """This pyarrow writes ``repr``'s text on a probe of the range (its edges, integral,
    negative, zero and infinite values, and random ones); else the writer uses ``repr``."""
    rng = np.random.default_rng(0)
    lo, hi = _ARROW_FLOATS
    probe = np.concatenate(
        [
            [lo, -lo, np.nextafter(hi, 0), 0.0, -0.0, 1.0, -3.0, 2.5, 0.1, 0.3, 1 / 3, np.inf],
            [-np.inf, 123456789.0, 9999999999.999998, 0.00012345678901234567],
            10.0 ** rng.uniform(np.log10(lo), np.log10(hi), 4000) * rng.choice([-1, 1], 4000),
            np.round(rng.uniform(0, 1e6, 500), 3),
        ]
    )
    try:
        got = _arrow_floats(probe, np.isnan(probe), np.isfinite(probe)).to_pylist()
    except pa.ArrowException:
        return False
    return got == list(map(repr, probe.tolist()))


def _plain_strings(v: np.ndarray) -> bool:
    uniq = set(v)
    return all(type(x) is str and not any(q in x for q in _QUOTED) and x for x in uniq)


def _joined(v: np.ndarray) -> pa.Array:
    """Tuples of ints, each as its elements joined by single spaces."""
    _, flat = flatten(v)
    off = np.zeros(len(v) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, v), dtype=np.int64, count=len(v)), out=off[1:])
    return _joined_flat(off, flat)


def _joined_flat(off: np.ndarray, flat: np.ndarray) -> pa.Array:
    """Rows ``flat[off[k]:off[k + 1]]``, each as its elements joined by single spaces."""
    off = off.astype(np.int32 if off[-1] < 2**31 else np.int64)
    lst = (pa.ListArray if off.dtype == np.int32 else pa.LargeListArray).from_arrays(
        pa.array(off), pc.cast(pa.array(flat), pa.string())
    )
    return pc.binary_join(lst, " ")
