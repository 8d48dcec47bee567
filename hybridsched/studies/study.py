"""The 100-case study: many seeded samples, every policy on each, summarized against the baseline.

Result tables:

- ``study_cases``: one row per case and policy: ``case``, ``seed``, ``policy``,
  ``makespan_s``, ``utilization``, ``mean_batch``, ``lower_bound_s``, ``gap_to_lb``.
- ``study_summary``: one row per policy: mean/min/max of U and makespan, and for
  non-baseline policies the mean U gain (percentage points), the mean makespan
  reduction and the number of wins over the baseline.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from hybridsched.bounds.lower_bound import lower_bound
from hybridsched.instance import Cluster, make_instance
from hybridsched.policies.registry import POLICIES, RuleKnobs, Serving, SolveSettings, policy_spec
from hybridsched.provenance import versions
from hybridsched.studies.config import RunConfig
from hybridsched.studies.paper import PAPER
from hybridsched.studies.run import run_policy
from hybridsched.workloads.arrivals import apply_arrivals
from hybridsched.workloads.catalogue import workload_info
from hybridsched.workloads.predictors import predictor_spec
from hybridsched.workloads.requests import sample_requests
from hybridsched.workloads.tables import requests_for


@dataclass(frozen=True)
class _Case:
    case: int
    seed: int
    requests: pd.DataFrame | None  # None: the engine's shared table
    per_case: int
    cluster: Cluster
    policies: tuple[str, ...]
    knobs: RuleKnobs
    solve: SolveSettings
    serving: Serving = Serving()
    kv: dict | None = None


def _run_case(c: _Case, requests: pd.DataFrame | None = None) -> list[dict] | str:
    """One case; an exception comes back as its message so the study can report it."""
    try:
        sv = c.serving
        base = c.requests if c.requests is not None else requests
        reqs = apply_arrivals(sample_requests(base, c.per_case, c.seed), sv.arrivals, c.seed)
        inst = make_instance(reqs, c.cluster)
        rows = []
        for p in c.policies:
            r = run_policy(
                inst,
                p,
                c.knobs,
                c.solve,
                router=sv.router,
                admission=sv.admission,
                slo_ttft_s=sv.slo_ttft_s,
                slo_tpot_s=sv.slo_tpot_s,
                kv=c.kv,
            )
            m = r.metrics
            lb = lower_bound(
                inst,
                reservation_admission=r.admission == "reservation",
                mixed_iterations=POLICIES[p].mixed,
            ).lower_bound_s
            rows.append(
                {
                    "case": c.case,
                    "seed": c.seed,
                    "policy": p,
                    "makespan_s": m["makespan_s"],
                    "utilization": m["utilization"],
                    "mean_batch": m["mean_batch"],
                    "num_prefill_iterations": m["num_prefill_iterations"],
                    "lower_bound_s": lb,
                    "gap_to_lb": (m["makespan_s"] - lb) / lb,
                    "offline_status": r.solve.get("status", "n/a"),
                    "router": r.router,
                    "admission": r.admission,
                    "ttft_p99_s": m["ttft_p99_s"],
                    "tpot_p99_s": m["tpot_p99_s"],
                    "slo_attainment": m["slo_attainment"],
                    "num_preemptions": m["num_preemptions"],
                }
            )
        return rows
    except Exception as e:  # reported per case, never silently dropped
        return f"{type(e).__name__}: {e}"


@dataclass
class StudyResult:
    cases: pd.DataFrame
    summary: pd.DataFrame
    failures: pd.DataFrame
    params: dict
    wall_s: float

    def to_json(self) -> dict:
        return {
            "params": self.params,
            "wall_s": self.wall_s,
            "failures": self.failures.to_dict(orient="records"),
            "paper": PAPER,
        }


def summarize_study(cases: pd.DataFrame, baseline: str = "baseline") -> pd.DataFrame:
    """Per policy: mean/min/max of U and makespan; gains and wins against the baseline."""
    g = cases.groupby("policy", sort=False)
    out = g.agg(
        num_cases=("case", "nunique"),
        utilization_mean=("utilization", "mean"),
        utilization_min=("utilization", "min"),
        utilization_max=("utilization", "max"),
        makespan_mean_s=("makespan_s", "mean"),
        makespan_min_s=("makespan_s", "min"),
        makespan_max_s=("makespan_s", "max"),
        mean_batch_mean=("mean_batch", "mean"),
        gap_to_lb_mean=("gap_to_lb", "mean"),
    ).reset_index()
    if baseline in set(cases["policy"]):
        base = cases[cases["policy"] == baseline].set_index("case")
        gains = []
        for p in out["policy"]:
            mine = cases[cases["policy"] == p].set_index("case")
            common = mine.index.intersection(base.index)
            du = (mine.loc[common, "utilization"] - base.loc[common, "utilization"]) * 100
            dt = (base.loc[common, "makespan_s"] - mine.loc[common, "makespan_s"]) / base.loc[
                common, "makespan_s"
            ]
            gains.append(
                {
                    "utilization_gain_pp_mean": du.mean(),
                    "utilization_gain_pp_min": du.min(),
                    "utilization_gain_pp_max": du.max(),
                    "makespan_reduction_mean": dt.mean(),
                    "wins": int(
                        (
                            mine.loc[common, "makespan_s"] < base.loc[common, "makespan_s"] - 1e-9
                        ).sum()
                    ),
                    "ties": int(
                        np.isclose(
                            mine.loc[common, "makespan_s"],
                            base.loc[common, "makespan_s"],
                            rtol=0,
                            atol=1e-9,
                        ).sum()
                    ),
                }
            )
        out = pd.concat([out, pd.DataFrame(gains)], axis=1)
    return out


def run_study(
    config: RunConfig | None = None,
    *,
    cases: int = 100,
    requests_per_case: int = 1000,
    policies: tuple[str, ...] | list[str] = ("baseline", "hybrid"),
    first_seed: int = 1,
    workers: int = 2,
    engine: str = "processes",
    scheduler: str | None = None,
    progress: bool = True,
    requests: pd.DataFrame | None = None,
    **options,
) -> StudyResult:
    """Case ``k`` draws ``requests_per_case`` requests with seed ``first_seed + k - 1``.

    ``config`` with ``options`` over it (``RunConfig``'s names) sets the workload, cluster,
    knobs, solve and serving of every case; ``requests``: a table instead of the workload.
    Cases run on ``jobs.executor.Executor(engine, workers, scheduler)``: ``processes`` (a
    pool of ``workers`` processes; one worker runs in this process), ``dask`` (a local
    cluster of ``workers``, or the running cluster at ``scheduler``) or ``serial``; the
    request table reaches each worker once. Each solve uses one HiGHS thread, so the
    results do not depend on the engine or the number of workers. A failing case is listed
    in ``failures``. Predictions are made once on the whole table, seeded by
    ``prediction_seed``, so a request keeps its prediction in every case that draws it.
    """
    config = (config or RunConfig()).replace(**options)
    _check_study(cases, workers, policies)
    base = requests_for(
        config.workload if requests is None else requests,
        prediction_sigma=config.prediction_sigma,
        prediction_seed=config.prediction_seed,
        workload_options=config.workload_options(),
        predictor=config.predictor,
    )
    if not 1 <= requests_per_case <= len(base):
        raise ValueError(f"requests_per_case must be in 1..{len(base)}, got {requests_per_case}")
    cluster = config.cluster()
    cluster.make_clients()  # fail fast on a bad cluster, before any process starts
    solve = replace(config.solve(), threads=1)
    knobs, serving = config.knobs(), config.serving()
    same = (requests_per_case, cluster, tuple(policies), knobs, solve, serving, config.kv())
    jobs = [_Case(k, first_seed + k - 1, None, *same) for k in range(1, cases + 1)]
    if engine == "processes" and workers == 1:
        engine = "serial"
    rows, failures, wall = _run_cases(jobs, base, engine, workers, scheduler, progress)
    table = pd.DataFrame(rows)
    summary = summarize_study(table) if len(table) else pd.DataFrame()
    params = {
        **cluster.to_dict(),
        "cases": cases,
        "requests_per_case": requests_per_case,
        "workload": workload_info(base) or None,
        "seeds": [j.seed for j in jobs],
        "policies": list(policies),
        "knobs": asdict(knobs),
        "workers": workers,
        "engine": engine,
        "time_limit_s": config.time_limit,
        "mip_gap": config.mip_gap,
        "prediction_sigma": config.prediction_sigma,
        "prediction_seed": config.prediction_seed,
        "predictor": predictor_spec(config.predictor, config.prediction_sigma) or "oracle",
        "serving": serving.to_dict(),
        "versions": versions(),
    }
    return StudyResult(
        table, summary, pd.DataFrame(failures, columns=["case", "seed", "error"]), params, wall
    )


def _check_study(cases: int, workers: int, policies) -> None:
    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    for p in policies:
        policy_spec(p)


def _run_cases(jobs, base, engine, workers, scheduler, progress):
    """``(rows, failures, wall_s)``: every case on ``jobs.executor.Executor``; a failing case is a row
    of ``failures`` (case, seed, error), the others' rows are concatenated."""
    from hybridsched.jobs.executor import Executor, JobError

    t0 = time.perf_counter()
    with Executor(engine, workers, scheduler, progress=progress) as eng:
        results = eng.map(
            _run_case, jobs, shared=base, desc="cases", failed=lambda r: isinstance(r, str)
        )
    results = [r.error if isinstance(r, JobError) else r for r in results]
    wall = time.perf_counter() - t0
    rows, failures = [], []
    for j, r in zip(jobs, results, strict=True):
        if isinstance(r, str):
            failures.append({"case": j.case, "seed": j.seed, "error": r})
        else:
            rows.extend(r)
    return rows, failures, wall
