"""Workloads: one way to name a request table everywhere (CLI ``--workload``, notebooks, Python).

A workload is a shipped name (``WORKLOADS``) or a file path. Files are read in one of
``FORMATS`` (detected from the columns, or given), then shaped by the same options on
every path (docs/model.md, "Workloads"):

- ``window=(START, END)`` keeps the requests with ``START <= t < END`` seconds, ``t``
  measured from the trace's origin (Azure: its first timestamp; every other format: its
  own zero), and rebases them so that ``START`` is 0;
- ``rate_scale=X`` divides every arrival time by ``X`` (every inter-arrival gap and the
  span shrink by ``X``: the same requests at ``X`` times the load);
- ``fit_context="drop"`` drops the requests with ``prompt_tokens + output_tokens >
  max_context``; the default ``"error"`` rejects them (``data.check_context``);
- ``max_requests=N`` keeps the first ``N`` requests in arrival order (after the drop);
- ``arrivals`` replaces the trace's arrival times by an arrival process
  (``arrivals.apply_arrivals``: ``table`` keeps them, ``zero``, ``poisson:RATE``,
  ``gamma:RATE,CV``), seeded by ``seed``, keeping the trace's lengths and order.

``gsm8k`` is the paper's workload: the GSM8K test split with every request at 0 (the
whole batch known up front) unless an arrival process is given. Trace requests get ids
``0..n-1``: their 0-based row in the source file. The result is the canonical request
table (``data.COLUMNS``); what was loaded, with which options, and how many requests
were dropped is in ``df.attrs["workload"]`` (``workload_info``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hybridsched.arrivals import apply_arrivals, parse_arrivals
from hybridsched.data import (
    FIT_CONTEXT,
    check_context,
    load_gsm8k,
    plain,
    validate_requests,
)
from hybridsched.paths import data_dir


@dataclass(frozen=True)
class Workload:
    """A shipped workload: its file under ``data/`` (``None``: GSM8K) and where it comes from."""

    name: str
    description: str
    source: str
    licence: str
    file: str | None = None
    format: str | None = None


SPLITWISE = (
    "Patel et al., Splitwise: Efficient generative LLM inference using phase splitting, ISCA 2024"
)
WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "gsm8k",
            "GSM8K test split, 1,319 math questions, all arriving at 0 (the paper's workload)",
            "Cobbe et al. 2021, GSM8K; LLaMA token counts (data/gsm8k_llama_tokens.csv)",
            "MIT",
        ),
        Workload(
            "azure-code",
            "Azure LLM inference trace 2023, code: 8,819 requests over 57 min (2.6 req/s)",
            f"Azure Public Dataset, AzureLLMInferenceTrace_code; {SPLITWISE}",
            "CC-BY-4.0",
            "traces/azure_llm_2023_code.csv",
            "azure",
        ),
        Workload(
            "azure-conv",
            "Azure LLM inference trace 2023, conversation: 19,366 requests over 58 min (5.5 req/s)",
            f"Azure Public Dataset, AzureLLMInferenceTrace_conv; {SPLITWISE}",
            "CC-BY-4.0",
            "traces/azure_llm_2023_conv.csv",
            "azure",
        ),
        Workload(
            "mooncake-conv",
            "Mooncake conversation trace: 12,031 requests over 59 min (3.4 req/s), long prompts",
            "Qin et al., Mooncake: A KVCache-centric Disaggregated Architecture for LLM "
            "Serving, FAST 2025 (FAST25-release/traces/conversation_trace.jsonl)",
            "Apache-2.0",
            "traces/mooncake_conversation_trace.jsonl",
            "mooncake",
        ),
    )
}


@dataclass(frozen=True)
class Format:
    """A file format: the columns it needs, what they mean, and the rest it may have."""

    name: str
    required: tuple[str, ...]
    meaning: str


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "hybridsched",
            ("prompt_tokens", "output_tokens"),
            "the project's request CSV (optional request_id, predicted_output_tokens, arrival_s)",
        ),
        Format(
            "vidur",
            ("num_prefill_tokens", "num_decode_tokens"),
            "Vidur's trace CSV: arrived_at (s, optional), num_prefill_tokens, num_decode_tokens",
        ),
        Format(
            "splitwise",
            ("arrival_timestamp", "prompt_size", "token_size"),
            "SplitwiseSim's trace CSV: request_id, arrival_timestamp (s), prompt_size, token_size",
        ),
        Format(
            "azure",
            ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
            "Azure LLM inference trace CSV: TIMESTAMP (date and time), ContextTokens, "
            "GeneratedTokens",
        ),
        Format(
            "mooncake",
            ("timestamp", "input_length", "output_length"),
            "Mooncake JSON lines: timestamp (ms), input_length, output_length (hash_ids unused)",
        ),
    )
}
EXPORT_FORMATS = ("vidur", "hybridsched", "splitwise")


def _known_formats() -> str:
    return "; ".join(f"{f.name} ({f.meaning})" for f in FORMATS.values())


# --- options ------------------------------------------------------------------------------


def parse_window(window) -> tuple[float, float] | None:
    """``"START:END"`` seconds (either side may be empty: 0 and no end) or a pair."""
    if window is None:
        return None
    if isinstance(window, str):
        parts = window.split(":")
        if len(parts) != 2:
            raise ValueError(f"window must be START:END in seconds, got {window!r}")
        try:
            start = float(parts[0]) if parts[0].strip() else 0.0
            end = float(parts[1]) if parts[1].strip() else math.inf
        except ValueError:
            raise ValueError(f"window must be START:END in seconds, got {window!r}") from None
    else:
        start, end = (float(v) for v in window)
    if not (math.isfinite(start) and start >= 0 and end > start) or math.isnan(end):
        raise ValueError(
            f"window needs 0 <= START < END (seconds), got {plain(start)}:{plain(end)}"
        )
    return start, end


def _check_options(rate_scale, max_requests, fit_context, arrivals) -> None:
    if isinstance(rate_scale, bool) or not isinstance(rate_scale, (int, float, np.number)):
        raise ValueError(f"rate_scale must be a positive number, got {plain(rate_scale)}")
    if not (math.isfinite(rate_scale) and rate_scale > 0):
        raise ValueError(f"rate_scale must be a positive number, got {plain(rate_scale)}")
    if max_requests is not None and (
        isinstance(max_requests, bool)
        or not isinstance(max_requests, (int, np.integer))
        or max_requests < 1
    ):
        raise ValueError(f"max_requests must be an integer >= 1, got {plain(max_requests)}")
    if fit_context not in FIT_CONTEXT:
        raise ValueError(
            f"fit_context must be one of {', '.join(FIT_CONTEXT)}, got {plain(fit_context)}"
        )
    if parse_arrivals(arrivals).kind != "table" and rate_scale != 1:
        raise ValueError(
            f"rate_scale compresses a trace's own arrival times; with arrivals "
            f"{str(parse_arrivals(arrivals))!r} set the rate in the arrival process instead"
        )


# --- reading files ------------------------------------------------------------------------


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() in (".jsonl", ".json"):
            return pd.read_json(path, lines=True)
        return pd.read_csv(path)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        kind = "JSON-lines file" if path.suffix.lower() in (".jsonl", ".json") else "CSV"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"workload: {path} is not a readable {kind} ({msg})") from None


def detect_format(columns) -> str:
    """The format whose required columns the file has; else raise naming what is missing."""
    cols = set(map(str, columns))
    for f in FORMATS.values():
        if set(f.required) <= cols:
            return f.name
    best = max(FORMATS.values(), key=lambda f: len(set(f.required) & cols))
    have = ", ".join(map(str, columns)) or "none"
    if set(best.required) & cols:
        missing = ", ".join(c for c in best.required if c not in cols)
        raise ValueError(
            f"workload: missing column(s) {missing} for the {best.name} format; have {have}"
        )
    raise ValueError(
        f"workload: cannot tell the format from the columns ({have}); known formats: "
        f"{_known_formats()}"
    )


def _canonical(raw: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """The raw table's lengths and arrival seconds (from the format's origin), in file order."""
    n = len(raw)
    if fmt == "hybridsched":
        return raw
    if fmt == "vidur":
        arr = raw["arrived_at"] if "arrived_at" in raw.columns else np.zeros(n)
        s, o = raw["num_prefill_tokens"], raw["num_decode_tokens"]
        ids = np.arange(n)
    elif fmt == "splitwise":
        arr, s, o = raw["arrival_timestamp"], raw["prompt_size"], raw["token_size"]
        ids = raw["request_id"] if "request_id" in raw.columns else np.arange(n)
    elif fmt == "azure":
        t = pd.to_datetime(raw["TIMESTAMP"], errors="coerce", format="ISO8601")
        bad = t.isna().to_numpy()
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"data row {pos + 1}: TIMESTAMP must be a date and time, got "
                f"{plain(raw['TIMESTAMP'].iloc[pos])}"
            )
        arr = ((t - t.min()) / pd.Timedelta(seconds=1)).to_numpy(float)
        s, o, ids = raw["ContextTokens"], raw["GeneratedTokens"], np.arange(n)
    elif fmt == "mooncake":
        arr = pd.to_numeric(raw["timestamp"], errors="coerce") / 1000.0
        s, o, ids = raw["input_length"], raw["output_length"], np.arange(n)
    else:  # pragma: no cover - guarded by read_workload_file
        raise AssertionError(fmt)
    return pd.DataFrame(
        {"request_id": ids, "prompt_tokens": s, "output_tokens": o, "arrival_s": arr}
    )


_NAMES = {
    "vidur": "prompt_tokens = num_prefill_tokens, output_tokens = num_decode_tokens, "
    "arrival_s = arrived_at",
    "splitwise": "prompt_tokens = prompt_size, output_tokens = token_size, "
    "arrival_s = arrival_timestamp",
    "azure": "prompt_tokens = ContextTokens, output_tokens = GeneratedTokens",
    "mooncake": "prompt_tokens = input_length, output_tokens = output_length, "
    "arrival_s = timestamp / 1000",
}


def read_workload_file(path: str | Path, format: str | None = None) -> pd.DataFrame:
    """A trace or request file as the canonical table, arrivals in seconds from its origin.

    Rows of traces are put in arrival order (a stable sort: the shipped traces already
    are); a project request CSV keeps its rows and times exactly as written.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"workload: no such file {path}")
    if format is not None and format not in FORMATS:
        raise ValueError(f"format: unknown format {format!r}; known formats: {', '.join(FORMATS)}")
    raw = _read_table(path)
    fmt = format or detect_format(raw.columns)
    missing = [c for c in FORMATS[fmt].required if c not in raw.columns]
    if missing:
        raise ValueError(
            f"workload: {path} lacks column(s) {', '.join(missing)} of the {fmt} format; "
            f"have {', '.join(map(str, raw.columns)) or 'none'}"
        )
    try:
        df = validate_requests(_canonical(raw, fmt))
    except ValueError as e:
        names = f" ({_NAMES[fmt]})" if fmt in _NAMES else ""
        raise ValueError(f"workload {path} ({fmt} format): {e}{names}") from None
    if fmt != "hybridsched":
        order = np.argsort(df["arrival_s"].to_numpy(), kind="stable")
        df = df.iloc[order].reset_index(drop=True)
    df.attrs["format"] = fmt
    return df


