"""Request tables: load, check and draw them.

A request table is a tidy DataFrame, one row per request, with the columns

==========================  =====  ===============================================
``request_id``              int    the request's id (unique; the row order is the arrival order)
``prompt_tokens``           int    ``s_i >= 1``
``output_tokens``           int    ``o_i >= 1``, the true output length
``predicted_output_tokens`` int    ``ô_i >= 1``, what planners see (default ``o_i``)
``arrival_s``               float  ``r_i >= 0`` (default 0: the whole batch is known at 0)
==========================  =====  ===============================================

and optionally a predicted interval (``hybridsched.predictors``), both columns or neither:

==========================  =====  ===============================================
``predicted_lo_tokens``     int    ``1 <= lo_i <= ô_i``
``predicted_hi_tokens``     int    ``hi_i >= ô_i``
==========================  =====  ===============================================

Every loader returns that schema through ``validate_requests``, so a bad row fails here,
with the column, the value and the row named, and never deep inside the simulator.

Row numbers in messages are **1-based data rows**, the header not counted: "data row 1"
is the table's first row (``iloc[0]``), which a spreadsheet shows on line 2 of a CSV
file. Values are shown plainly (``100.5``, not ``np.float64(100.5)``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hybridsched.paths import data_dir
from hybridsched.workloads.prefixes import check_prefix_columns

# Past about 1e13 s a float clock no longer resolves a millisecond iteration (the spacing
# of doubles there is about 2e-3 s): arrivals beyond it are refused.
MAX_CLOCK_S = 1e13
COLUMNS = ["request_id", "prompt_tokens", "output_tokens", "predicted_output_tokens", "arrival_s"]
_INT_COLUMNS = ["request_id", "prompt_tokens", "output_tokens", "predicted_output_tokens"]
INTERVAL_COLUMNS = ["predicted_lo_tokens", "predicted_hi_tokens"]

GSM8K_CSV = "gsm8k_llama_tokens.csv"
GSM8K_QUESTIONS_CSV = "gsm8k_questions.csv"
PROMPT_TEXT = "prompt_text"  # optional column of a request CSV or DataFrame: the prompt's text

MAX_TOKENS = 10_000_000
"""More tokens than any real request has (a prompt or output above this is rejected)."""

FIT_CONTEXT = ("error", "drop")


def plain(value) -> str:
    """A value as a reader wants it in a message: ``100.5``, ``-3``, ``nan``, ``'abc'``."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value) if isinstance(value, str) else str(value)


def _fail_row(df: pd.DataFrame, mask: np.ndarray, column: str, rule: str) -> None:
    if mask.any():
        pos = int(np.flatnonzero(mask)[0])
        rid = plain(df["request_id"].iloc[pos]) if "request_id" in df.columns else pos + 1
        raise ValueError(
            f"request {rid} (data row {pos + 1}): {column} {rule}, got {plain(df[column].iloc[pos])}"
            + (f" ({int(mask.sum())} bad rows)" if mask.sum() > 1 else "")
        )


