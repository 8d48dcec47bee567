"""The fast CSV writer gives the bytes of pandas' to_csv, or falls back to it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hybridsched.trace.csv_writer import (
    _ARROW_FLOATS,
    _arrow_floats_agree,
    _arrow_table,
    _floats,
    write_csv,
)


def _frame(n: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.random(n) * 10.0 ** rng.integers(-7, 17, n)
    x[::7] = np.nan
    x[1::11] = np.round(x[1::11])  # integral floats print as 3.0
    return pd.DataFrame(
        {
            "request_id": np.arange(n),
            "arrival_s": x,
            "ttft_s": np.where(np.arange(n) % 5 == 0, np.nan, rng.random(n)),
            "neg": -rng.random(n),
            "inf": np.where(np.arange(n) % 9 == 0, np.inf, 1.5),
            "client": rng.integers(0, 64, n).astype(np.int32),
            "method": np.where(np.arange(n) % 2 == 0, "lpt", "small batch").astype(object),
        }
    )


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"method": "solver failed: ValueError: a, b"},  # needs quoting: to_csv's path
        {"flag": True},  # booleans: to_csv's path
        {"f32": np.float32(0.1)},  # float32 prints differently: to_csv's path
        {"method": ""},  # an empty string: to_csv's path
    ],
)
def test_bytes_are_those_of_to_csv(tmp_path, change):
    df = _frame().assign(**change)
    write_csv(df, tmp_path / "fast.csv")
    df.to_csv(tmp_path / "ref.csv", index=False)
    assert (tmp_path / "fast.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()


def test_fast_path_is_taken_for_plain_frames():
    """The plain frame goes through pyarrow (else the writer buys nothing)."""
    assert _arrow_table(_frame(), ()) is not None
    assert _arrow_table(_frame().assign(flag=True), ()) is None


def test_empty_frame(tmp_path):
    df = _frame().iloc[:0]
    write_csv(df, tmp_path / "fast.csv")
    df.to_csv(tmp_path / "ref.csv", index=False)
    assert (tmp_path / "fast.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()


def test_chunks_are_byte_identical_including_a_fallback_chunk(tmp_path, monkeypatch):
    """Tests that writing in slices changes no byte, also when one slice must go through
    to_csv (a string that needs quoting) and the others through pyarrow."""
    import hybridsched.trace.csv_writer as cw

    monkeypatch.setattr(cw, "CHUNK_ROWS", 64)
    df = _frame(n=300)
    df.loc[150, "method"] = "needs, quoting"
    write_csv(df, tmp_path / "fast.csv")
    df.to_csv(tmp_path / "ref.csv", index=False)
    assert (tmp_path / "fast.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()


def test_tuple_columns_in_chunks(tmp_path, monkeypatch):
    """Tests that tuple columns are space-joined the same in every slice (empty tuples too)."""
    import hybridsched.trace.csv_writer as cw

    monkeypatch.setattr(cw, "CHUNK_ROWS", 7)
    ids = [tuple(range(k % 5)) for k in range(40)]
    df = pd.DataFrame({"k": np.arange(40), "ids": ids, "t": np.linspace(0, 1, 40)})
    write_csv(df, tmp_path / "fast.csv", ["ids"])
    ref = df.assign(ids=[" ".join(map(str, r)) for r in ids])
    ref.to_csv(tmp_path / "ref.csv", index=False)
    assert (tmp_path / "fast.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()
    assert df["ids"].tolist() == ids  # the caller's frame is untouched


def test_flat_elements_give_the_bytes_of_the_tuples(tmp_path, monkeypatch):
    """Tests that a column written from its flat elements (as the engine keeps request ids)
    has the bytes of the same column written from its tuples, in every slice."""
    import hybridsched.trace.csv_writer as cw

    monkeypatch.setattr(cw, "CHUNK_ROWS", 7)
    ids = [tuple(range(k, k + k % 5)) for k in range(40)]
    df = pd.DataFrame({"k": np.arange(40), "ids": ids, "t": np.linspace(0, 1, 40)})
    flat = np.array([x for r in ids for x in r], dtype=np.int64)
    write_csv(df, tmp_path / "flat.csv", ["ids"], flat={"ids": flat})
    write_csv(df, tmp_path / "tuples.csv", ["ids"])
    assert (tmp_path / "flat.csv").read_bytes() == (tmp_path / "tuples.csv").read_bytes()


def test_flat_elements_that_do_not_match_the_column_are_refused(tmp_path):
    ids = [(1, 2), (3,), ()]
    df = pd.DataFrame({"ids": ids})
    with pytest.raises(ValueError, match="ids: 2 flat elements for 3"):
        write_csv(df, tmp_path / "x.csv", ["ids"], flat={"ids": np.array([1, 2])})


def _repr_text(v: np.ndarray) -> list[str]:
    return ["" if np.isnan(x) else repr(x) for x in v.tolist()]


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 60), elements=st.floats(allow_subnormal=True)))
def test_floats_are_repr_text_anywhere(v):
    """Tests that any doubles (NaN, infinities, zeros, subnormals, huge) are written as
    repr writes them, whichever path the column takes."""
    assert _floats(v).to_pylist() == _repr_text(v)


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.integers(1, 60),
        elements=st.one_of(
            st.floats(_ARROW_FLOATS[0], _ARROW_FLOATS[1], exclude_max=True),
            st.floats(-_ARROW_FLOATS[1], -_ARROW_FLOATS[0], exclude_min=True),
            st.integers(-(10**9), 10**9).map(float),
            st.sampled_from([0.0, -0.0, np.nan, np.inf, -np.inf]),
        ),
    )
)
def test_floats_in_the_arrow_range_are_repr_text(v):
    """Tests the pyarrow path itself (every value in its range): repr's text, '.0' on
    integral values, NaN empty."""
    assert _floats(v).to_pylist() == _repr_text(v)


def test_this_pyarrow_takes_the_fast_float_path():
    """The shipped pyarrow writes repr's text in the range (else every float column would
    fall back to repr one by one: correct, and slow)."""
    assert _arrow_floats_agree()