# --- naming and loading -------------------------------------------------------------------


def _resolve(name_or_path, format: str | None) -> tuple[pd.DataFrame, str, str]:
    """The raw canonical table, the workload's name (or path) and its format."""
    text = str(name_or_path)
    if text in WORKLOADS:
        w = WORKLOADS[text]
        if format is not None and format != (w.format or "hybridsched"):
            raise ValueError(
                f"format: workload {text!r} is in the {w.format or 'hybridsched'} format, "
                f"got --format {format}"
            )
        if w.file is None:
            return load_gsm8k(), text, "hybridsched"
        return read_workload_file(data_dir() / w.file, w.format), text, w.format
    path = Path(text)
    if not path.is_file():
        raise ValueError(
            f"workload: {text!r} is neither a known workload ({', '.join(WORKLOADS)}) nor a file"
        )
    df = read_workload_file(path, format)
    return df, str(path), df.attrs["format"]


def _drop_long(df: pd.DataFrame, max_context, max_requests, name: str):
    """Drop the requests too long for the context; count only those before the N-th kept."""
    kept, dropped = check_context(df, max_context, "drop")
    if len(kept) == 0:
        raise ValueError(f"no request of {name} fits the context of {plain(max_context)} tokens")
    if dropped and max_requests is not None and len(kept) > max_requests:
        last = kept["request_id"].iloc[int(max_requests) - 1]
        cut = int(np.flatnonzero(df["request_id"].to_numpy() == last)[0])
        dropped = check_context(df.iloc[: cut + 1], max_context, "drop")[1]
    return kept, dropped


