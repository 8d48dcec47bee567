"""Policies against predictor quality (notebook 09, docs/model.md section 8).

``uncertainty_sweep(base, clusters, policies, predictors, prediction_seeds)`` runs one
cell (``cells.run_cell``) per cluster, predictor, prediction seed and policy and returns
the result rows with ``cluster``, ``predictor`` and ``prediction_seed``. Deterministic
predictors (``oracle``, ``bucket``, ``trained``) run with the first seed only; the
seeded ``noisy:SIGMA`` with every seed. A cell that fails (``KVOverflowError`` of a
reservation policy whose lengths were under-predicted, for one) is a row with
``status = failed`` and its error, never an exception.

``summarize(rows)``: per cluster, predictor and policy, the means over seeds of makespan
(s), U, TTFT p99 (s) and preemptions, the runs that failed, and the makespan relative to
the baseline's and to ``vllm``'s on the same predictions (``vs_baseline``,
``vs_vllm``: ``T / T_ref - 1``, averaged over seeds). ``offline_pays(summary)`` reads
off, per cluster and predictor, the best policy that plans offline (an MMBPP or
portfolio assignment) against the baseline and ``vllm``. ``predictor_quality`` is each
predictor's error on the GSM8K test split (``predictors.evaluate_predictor``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from hybridsched.jobs.executor import Executor
from hybridsched.policies.registry import POLICIES
from hybridsched.studies.cells import resolve
from hybridsched.studies.grid import run_cells
from hybridsched.workloads.predictors import evaluate_predictor, parse_predictor
from hybridsched.workloads.requests import PROMPT_TEXT, gsm8k_questions, load_gsm8k

__all__ = [
    "CLUSTERS",
    "POLICIES_STUDIED",
    "PREDICTORS",
    "offline_pays",
    "predictor_quality",
    "summarize",
    "uncertainty_sweep",
]

# The paper's two configurations of LLaMA-65B on A100-80GB, B = 32.
CLUSTERS: dict[str, dict] = {"2 x tp4": {"clients": 2, "tp": 4}, "4 x tp2": {"clients": 4, "tp": 2}}
PREDICTORS = ("oracle", "noisy:0.1", "bucket", "noisy:0.25", "trained", "noisy:0.5", "noisy:1.0")
POLICIES_STUDIED = (
    "baseline",
    "hybrid",
    "hybrid-robust",
    "hybrid-reserve-hi",
    "hybrid-sort-hi",
    "hybrid-amin",
    "amin",
    "vllm",
)
METRICS = ("makespan_s", "utilization", "ttft_p99_s", "num_preemptions", "mean_batch")


def _seeds(predictor: str, seeds: Sequence[int]) -> list[int]:
    """Every seed for a seeded predictor (``noisy``), the first one for the others."""
    return list(seeds) if predictor.startswith("noisy") else list(seeds[:1])


def _cells(base, clusters, policies, predictors, seeds) -> list[tuple[str, str, dict]]:
    out = []
    for label, cl in clusters.items():
        for pred in predictors:
            for s in _seeds(pred, seeds):
                for pol in policies:
                    cell = {**base, **cl, "policy": pol, "predictor": pred, "prediction_seed": s}
                    out.append((label, pred, cell))
    return out


def uncertainty_sweep(
    base: dict,
    clusters: Mapping[str, dict] = CLUSTERS,
    policies: Sequence[str] = POLICIES_STUDIED,
    predictors: Sequence[str] = PREDICTORS,
    prediction_seeds: Sequence[int] = (0,),
    engine: str = "serial",
    workers: int | None = None,
) -> pd.DataFrame:
    """One row per cluster, predictor, seed and policy (module docstring)."""
    if not prediction_seeds:
        raise ValueError("prediction_seeds must name at least one seed")
    for p in predictors:
        parse_predictor(p)  # a bad spec fails before any simulation
    triples = _cells(base, clusters, policies, predictors, list(prediction_seeds))
    resolved = [resolve(c) for _, _, c in triples]
    with Executor(engine, workers, progress=False) as eng:
        rows = run_cells(resolved, eng, tables=_tables(resolved))
    table = pd.DataFrame(rows)
    table.insert(0, "cluster", [t[0] for t in triples])
    table["predictor"] = [t[1] for t in triples]
    return table


def _tables(cells: list[dict]) -> dict:
    """GSM8K test, loaded once, with its question texts (which ``trained`` reads)."""
    if not any(c["workload"] == "gsm8k" for c in cells):
        return {}
    df = load_gsm8k()
    q = gsm8k_questions("test")
    return {"gsm8k": df.assign(**{PROMPT_TEXT: q.reindex(df["request_id"]).to_numpy()})}


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per cluster, predictor and policy: means over seeds, failures, ``vs_baseline``, ``vs_vllm``."""
    keys = ["cluster", "predictor", "prediction_seed"]
    rows = rows.copy()
    for col in METRICS:
        if col not in rows:
            rows[col] = np.nan
    ok = rows["status"] == "ok"
    rows.loc[~ok, list(METRICS)] = np.nan
    for ref, col in (("baseline", "vs_baseline"), ("vllm", "vs_vllm")):
        r = rows[rows["policy"] == ref].set_index(keys)["makespan_s"]
        t_ref = pd.MultiIndex.from_frame(rows[keys]).map(lambda k, r=r: r.get(k, np.nan))
        rows[col] = rows["makespan_s"].to_numpy() / np.asarray(t_ref, dtype=float) - 1
    g = rows.groupby(["cluster", "predictor", "policy"], sort=False)
    out = g[[*METRICS, "vs_baseline", "vs_vllm"]].mean()
    out["runs"] = g.size()
    out["failed"] = g["status"].agg(lambda s: int((s != "ok").sum()))
    return out.reset_index()


def _plans_offline(policy: str) -> bool:
    spec = POLICIES[policy]
    return spec.dispatch in ("mmbpp", "portfolio") and spec.router == "static"


def offline_pays(summary: pd.DataFrame) -> pd.DataFrame:
    """Per cluster and predictor: the best offline-planned policy (``best_offline``, its
    makespan) against the baseline and ``vllm`` (``T / T_ref - 1``; negative pays)."""
    out = []
    for (cl, pred), g in summary.groupby(["cluster", "predictor"], sort=False):
        g = g.set_index("policy")
        off = g[[_plans_offline(p) for p in g.index]]["makespan_s"].dropna()
        row = {"cluster": cl, "predictor": pred}
        if len(off):
            best = off.idxmin()
            row.update(best_offline=best, best_offline_makespan_s=off[best])
            for ref in ("baseline", "vllm"):
                t = g["makespan_s"].get(ref, np.nan)
                row[f"best_offline_vs_{ref}"] = off[best] / t - 1
        out.append(row)
    return pd.DataFrame(out)


def predictor_quality(predictors: Sequence[str] = PREDICTORS, seed: int = 0) -> pd.DataFrame:
    """Each predictor's error on the GSM8K test split: MAE, Spearman, coverage, width."""
    return pd.DataFrame([{**evaluate_predictor(p, seed), "spec": p} for p in predictors])