def validate_requests(df: pd.DataFrame) -> pd.DataFrame:
    """Return the request table in the canonical schema, or raise naming the first bad value.

    Missing optional columns get their defaults: ids ``0..n-1``, predictions equal to the
    true lengths, arrivals at 0.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"requests: expected a DataFrame, got {type(df).__name__}")
    missing = [c for c in ("prompt_tokens", "output_tokens") if c not in df.columns]
    if missing:
        raise ValueError(
            f"requests: missing column(s) {', '.join(missing)}; have {', '.join(map(str, df.columns))}"
        )
    if len(df) == 0:
        raise ValueError("requests: the table has no rows")
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    out["request_id"] = (
        df["request_id"].to_numpy() if "request_id" in df.columns else np.arange(len(df))
    )
    out["prompt_tokens"] = df["prompt_tokens"].to_numpy()
    out["output_tokens"] = df["output_tokens"].to_numpy()
    if "predicted_output_tokens" in df.columns:
        out["predicted_output_tokens"] = df["predicted_output_tokens"].to_numpy()
    else:
        out["predicted_output_tokens"] = out["output_tokens"]
    out["arrival_s"] = df["arrival_s"].to_numpy() if "arrival_s" in df.columns else 0.0
    have = [c for c in INTERVAL_COLUMNS if c in df.columns]
    if len(have) == 1:
        raise ValueError(
            f"requests: {have[0]} needs its partner column; give both of {INTERVAL_COLUMNS}"
        )
    for col in have:
        out[col] = df[col].to_numpy()

    too_large = f"is too large to be a real request (more than {MAX_TOKENS:,} tokens)"
    for col in _INT_COLUMNS + have:
        if pd.api.types.is_integer_dtype(out[col]) and not pd.api.types.is_bool_dtype(out[col]):
            if col != "request_id" and pd.api.types.is_unsigned_integer_dtype(out[col]):
                _fail_row(out, out[col].to_numpy() > MAX_TOKENS, col, too_large)
            out[col] = out[col].astype(np.int64)  # exact: no detour through float
            continue
        values = pd.to_numeric(out[col], errors="coerce").to_numpy(dtype=float)
        _fail_row(out, ~np.isfinite(values), col, "must be a number")
        _fail_row(out, values != np.round(values), col, "must be an integer")
        if col != "request_id":
            _fail_row(out, values > MAX_TOKENS, col, too_large)
        _fail_row(out, np.abs(values) >= 2.0**62, col, "is out of range")
        out[col] = values.astype(np.int64)
    for col in ("prompt_tokens", "output_tokens", "predicted_output_tokens", *have):
        _fail_row(out, out[col].to_numpy() < 1, col, "must be >= 1")
        _fail_row(out, out[col].to_numpy() > MAX_TOKENS, col, too_large)
    if have:
        point = out["predicted_output_tokens"].to_numpy()
        _fail_row(
            out, out[have[0]].to_numpy() > point, have[0], "must be <= predicted_output_tokens"
        )
        _fail_row(
            out, out[have[1]].to_numpy() < point, have[1], "must be >= predicted_output_tokens"
        )
    _fail_row(out, out["request_id"].to_numpy() < 0, "request_id", "must be >= 0")
    _fail_row(out, out["request_id"].duplicated().to_numpy(), "request_id", "must be unique")
    arr = pd.to_numeric(out["arrival_s"], errors="coerce").to_numpy(dtype=float)
    out["arrival_s"] = arr
    _fail_row(out, ~np.isfinite(arr), "arrival_s", "must be a finite number")
    _fail_row(out, arr < 0, "arrival_s", "must be >= 0")
    _fail_row(
        out, arr > MAX_CLOCK_S, "arrival_s", f"must be <= {MAX_CLOCK_S:g} s (clock precision)"
    )
    check_prefix_columns(out, df, _fail_row)
    return out


def load_requests(
    path: str | Path, max_context: int | None = None, fit_context: str = "error"
) -> pd.DataFrame:
    """Read a request table from CSV (columns as in the module docstring).

    With ``max_context``, requests longer than the context are an error or, with
    ``fit_context="drop"``, dropped (``check_context``; the count is in
    ``attrs["dropped_over_context"]``).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"requests: no such file {path}")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"requests: {path} is not a readable CSV ({str(e).strip()})") from None
    out, dropped = check_context(validate_requests(df), max_context, fit_context)
    if dropped:
        out.attrs["dropped_over_context"] = dropped
    return out


def load_gsm8k(split: str = "test", output_column: str = "model_output_tokens") -> pd.DataFrame:
    """The shipped GSM8K workload: ``s_i`` = zero-shot prompt, ``o_i`` = real model output.

    Request ids are the dataset indices, so subsets keep their identity.
    """
    raw = pd.read_csv(data_dir() / GSM8K_CSV)
    if split not in set(raw["split"]):
        raise ValueError(f"split must be one of {sorted(set(raw['split']))}, got {split!r}")
    raw = raw[raw["split"] == split]
    if output_column not in raw.columns or raw[output_column].isna().any():
        raise ValueError(f"output_column {output_column!r} is not available for split {split!r}")
    return validate_requests(
        pd.DataFrame(
            {
                "request_id": raw["index"].to_numpy(),
                "prompt_tokens": raw["prompt_tokens"].to_numpy(),
                "output_tokens": raw[output_column].to_numpy(),
            }
        )
    )