def load_workload(
    name_or_path: str | Path = "gsm8k",
    *,
    format: str | None = None,
    window=None,
    rate_scale: float = 1.0,
    max_requests: int | None = None,
    arrivals="table",
    seed: int = 0,
    max_context: int | None = None,
    fit_context: str = "error",
) -> pd.DataFrame:
    """The request table of a named workload or a file, shaped by the options (module docstring)."""
    win = parse_window(window)
    _check_options(rate_scale, max_requests, fit_context, arrivals)
    df, name, fmt = _resolve(name_or_path, format)
    total = len(df)
    if win is not None:
        t = df["arrival_s"].to_numpy()
        keep = (t >= win[0]) & (t < win[1])
        if not keep.any():
            raise ValueError(
                f"window {plain(win[0])}:{plain(win[1])} holds no requests of {name} "
                f"(its arrivals span {plain(float(t.min()))} to {plain(float(t.max()))} s)"
            )
        df = df.loc[keep].reset_index(drop=True)
        df["arrival_s"] = df["arrival_s"] - win[0]
    if rate_scale != 1:
        df = df.assign(arrival_s=df["arrival_s"] / float(rate_scale))
    dropped = 0
    if fit_context == "drop":
        df, dropped = _drop_long(df, max_context, max_requests, name)
    if max_requests is not None:
        df = df.iloc[: int(max_requests)].reset_index(drop=True)
    if fit_context == "error":
        check_context(df, max_context, "error")
    df = validate_requests(apply_arrivals(df, arrivals, seed))
    df.attrs["workload"] = {
        "workload": name,
        "format": fmt,
        "window_s": list(win) if win is not None else None,
        "rate_scale": float(rate_scale),
        "max_requests": max_requests,
        "arrivals": str(parse_arrivals(arrivals)),
        "arrival_seed": seed,
        "max_context": max_context,
        "fit_context": fit_context,
        "num_source_requests": total,
        "num_dropped": dropped,
        "num_requests": len(df),
    }
    return df


