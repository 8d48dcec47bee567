"""Tests for hybridsched.data: loading, validating and sampling request tables."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridsched.workloads.requests import (
    COLUMNS,
    check_context,
    load_gsm8k,
    load_requests,
    sample_requests,
    validate_requests,
)


@pytest.fixture(scope="module")
def gsm8k() -> pd.DataFrame:
    """The full GSM8K test split (1,319 requests)."""
    return load_gsm8k()


def three_requests(**overrides) -> pd.DataFrame:
    """A valid three-row request table; ``overrides`` replace whole columns."""
    cols = {
        "request_id": [10, 11, 12],
        "prompt_tokens": [5, 6, 7],
        "output_tokens": [3, 4, 5],
        "arrival_s": [0.0, 0.5, 1.0],
    }
    cols.update(overrides)
    return pd.DataFrame(cols)


# --------------------------------------------------------------------------------------
# GSM8K
# --------------------------------------------------------------------------------------


def test_gsm8k_size_and_means(gsm8k):
    """Tests that the GSM8K test split has 1,319 requests with the documented means
    (prompt 73.4 tokens, output 139.3 tokens, within 0.05)."""
    assert len(gsm8k) == 1319
    assert gsm8k["prompt_tokens"].mean() == pytest.approx(73.4, abs=0.05)
    assert gsm8k["output_tokens"].mean() == pytest.approx(139.3, abs=0.05)


def test_gsm8k_schema_and_defaults(gsm8k):
    """Tests that GSM8K comes back in the canonical schema: dataset indices 0..1318 as
    unique ids in order, predictions equal to the true lengths, every arrival at 0."""
    assert list(gsm8k.columns) == COLUMNS
    assert gsm8k["request_id"].tolist() == list(range(1319))
    assert (gsm8k["predicted_output_tokens"] == gsm8k["output_tokens"]).all()
    assert (gsm8k["arrival_s"] == 0.0).all()
    assert (gsm8k["prompt_tokens"] >= 1).all() and (gsm8k["output_tokens"] >= 1).all()
    for col in ("request_id", "prompt_tokens", "output_tokens", "predicted_output_tokens"):
        assert gsm8k[col].dtype == np.int64, col


def test_gsm8k_unknown_split_and_column():
    """Tests that an unknown split or output column raises ValueError naming it."""
    with pytest.raises(ValueError, match="split"):
        load_gsm8k(split="nope")
    with pytest.raises(ValueError, match="output_column"):
        load_gsm8k(output_column="no_such_column")


# --------------------------------------------------------------------------------------
# validate_requests
# --------------------------------------------------------------------------------------


def test_validate_fills_defaults():
    """Tests that a table with only prompt and output lengths gets ids 0..n-1, predictions
    equal to the outputs, arrivals at 0.0 and the canonical column order and dtypes."""
    out = validate_requests(pd.DataFrame({"output_tokens": [4, 2, 9], "prompt_tokens": [1, 8, 3]}))
    assert list(out.columns) == COLUMNS
    assert out["request_id"].tolist() == [0, 1, 2]
    assert out["prompt_tokens"].tolist() == [1, 8, 3]
    assert out["output_tokens"].tolist() == [4, 2, 9]
    assert out["predicted_output_tokens"].tolist() == [4, 2, 9]
    assert out["arrival_s"].tolist() == [0.0, 0.0, 0.0]
    assert out["arrival_s"].dtype == np.float64
    assert out["prompt_tokens"].dtype == np.int64


def test_validate_keeps_given_columns_and_integral_floats():
    """Tests that given ids, predictions and arrivals are kept, and that integral floats
    (3.0) are accepted and converted to int64."""
    df = three_requests(prompt_tokens=[5.0, 6.0, 7.0], predicted_output_tokens=[1, 2, 3])
    out = validate_requests(df)
    assert out["request_id"].tolist() == [10, 11, 12]
    assert out["prompt_tokens"].tolist() == [5, 6, 7]
    assert out["prompt_tokens"].dtype == np.int64
    assert out["predicted_output_tokens"].tolist() == [1, 2, 3]
    assert out["arrival_s"].tolist() == [0.0, 0.5, 1.0]


def test_validate_does_not_mutate_input():
    """Tests that validating a table leaves the caller's DataFrame unchanged."""
    df = pd.DataFrame({"prompt_tokens": [5.0, 6.0], "output_tokens": [1, 2]})
    before = df.copy()
    validate_requests(df)
    pd.testing.assert_frame_equal(df, before)


