"""NVIDIA aiconfigurator's own capacity answer, recorded once, to set beside ours (notebook 08).

aiconfigurator (Apache-2.0) is not a dependency of the package:
``scripts/aiconfigurator_recommend.py`` ran its ``cli recommend`` (and ``cli estimate`` at
our batch cap) offline and wrote ``data/planning/aiconfigurator_recommend.csv``; this module
only reads that file. Its columns, the commands behind it and how aiconfigurator's model
differs from ours (fixed ISL/OSL, a closed-loop steady state at a fixed concurrency, mean
latencies against the SLO, no arrival variance and no percentile): ``data/planning/README.md``.

- ``workload_lengths(workload, window)``: the mean prompt and output length of a workload as
  notebook 08 loads it, and the integer ISL/OSL handed to aiconfigurator (their rounding).
  The script computes the inputs with it; the tests check the file against it.
- ``read_aiconfigurator_csv(path)``: the whole file, its columns checked.
- ``aiconfigurator_recommendation(...)``: the rows of one case, by keyword filters.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from hybridsched.paths import data_dir

RECOMMEND_CSV = Path("planning") / "aiconfigurator_recommend.csv"

# What was asked: our workload and its lengths, aiconfigurator's target and SLA.
INPUT_COLUMNS = (
    "run_date",
    "aiconfigurator_version",
    "workload",
    "window",
    "requests",
    "prompt_mean_tokens",
    "output_mean_tokens",
    "model",
    "hardware",
    "system",
    "backend",
    "backend_version",
    "database_mode",
    "isl_tokens",
    "osl_tokens",
    "target_rate_rps",
    "ttft_sla_ms",
    "tpot_sla_ms",
    "selection",
    "serving_mode",
)
# What aiconfigurator answered (per replica unless named otherwise; data/planning/README.md).
RESULT_COLUMNS = (
    "gpus",
    "replicas",
    "gpus_per_replica",
    "tp",
    "pp",
    "dp",
    "batch_size",
    "prefill_workers",
    "prefill_tp",
    "prefill_batch_size",
    "decode_workers",
    "decode_tp",
    "decode_batch_size",
    "concurrency_per_replica",
    "ttft_ms",
    "tpot_ms",
    "request_latency_ms",
    "replica_rate_rps",
    "rate_per_gpu_rps",
    "cluster_rate_rps",
    "output_tokens_per_s_per_gpu",
    "output_tokens_per_s_per_user",
    "meets_sla",
)
COLUMNS = INPUT_COLUMNS + RESULT_COLUMNS
SELECTIONS = ("recommend", "estimate")


def workload_lengths(workload: str, window: str | None = None) -> dict:
    """The requests of ``workload`` (a shipped name or a file) over ``window`` (``"START:END"``
    seconds; ``None`` or ``""``: the whole trace, as notebook 08 uses it), their mean prompt
    and output length in tokens, and the integers aiconfigurator takes as ISL and OSL (the
    means rounded to the nearest token)."""
    from hybridsched.workloads.tables import requests_for

    reqs = requests_for(workload, workload_options={"window": window or None})
    s, o = float(reqs["prompt_tokens"].mean()), float(reqs["output_tokens"].mean())
    return {
        "requests": len(reqs),
        "prompt_mean_tokens": s,
        "output_mean_tokens": o,
        "isl_tokens": int(round(s)),
        "osl_tokens": int(round(o)),
    }


def read_aiconfigurator_csv(path: str | Path | None = None) -> pd.DataFrame:
    """The recorded file (default ``data/planning/aiconfigurator_recommend.csv``), every
    column of ``COLUMNS`` checked present; ``window`` is ``""`` for a whole trace."""
    path = Path(path) if path is not None else data_dir() / RECOMMEND_CSV
    if not path.is_file():
        raise ValueError(
            f"{path}: no such file; scripts/aiconfigurator_recommend.py writes it "
            "(data/planning/README.md)"
        )
    df = pd.read_csv(path, dtype={"window": "string"})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(missing)}; the columns are documented in "
            "data/planning/README.md (re-run scripts/aiconfigurator_recommend.py)"
        )
    df["window"] = df["window"].fillna("").astype(str)
    return df


def aiconfigurator_recommendation(
    *,
    workload: str | None = None,
    model: str | None = None,
    hardware: str | None = None,
    rate: float | None = None,
    serving_mode: str | None = None,
    selection: str | None = "recommend",
    path: str | Path | None = None,
) -> pd.DataFrame:
    """The recorded rows matching every filter given (``None``: any). ``selection``:
    ``"recommend"`` (aiconfigurator's own ``cli recommend`` answer, one row per case and
    serving mode, the default) or ``"estimate"`` (its ``cli estimate`` of one aggregated
    worker per tp at our batch cap, replicas by the same rule). ``rate``: the target in
    requests per second. Raises ``ValueError`` when nothing matches, naming what exists."""
    if selection is not None and selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    df = read_aiconfigurator_csv(path)
    filters = {
        "workload": workload,
        "model": model,
        "hardware": hardware,
        "serving_mode": serving_mode,
        "selection": selection,
    }
    keep = pd.Series(True, index=df.index)
    for col, want in filters.items():
        if want is not None:
            keep &= df[col].astype(str) == str(want)
    if rate is not None:
        keep &= (df["target_rate_rps"] - float(rate)).abs() <= 1e-9 * max(1.0, abs(rate))
    out = df[keep].reset_index(drop=True)
    if out.empty:
        cases = df[["workload", "model", "hardware", "target_rate_rps"]].drop_duplicates()
        listed = "; ".join(
            f"{r.workload} {r.model} {r.hardware} {r.target_rate_rps:g} req/s"
            for r in cases.itertuples()
        )
        asked = {k: v for k, v in {**filters, "rate": rate}.items() if v is not None}
        raise ValueError(f"no recorded aiconfigurator row matches {asked}; recorded: {listed}")
    return out


def describe_row(row) -> str:
    """One recorded row in words: ``"1 x tp=1, batch 208 (1 GPU): 24.4 req/s per replica"``."""
    if row["serving_mode"] == "disagg":
        unit = (
            f"{row['prefill_workers']:.0f} prefill x tp={row['prefill_tp']:.0f} + "
            f"{row['decode_workers']:.0f} decode x tp={row['decode_tp']:.0f} "
            f"(decode batch {row['decode_batch_size']:.0f})"
        )
        cluster = f"{row['replicas']:.0f} x [{unit}]"
    else:
        cluster = f"{row['replicas']:.0f} x tp={row['tp']:.0f}, batch {row['batch_size']:.0f}"
    gpus = int(row["gpus"])
    rate = row["replica_rate_rps"]
    per = f"{rate:.1f} req/s per replica" if math.isfinite(rate) else "no rate"
    return f"{cluster} ({gpus} GPU{'s' if gpus != 1 else ''}): {per}"


def aiconfigurator_reference(
    workload: str, model: str, hardware: str, rate: float, batch: int
) -> pd.DataFrame:
    """The recorded answer for one capacity case, empty when it was not recorded: the
    ``recommend`` rows (aggregated and disaggregated) and the ``estimate`` row at our batch
    cap ``batch`` with the fewest GPUs (notebook 08)."""
    case = dict(workload=workload, model=model, hardware=hardware, rate=rate)
    try:
        rec = aiconfigurator_recommendation(**case)
        cap = aiconfigurator_recommendation(**case, selection="estimate")
    except ValueError:  # another case than the ones recorded
        return pd.DataFrame()
    cap = cap[cap["batch_size"] == batch].sort_values(["gpus", "tp"]).head(1)
    return pd.concat([rec, cap], ignore_index=True)


def aic_sentence(rows: pd.DataFrame, choice: dict | None) -> str:
    """``aiconfigurator_reference``'s rows against our chosen cluster, in one sentence."""
    if rows.empty:
        return "aiconfigurator's recommend was not recorded for this case."
    rec = rows[(rows["selection"] == "recommend") & (rows["serving_mode"] == "agg")].iloc[0]
    cap = rows[rows["selection"] == "estimate"]
    at_cap = (
        f"; held to our batch cap of {cap.iloc[0]['batch_size']:.0f} it asks for "
        f"{cap.iloc[0]['gpus']:.0f}"
        if len(cap)
        else ""
    )
    ours = f"{choice['gpus']:.0f}" if choice else "more than the search's"
    n = int(rec["gpus"])
    return (
        f"NVIDIA aiconfigurator's own recommend answers {n} GPU{'s' if n != 1 else ''} "
        f"({rec['replicas']:.0f} x tp={rec['tp']:.0f} at batch {rec['batch_size']:.0f}){at_cap}, "
        f"against {ours} here: it prices one fully loaded replica at mean lengths, with "
        "neither arrival bursts nor a share of requests held to the SLO."
    )