def workload_info(df: pd.DataFrame) -> dict:
    """What ``load_workload`` recorded about a table (empty for other tables)."""
    return dict(df.attrs.get("workload", {}))


def describe_workloads() -> pd.DataFrame:
    """The shipped workloads, one row each: name, description, source, licence, file."""
    return pd.DataFrame(
        [
            {
                "workload": w.name,
                "description": w.description,
                "source": w.source,
                "licence": w.licence,
                "file": f"data/{w.file}" if w.file else "data/gsm8k_llama_tokens.csv",
            }
            for w in WORKLOADS.values()
        ]
    )


# --- writing ------------------------------------------------------------------------------


def export_workload(df: pd.DataFrame, path: str | Path, format: str = "vidur") -> Path:
    """Write a request table another simulator can replay (``EXPORT_FORMATS``), atomically.

    ``vidur``: ``arrived_at,num_prefill_tokens,num_decode_tokens`` (seconds), the trace
    CSV Vidur's trace-replay request generator reads; ``splitwise``: SplitwiseSim's trace
    CSV; ``hybridsched``: the canonical table. Times are written at full precision, so
    loading the file back gives the same lengths and arrivals.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(
            f"format: cannot export to {format!r}; export formats: {', '.join(EXPORT_FORMATS)}"
        )
    req = validate_requests(df)
    if format == "vidur":
        out = pd.DataFrame(
            {
                "arrived_at": req["arrival_s"],
                "num_prefill_tokens": req["prompt_tokens"],
                "num_decode_tokens": req["output_tokens"],
            }
        )
    elif format == "splitwise":
        out = pd.DataFrame(
            {
                "request_id": req["request_id"],
                "request_type": 2,  # SplitwiseSim's code for LLM inference
                "application_id": 0,
                "arrival_timestamp": req["arrival_s"],
                "batch_size": 1,
                "prompt_size": req["prompt_tokens"],
                "token_size": req["output_tokens"],
            }
        )
    else:
        out = req
    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise ValueError(f"out: no such folder {path.parent}")
    tmp = path.with_name(path.name + ".partial")
    out.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path
