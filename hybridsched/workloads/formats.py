"""Request file formats: tell them apart, read them into request tables, write them.

``FORMATS`` names the formats a workload file may be in (docs/model.md, "Workloads"):
the project's own request CSV and the traces of Vidur, SplitwiseSim, the Azure LLM
inference dataset and Mooncake. ``read_requests_file`` detects the format from the
columns (or takes it), maps its columns to the canonical request table
(``data.COLUMNS``), with arrival seconds from the format's origin, and validates it, so
a bad value is named with the file, the format's own column names and the 1-based data
row. ``export_requests`` writes a table as a trace another simulator replays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hybridsched.workloads.requests import plain, validate_requests


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
            "Mooncake JSON lines: timestamp (ms), input_length, output_length, hash_ids "
            "(512-token prompt blocks: the prefix identity a prefix cache reuses)",
        ),
    )
}
EXPORT_FORMATS = ("vidur", "hybridsched", "splitwise")


def _known_formats() -> str:
    return "; ".join(f"{f.name} ({f.meaning})" for f in FORMATS.values())


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
        if "hash_ids" in raw.columns:
            blocks = [" ".join(map(str, h)) if isinstance(h, list) else "" for h in raw["hash_ids"]]
            return pd.DataFrame(
                {
                    "request_id": ids,
                    "prompt_tokens": s,
                    "output_tokens": o,
                    "arrival_s": arr,
                    "prefix_blocks": blocks,
                }  # fmt: skip
            )
    else:  # pragma: no cover - guarded by read_requests_file
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


def read_requests_file(path: str | Path, format: str | None = None) -> pd.DataFrame:
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


# --- writing ------------------------------------------------------------------------------


def export_requests(df: pd.DataFrame, path: str | Path, format: str = "vidur") -> Path:
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
