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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hybridsched.paths import data_dir
from hybridsched.workloads.arrivals import apply_arrivals, parse_arrivals
from hybridsched.workloads.formats import (
    EXPORT_FORMATS,
    FORMATS,
    detect_format,
    export_requests,
    read_requests_file,
)
from hybridsched.workloads.requests import (
    FIT_CONTEXT,
    check_context,
    load_gsm8k,
    plain,
    validate_requests,
)

__all__ = [
    "EXPORT_FORMATS",
    "FORMATS",
    "WORKLOADS",
    "attribution",
    "describe_workloads",
    "detect_format",
    "export_workload",
    "load_workload",
    "parse_window",
    "workload_info",
]


@dataclass(frozen=True)
class Workload:
    """A shipped workload: its file under ``data/`` (``None``: GSM8K) and where it comes from."""

    name: str
    description: str
    source: str
    licence: str
    file: str | None = None
    format: str | None = None

    @property
    def attribution(self) -> str:
        """The line a report that uses this workload carries (data/PROVENANCE.md)."""
        return f"{self.name}: {self.source}. Licence {self.licence}."


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
            f"Microsoft Azure Public Dataset, AzureLLMInferenceTrace_code; {SPLITWISE}",
            "CC-BY-4.0",
            "traces/azure_llm_2023_code.csv",
            "azure",
        ),
        Workload(
            "azure-conv",
            "Azure LLM inference trace 2023, conversation: 19,366 requests over 58 min (5.5 req/s)",
            f"Microsoft Azure Public Dataset, AzureLLMInferenceTrace_conv; {SPLITWISE}",
            "CC-BY-4.0",
            "traces/azure_llm_2023_conv.csv",
            "azure",
        ),
        Workload(
            "mooncake-conv",
            "Mooncake conversation trace: 12,031 requests over 59 min (3.4 req/s), long prompts",
            "Mooncake repository (kvcache-ai/Mooncake), FAST25-release/traces/"
            "conversation_trace.jsonl; Qin et al., Mooncake: A KVCache-centric Disaggregated "
            "Architecture for LLM Serving, FAST 2025",
            "Apache-2.0",
            "traces/mooncake_conversation_trace.jsonl",
            "mooncake",
        ),
    )
}


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


# --- naming and loading -------------------------------------------------------------------


def _resolve(name_or_path, format: str | None) -> tuple[pd.DataFrame, str, str]:
    """The raw canonical table, the workload's name (or path) and its format; a table
    already loaded (a sweep loads each workload once) is taken as it is."""
    if isinstance(name_or_path, pd.DataFrame):
        info = workload_info(name_or_path)
        return name_or_path.copy(), info.get("workload", "table"), info.get("format", "hybridsched")
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
        return read_requests_file(data_dir() / w.file, w.format), text, w.format
    path = Path(text)
    if not path.is_file():
        raise ValueError(
            f"workload: {text!r} is neither a known workload ({', '.join(WORKLOADS)}) nor a file"
        )
    df = read_requests_file(path, format)
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
    name_or_path: str | Path | pd.DataFrame = "gsm8k",
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
    """The request table of a named workload, a file or a table already loaded, shaped by the
    options (module docstring)."""
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
        "window_s": None if win is None else [win[0], None if math.isinf(win[1]) else win[1]],
        "rate_scale": float(rate_scale),
        "max_requests": max_requests,
        "arrivals": str(parse_arrivals(arrivals)),
        "arrival_seed": seed,
        "max_context": max_context,
        "fit_context": fit_context,
        "num_source_requests": total,
        "num_dropped": dropped,
        "num_selected": len(df),
    }
    return df


def workload_info(df: pd.DataFrame) -> dict:
    """What ``load_workload`` recorded about a table (empty for other tables)."""
    return dict(df.attrs.get("workload", {}))


def attribution(name: str) -> str:
    """The attribution line for a shipped workload (``""`` for a file of the user's own)."""
    w = WORKLOADS.get(str(name))
    return w.attribution if w else ""


def describe_workloads() -> pd.DataFrame:
    """The shipped workloads, one row each: name, description, source, licence, file."""
    return pd.DataFrame(
        [
            {
                "workload": w.name,
                "description": w.description,
                "source": w.source,
                "licence": w.licence,
                "attribution": w.attribution,
                "file": f"data/{w.file}" if w.file else "data/gsm8k_llama_tokens.csv",
            }
            for w in WORKLOADS.values()
        ]
    )


def export_workload(df: pd.DataFrame, path: str | Path, format: str = "vidur") -> Path:
    """Write a workload as a trace another simulator replays (``formats.export_requests``)."""
    return export_requests(df, path, format)