def gsm8k_questions(split: str = "test") -> pd.Series:
    """The GSM8K question texts of ``split``, indexed by dataset index (= ``request_id``)."""
    raw = pd.read_csv(data_dir() / GSM8K_QUESTIONS_CSV, keep_default_na=False)
    if split not in set(raw["split"]):
        raise ValueError(f"split must be one of {sorted(set(raw['split']))}, got {split!r}")
    raw = raw[raw["split"] == split]
    return pd.Series(raw["question"].to_numpy(), index=raw["index"].to_numpy(), name=PROMPT_TEXT)


def prompt_texts(
    source: pd.DataFrame | str | Path | None, requests: pd.DataFrame
) -> pd.Series | None:
    """The prompt texts of a workload, indexed by ``request_id``, or None if it has none.

    ``source`` is what ``requests`` was made from: None or ``"gsm8k"`` (the shipped GSM8K
    test split), another named workload (no texts), or a DataFrame or CSV path with an
    optional ``prompt_text`` column (``requests`` is its validated table, same rows).
    """
    if source is None or (isinstance(source, str) and source == "gsm8k"):
        return gsm8k_questions("test")
    if not isinstance(source, pd.DataFrame) and not Path(source).is_file():
        return None  # a named trace: lengths and arrival times only
    raw = source if isinstance(source, pd.DataFrame) else pd.read_csv(source, keep_default_na=False)
    if PROMPT_TEXT not in raw.columns:
        return None
    return pd.Series(
        raw[PROMPT_TEXT].astype(str).to_numpy(),
        index=requests["request_id"].to_numpy(),
        name=PROMPT_TEXT,
    )


def sample_requests(requests: pd.DataFrame, num_requests: int, seed: int) -> pd.DataFrame:
    """Draw ``num_requests`` rows without replacement with ``seed``, kept in dataset order.

    The order matters: round-robin dispatch follows it (docs/model.md section 10).
    """
    if not 1 <= num_requests <= len(requests):
        raise ValueError(f"num_requests must be in 1..{len(requests)}, got {num_requests}")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(requests), size=num_requests, replace=False))
    return requests.iloc[rows].reset_index(drop=True)


def with_predictions(requests: pd.DataFrame, sigma: float, seed: int) -> pd.DataFrame:
    """Predicted lengths with multiplicative lognormal error (an extension: output-length uncertainty)."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    rng = np.random.default_rng(seed)
    noisy = requests["output_tokens"].to_numpy() * rng.lognormal(0.0, sigma, len(requests))
    return requests.assign(predicted_output_tokens=np.maximum(1, np.round(noisy)).astype(np.int64))


def check_context(
    requests: pd.DataFrame, max_context: int | None, fit: str = "error"
) -> tuple[pd.DataFrame, int]:
    """Requests that fit a model's context window: ``prompt_tokens + output_tokens <= max_context``.

    ``fit="error"`` raises naming the first request that does not fit (its id, its 1-based
    data row in ``requests``, its lengths) and how many do not; ``fit="drop"`` removes them.
    Returns the table (rows in order, index reset) and the number of requests dropped.
    ``max_context=None`` checks nothing.
    """
    if fit not in FIT_CONTEXT:
        raise ValueError(f"fit_context must be one of {', '.join(FIT_CONTEXT)}, got {fit!r}")
    if max_context is None:
        return requests, 0
    if isinstance(max_context, bool) or not isinstance(max_context, (int, np.integer)):
        raise ValueError(f"max_context must be an integer >= 1, got {plain(max_context)}")
    if max_context < 1:
        raise ValueError(f"max_context must be an integer >= 1, got {plain(max_context)}")
    s = requests["prompt_tokens"].to_numpy(np.int64)
    o = requests["output_tokens"].to_numpy(np.int64)
    bad = s + o > int(max_context)
    if not bad.any():
        return requests, 0
    if fit == "drop":
        return requests.loc[~bad].reset_index(drop=True), int(bad.sum())
    pos = int(np.flatnonzero(bad)[0])
    rid = plain(requests["request_id"].iloc[pos]) if "request_id" in requests.columns else pos + 1
    raise ValueError(
        f"request {rid} (data row {pos + 1}): prompt_tokens + output_tokens = "
        f"{plain(s[pos])} + {plain(o[pos])} = {plain(s[pos] + o[pos])} exceeds the model's "
        f"context of {plain(max_context)} tokens ({int(bad.sum())} of {len(bad)} requests do; "
        "fit_context='drop' drops them)"
    )