BAD_VALUES = [
    # (column, row 1 value, text that must appear in the message)
    ("prompt_tokens", -3, "-3"),
    ("prompt_tokens", 0, "0"),
    ("output_tokens", -1, "-1"),
    ("output_tokens", 0, "0"),
    ("predicted_output_tokens", 0, "0"),
    ("prompt_tokens", 2.5, "2.5"),
    ("output_tokens", 2.5, "2.5"),
    ("prompt_tokens", float("nan"), "nan"),
    ("output_tokens", float("nan"), "nan"),
    ("prompt_tokens", float("inf"), "inf"),
    ("prompt_tokens", "abc", "abc"),
    ("arrival_s", -1.0, "-1.0"),
    ("arrival_s", float("nan"), "nan"),
    ("arrival_s", float("inf"), "inf"),
    ("request_id", -4, "-4"),
]


@pytest.mark.parametrize(("column", "value", "shown"), BAD_VALUES)
def test_validate_bad_value_names_field_value_and_row(column, value, shown):
    """Tests that a bad value in the second row raises ValueError naming the column, the
    row as 1-based data row 2, and the value shown plainly (no numpy repr)."""
    base = three_requests(predicted_output_tokens=[3, 4, 5])
    col = base[column].astype(object).tolist()
    col[1] = value
    df = base.assign(**{column: col})
    with pytest.raises(ValueError) as info:
        validate_requests(df)
    msg = str(info.value)
    assert column in msg
    assert "(data row 2)" in msg
    assert shown in msg.split("got", 1)[1]
    assert "np." not in msg


def test_validate_duplicate_request_id():
    """Tests that a repeated request_id raises ValueError naming request_id, the repeated
    id and the row of the second occurrence."""
    with pytest.raises(ValueError, match=r"request 10 \(data row 3\): request_id must be unique"):
        validate_requests(three_requests(request_id=[10, 11, 10]))


def test_validate_reports_first_bad_row_and_count():
    """Tests that with several bad rows the message names the first one and the count."""
    with pytest.raises(ValueError, match=r"\(data row 1\).*prompt_tokens.*\(2 bad rows\)"):
        validate_requests(three_requests(prompt_tokens=[0, 6, -1]))


@pytest.mark.parametrize(
    "drop", [["prompt_tokens"], ["output_tokens"], ["prompt_tokens", "output_tokens"]]
)
def test_validate_missing_columns(drop):
    """Tests that a table without a required column raises ValueError naming it."""
    df = three_requests().drop(columns=drop)
    with pytest.raises(ValueError, match="missing column") as info:
        validate_requests(df)
    for c in drop:
        assert c in str(info.value)


def test_validate_rejects_empty_and_non_frames():
    """Tests that an empty table and a non-DataFrame raise ValueError."""
    with pytest.raises(ValueError, match="no rows"):
        validate_requests(pd.DataFrame({"prompt_tokens": [], "output_tokens": []}))
    with pytest.raises(ValueError, match="DataFrame"):
        validate_requests({"prompt_tokens": [1], "output_tokens": [1]})


def test_validate_keeps_large_request_ids_exact():
    """Tests that large integer request ids (above 2**53) survive validation unchanged."""
    ids = [2**53, 2**53 + 1]
    out = validate_requests(
        pd.DataFrame({"request_id": ids, "prompt_tokens": [1, 2], "output_tokens": [1, 1]})
    )
    assert out["request_id"].tolist() == ids


# --------------------------------------------------------------------------------------
# load_requests
# --------------------------------------------------------------------------------------


def test_load_requests_round_trip(tmp_path):
    """Tests that a request table written to CSV loads back identical."""
    df = validate_requests(three_requests())
    path = tmp_path / "req.csv"
    df.to_csv(path, index=False)
    pd.testing.assert_frame_equal(load_requests(path), df)


def test_load_requests_bad_row_in_file(tmp_path):
    """Tests that a CSV with a bad value fails in the loader, naming column, row and value."""
    path = tmp_path / "req.csv"
    path.write_text("prompt_tokens,output_tokens\n5,3\n7,-2\n")
    with pytest.raises(ValueError, match=r"\(data row 2\): output_tokens must be >= 1, got -2$"):
        load_requests(path)


