"""The fast CSV writer gives the bytes of pandas' to_csv, or falls back to it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridsched.csv_writer import _arrow_table, write_csv


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
    import hybridsched.csv_writer as cw

    monkeypatch.setattr(cw, "CHUNK_ROWS", 64)
    df = _frame(n=300)
    df.loc[150, "method"] = "needs, quoting"
    write_csv(df, tmp_path / "fast.csv")
    df.to_csv(tmp_path / "ref.csv", index=False)
    assert (tmp_path / "fast.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()


def test_tuple_columns_in_chunks(tmp_path, monkeypatch):
    """Tests that tuple columns are space-joined the same in every slice (empty tuples too)."""
    import hybridsched.csv_writer as cw

    monkeypatch.setattr(cw, "CHUNK_ROWS", 7)
    ids = [tuple(range(k % 5)) for k in range(40)]
    df = pd.DataFrame({"k": np.arange(40), "ids": ids, "t": np.linspace(0, 1, 40)})
    write_csv(df, tmp_path / "fast.csv", ["ids"])
    ref = df.assign(ids=[" ".join(map(str, r)) for r in ids])
    ref.to_csv(tmp_path / "ref.csv", index=False)
    assert (tmp_path / "fast.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()
    assert df["ids"].tolist() == ids  # the caller's frame is untouched
