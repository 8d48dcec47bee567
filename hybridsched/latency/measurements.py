"""Measured iteration times: the table the calibration fits (calibration.py).

One row per measured iteration: ``kind`` (prefill or decode), ``tp``, ``batch``,
``prompt``, ``sum_tokens``, ``sum_sq_tokens``, ``sum_context``, ``time_s`` and ``row``
(the source row). ``load_splitwise`` reads SplitwiseSim's ``perf_model.csv``: each row
gives a prefill (``prompt_time``: ``batch_size`` prompts of ``prompt_size`` tokens) and a
decode (``token_time``: the mean step of ``batch_size`` requests over ``token_size``
generated tokens, so the mean context is ``prompt_size + token_size / 2``); times in ms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MEASUREMENT_COLUMNS = [
    "kind",
    "tp",
    "batch",
    "prompt",
    "sum_tokens",
    "sum_sq_tokens",
    "sum_context",
    "time_s",
    "row",
]

SPLITWISE_COLUMNS = [
    "model",
    "hardware",
    "prompt_size",
    "batch_size",
    "token_size",
    "prompt_time",
    "token_time",
    "tensor_parallel",
]


def load_splitwise(
    path: str | Path, model: str | None = None, hardware: str | None = None
) -> pd.DataFrame:
    """Measurements from a SplitwiseSim ``perf_model.csv``, optionally of one model and hardware label."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"measurements: no such file {path}")
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"measurements: {path} is not a readable CSV ({str(e).strip()})") from None
    missing = [c for c in SPLITWISE_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"measurements {path}: missing column(s) {', '.join(missing)}")
    raw = raw.reset_index(drop=True)
    for label, col in ((model, "model"), (hardware, "hardware")):
        if label is not None:
            if label not in set(raw[col]):
                raise ValueError(
                    f"measurements {path}: no rows with {col} {label!r}; have {', '.join(sorted(set(raw[col])))}"
                )
            raw = raw[raw[col] == label]
    num = [
        "prompt_size",
        "batch_size",
        "token_size",
        "prompt_time",
        "token_time",
        "tensor_parallel",
    ]
    for col in num:
        v = pd.to_numeric(raw[col], errors="coerce")
        bad = ~np.isfinite(v) | (v <= 0)
        if bad.any():
            i = raw.index[np.flatnonzero(bad.to_numpy())[0]]
            raise ValueError(
                f"measurements {path} (row {i}): {col} must be a number > 0, got {raw.at[i, col]!r}"
            )
    b, s, t = (
        raw["batch_size"].to_numpy(float),
        raw["prompt_size"].to_numpy(float),
        raw["token_size"].to_numpy(float),
    )
    tp = raw["tensor_parallel"].to_numpy(int)
    common = {"tp": tp, "batch": b, "prompt": s, "row": raw.index.to_numpy()}
    pre = pd.DataFrame(
        {
            "kind": "prefill",
            **common,
            "sum_tokens": b * s,
            "sum_sq_tokens": b * s * s,
            "sum_context": 0.0,
            "time_s": raw["prompt_time"].to_numpy(float) / 1e3,
        }
    )
    dec = pd.DataFrame(
        {
            "kind": "decode",
            **common,
            "sum_tokens": b,
            "sum_sq_tokens": 0.0,
            "sum_context": b * (s + t / 2),
            "time_s": raw["token_time"].to_numpy(float) / 1e3,
        }
    )
    return pd.concat([pre, dec], ignore_index=True)[MEASUREMENT_COLUMNS]