@pytest.mark.parametrize(
    "payload",
    [
        bytes(range(256)) * 4,
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"prompt_tokens,output_tokens\n1,2\n3,4,5,6\n",
        b"",
        b"just some words\nwith no columns we know\n",
        b"prompt_tokens,output_tokens\n",
    ],
    ids=["binary", "png", "ragged", "empty", "wrong-columns", "header-only"],
)
def test_load_requests_malformed_file(tmp_path, payload):
    """Tests that a malformed file (binary, ragged, empty, wrong columns, no rows) raises
    ValueError, never a parser-specific exception."""
    path = tmp_path / "bad.csv"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match="requests"):
        load_requests(path)


def test_load_requests_missing_file(tmp_path):
    """Tests that a missing file raises ValueError naming the path."""
    path = tmp_path / "nope.csv"
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_requests(path)


@settings(max_examples=30)
@given(st.text(alphabet='0123456789.,-\n"ab ', max_size=80))
def test_load_requests_fuzz_raises_only_value_error(tmp_path_factory, body):
    """Tests that any text under a valid header either loads as a valid table or raises
    ValueError (no other exception type escapes the loader)."""
    path = tmp_path_factory.mktemp("fuzz") / "req.csv"
    path.write_text("prompt_tokens,output_tokens\n" + body)
    try:
        out = load_requests(path)
    except ValueError:
        return
    assert list(out.columns) == COLUMNS
    assert (out["prompt_tokens"] >= 1).all() and (out["output_tokens"] >= 1).all()


# --------------------------------------------------------------------------------------
# sample_requests
# --------------------------------------------------------------------------------------


def test_sample_deterministic_by_seed(gsm8k):
    """Tests that the same seed draws the same rows and different seeds draw different ones."""
    a = sample_requests(gsm8k, 1000, seed=1)
    b = sample_requests(gsm8k, 1000, seed=1)
    c = sample_requests(gsm8k, 1000, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert a["request_id"].tolist() != c["request_id"].tolist()


@pytest.mark.parametrize("seed", [1, 7, 100])
def test_sample_keeps_order_without_duplicates(gsm8k, seed):
    """Tests that a sample has the requested size, no repeated request, ascending dataset
    order, a fresh 0..n-1 index, and rows equal to the source rows."""
    s = sample_requests(gsm8k, 1000, seed=seed)
    ids = s["request_id"].to_numpy()
    assert len(s) == 1000
    assert len(np.unique(ids)) == 1000
    assert (np.diff(ids) > 0).all()
    assert s.index.tolist() == list(range(1000))
    src = gsm8k.set_index("request_id").loc[ids].reset_index()
    pd.testing.assert_frame_equal(s[COLUMNS], src[COLUMNS])


def test_sample_matches_numpy_choice(gsm8k):
    """Tests that the sample is the sorted draw of numpy's default_rng(seed).choice without
    replacement (the documented recipe, so results are reproducible outside the package)."""
    rows = np.sort(np.random.default_rng(5).choice(len(gsm8k), size=10, replace=False))
    assert (
        sample_requests(gsm8k, 10, seed=5)["request_id"].tolist()
        == gsm8k["request_id"].iloc[rows].tolist()
    )


@pytest.mark.parametrize("n", [0, -1, 1320])
def test_sample_size_out_of_range(gsm8k, n):
    """Tests that asking for 0, a negative number or more rows than exist raises ValueError."""
    with pytest.raises(ValueError, match="num_requests"):
        sample_requests(gsm8k, n, seed=0)


# --------------------------------------------------------------------------------------
# predicted intervals
# --------------------------------------------------------------------------------------


def test_validate_keeps_an_ordered_interval():
    """Tests that predicted_lo/hi_tokens are kept (int64) when both are given, and that
    a table without them keeps the canonical columns."""
    df = three_requests(
        predicted_output_tokens=[3, 4, 5],
        predicted_lo_tokens=[1, 4, 2.0],
        predicted_hi_tokens=[3, 9, 5],
    )
    out = validate_requests(df)
    assert list(out.columns) == COLUMNS + ["predicted_lo_tokens", "predicted_hi_tokens"]
    assert out["predicted_lo_tokens"].tolist() == [1, 4, 2]
    assert out["predicted_lo_tokens"].dtype == np.int64
    assert list(validate_requests(three_requests()).columns) == COLUMNS


@pytest.mark.parametrize(
    ("lo", "hi", "message"),
    [
        (
            [1, 5, 2],
            [3, 9, 5],
            "request 11 (data row 2): predicted_lo_tokens must be <= predicted_output_tokens, got 5",
        ),
        (
            [1, 4, 2],
            [3, 3, 5],
            "request 11 (data row 2): predicted_hi_tokens must be >= predicted_output_tokens, got 3",
        ),
        ([1, 0, 2], [3, 9, 5], "request 11 (data row 2): predicted_lo_tokens must be >= 1, got 0"),
        ([1, 2.5, 2], [3, 9, 5], "predicted_lo_tokens must be an integer"),
        ([1, 4, 2], None, "predicted_lo_tokens needs its partner column"),
    ],
)
def test_validate_bad_interval_names_column_row_and_value(lo, hi, message):
    """Tests that a disordered, non-positive, fractional or half-given interval raises
    ValueError naming the column, the row and the value."""
    cols = {"predicted_output_tokens": [3, 4, 5], "predicted_lo_tokens": lo}
    if hi is not None:
        cols["predicted_hi_tokens"] = hi
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_requests(three_requests(**cols))


def test_make_instance_checks_the_models_context():
    """Tests that an 8,000-token prompt is refused on LLaMA-65B (2,048-token context)."""
    from hybridsched.instance import Cluster, make_instance

    req = pd.DataFrame({"prompt_tokens": [8000], "output_tokens": [10]})
    with pytest.raises(ValueError, match="context of 2048 tokens"):
        make_instance(req, Cluster())


# --------------------------------------------------------------------------------------
# Token counts too large to be real; check_context
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["prompt_tokens", "output_tokens", "predicted_output_tokens"])
@pytest.mark.parametrize("value", [9_200_000_000_000_000_000, 10_000_001, 1e30])
def test_validate_rejects_token_counts_too_large_to_be_real(column, value):
    """Tests that a token count above 10,000,000 (a 9.2e18 prompt used to overflow into a
    negative KV reservation) is rejected naming the column, the data row and the value."""
    df = three_requests(predicted_output_tokens=[3, 4, 5])
    df[column] = df[column].astype(object)
    df.loc[2, column] = value
    with pytest.raises(ValueError, match=rf"\(data row 3\): {column} is too large to be a real"):
        validate_requests(df)


def test_validate_accepts_the_largest_real_count():
    """Tests that exactly 10,000,000 tokens is still accepted (the limit is inclusive)."""
    df = validate_requests(three_requests(prompt_tokens=[10_000_000, 6, 7]))
    assert df["prompt_tokens"].iloc[0] == 10_000_000


def test_messages_show_plain_numpy_values():
    """Tests that numpy scalars appear as plain numbers in messages (100.5, not np.float64(100.5))."""
    df = three_requests(prompt_tokens=np.array([5.0, 100.5, 7.0]))
    with pytest.raises(ValueError, match=r"must be an integer, got 100\.5$"):
        validate_requests(df)


def test_check_context_error_and_drop():
    """Tests that check_context passes fitting tables through, names the first request over
    the context with its 1-based data row and lengths, and drops them with fit='drop'."""
    df = validate_requests(three_requests(prompt_tokens=[5, 60, 70], output_tokens=[3, 4, 5]))
    same, n = check_context(df, 75)
    assert n == 0 and same is df
    with pytest.raises(ValueError, match=r"request 12 \(data row 3\).*70 \+ 5 = 75.*of 74 tokens"):
        check_context(df, 74)
    kept, n = check_context(df, 63, fit="drop")
    assert n == 2 and kept["request_id"].tolist() == [10]
    kept, n = check_context(df, 64, fit="drop")  # 60 + 4 = 64 fits exactly
    assert n == 1 and kept["request_id"].tolist() == [10, 11]
    same, n = check_context(df, None, fit="error")
    assert same is df and n == 0


@pytest.mark.parametrize(
    ("max_context", "fit", "field"),
    [(0, "error", "max_context"), (2.5, "error", "max_context"), (100, "clip", "fit_context")],
)
def test_check_context_bad_arguments(max_context, fit, field):
    """Tests that a non-positive or non-integer context, or an unknown fit, is an error naming it."""
    with pytest.raises(ValueError, match=field):
        check_context(validate_requests(three_requests()), max_context, fit)
