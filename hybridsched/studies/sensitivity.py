"""Sensitivity sweeps over the hybrid's knobs and the cluster, and ablation deltas.

``sweep(param_grid, base, policies)`` runs every point of the Cartesian product of
``param_grid`` over ``base`` (a ``RunConfig`` or its options as a dict). Keys are
``RunConfig``'s names, as in a sweep grid file: workload and cluster options (``clients``,
``tp``, ``max_batch``, ``num_requests``, ``seed``, ``model``, ``hardware``, ``latency``,
``prediction_sigma``, ...) and the online rules' knobs (``KNOB_KEYS``:
``lambda_multiplier``, ``horizon``, ``min_prefill``, ``idle_price``, ``sort``,
``token_budget``).

The knobs apply to every policy except ``baseline``, which is the fixed reference (the
sort knob would otherwise turn it into a different policy). Per workload/cluster point
(every option but the knobs) the instance, ``T_LB``, the MMBPP assignment and the baseline
run are computed once and reused across knob values; the points run on the same
executors as every sweep (``jobs.executor``).

Sweep table: one row per grid point and policy, the grid's keys plus ``policy``,
``makespan_s``, ``utilization``, ``mean_batch``, ``kv_occupancy``, ``prefill_share``,
``num_prefill_iterations``, ``imbalance``, ``lower_bound_s``, ``bound_binding``,
``gap_to_lb`` ``(T - T_LB) / T_LB``, ``gap_closed`` ``(T_base - T) / (T_base - T_LB)``,
``utilization_gain_pp`` ``100 (U - U_base)`` and ``makespan_reduction``
``(T_base - T) / T_base``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from hybridsched.instance import make_instance
from hybridsched.jobs.executor import Executor, JobError
from hybridsched.policies.registry import POLICIES, RuleKnobs, SolveSettings, policy_spec
from hybridsched.studies.bounds import bound_for, full_lower_bound
from hybridsched.studies.config import RunConfig
from hybridsched.studies.run import offline_assignment, run_policy
from hybridsched.workloads.tables import requests_for

KNOB_KEYS = ("lambda_multiplier", "horizon", "min_prefill", "idle_price", "sort", "token_budget")
METRIC_COLUMNS = (
    "makespan_s",
    "utilization",
    "mean_batch",
    "kv_occupancy",
    "prefill_share",
    "num_prefill_iterations",
    "imbalance",
)

# (stage, from policy, to policy): what each ablation step adds (docs/model.md section 7).
STAGES = (
    ("online rule (round-robin, FCFS)", "baseline", "a"),
    ("sorted queue (with the rule)", "a", "a-sorted"),
    ("offline MMBPP (prefill-first, FCFS)", "baseline", "b"),
    ("sorted queue (MMBPP, prefill-first)", "b", "c"),
    ("online rule (MMBPP, sorted)", "c", "hybrid"),
    ("offline MMBPP (sorted, with the rule)", "a-sorted", "hybrid"),
    ("total", "baseline", "hybrid"),
    ("beyond: chunked prefill instead of prefill-first", "baseline", "chunked"),
    ("beyond: chunked prefill instead of the rule (MMBPP, sorted)", "hybrid", "hybrid-chunked"),
)


def sweep(
    param_grid: dict[str, list],
    base: RunConfig | dict | None = None,
    policies: tuple[str, ...] | list[str] = ("baseline", "hybrid"),
    requests: pd.DataFrame | None = None,
    progress: bool = False,
    engine: str = "serial",
    workers: int | None = None,
    scheduler: str | None = None,
) -> pd.DataFrame:
    """Run ``policies`` at every point of ``param_grid`` (over ``base``); the sweep table.

    Parameters
    ----------
    param_grid : option name -> list of values (``RunConfig``'s names); the grid is their
        Cartesian product, in the given key order.
    base : the options not in the grid (default ``RunConfig()``: the paper's single case,
        2 clients, tp=4, B=32, all 1,319 GSM8K requests, default knobs); ``time_limit``
        and ``mip_gap`` set the MMBPP solve (assignment and the bound's MMBPP part).
    policies : names from ``POLICIES``. ``baseline`` is always run (as the reference of
        the gain columns) but only reported when listed.
    requests : a request table instead of ``base``'s workload.
    progress : print one line per grid point.
    engine, workers, scheduler : where the workload/cluster points run
        (``jobs.executor.Executor``: ``serial``, the default, ``processes`` or ``dask``); the
        table is the same for every engine.

    Raises
    ------
    ValueError : an unknown option or policy, a bad value, or an empty value list.
    """
    base = base if isinstance(base, RunConfig) else RunConfig.from_dict(dict(base or {}))
    for name, values in param_grid.items():
        if len(list(values)) == 0:
            raise ValueError(f"sweep: parameter {name!r} has no values")
    for p in policies:
        policy_spec(p)
    keys = list(param_grid)
    groups: dict[tuple, list] = {}  # one job per workload/cluster point, in first-seen order
    n = 0
    for values in itertools.product(*(list(param_grid[k]) for k in keys)):
        point = dict(zip(keys, values, strict=True))
        config = base.replace(**point)
        ckey = tuple((k, str(v)) for k, v in config.to_dict().items() if k not in KNOB_KEYS)
        groups.setdefault(ckey, []).append((n, point, config))
        n += 1
    jobs = [(g, tuple(policies), progress) for g in groups.values()]
    with Executor(engine, workers, scheduler) as eng:
        results = eng.map(_run_group, jobs, shared=requests, desc="sweep")
    rows: list = [None] * n
    for job, res in zip(jobs, results, strict=True):
        if isinstance(res, JobError):
            raise RuntimeError(f"sweep: point {job[0][0][1]} failed: {res.error}")
        for i, r in res:
            rows[i] = r
    return pd.DataFrame([r for point_rows in rows for r in point_rows])


def _run_group(job, requests) -> list[tuple[int, list[dict]]]:
    """All grid points of one workload/cluster point: instance, bound and baseline once."""
    group, policies, progress = job
    ctx = _prepare(group[0][2], requests)
    out = []
    for i, point, config in group:
        knobs, solve = config.knobs(), config.solve()
        base_m = ctx["baseline"].metrics
        rows = []
        for p in policies:
            r = ctx["baseline"] if p == "baseline" else _run(ctx, p, knobs, solve)
            rows.append({**point, "policy": p, **_row(r.metrics, base_m, _bound(ctx, p, solve))})
        out.append((i, rows))
        if progress:
            print(f"sweep {point}: done", flush=True)
    return out


def _prepare(config: RunConfig, requests) -> dict:
    reqs = requests_for(
        config.workload if requests is None else requests,
        config.num_requests,
        config.seed,
        config.prediction_sigma,
        config.prediction_seed,
        config.workload_options(),
        config.predictor,
    )
    instance = make_instance(reqs, config.cluster())
    solve = config.solve()
    ctx = {
        "instance": instance,
        "bound": full_lower_bound(instance, solve=solve),
        "bound_mixed": None,  # solved on first use by a chunked policy
        "assignments": {},
    }
    ctx["baseline"] = run_policy(instance, "baseline", RuleKnobs(), solve)
    return ctx


def _bound(ctx: dict, policy: str, solve: SolveSettings):
    spec = POLICIES[policy]
    if spec.admission != "reservation":
        return full_lower_bound(
            ctx["instance"], solve=solve, mixed_iterations=spec.mixed, admission=spec.admission
        )
    if POLICIES[policy].mixed and ctx["bound_mixed"] is None:
        ctx["bound_mixed"] = full_lower_bound(ctx["instance"], solve=solve, mixed_iterations=True)
    return bound_for(policy, ctx["bound"], ctx["bound_mixed"])


def _run(ctx: dict, policy: str, knobs: RuleKnobs, solve: SolveSettings):
    spec = POLICIES[policy]
    dispatch = spec.dispatch
    if spec.router != "static" or dispatch not in ("round-robin", "mmbpp"):
        return run_policy(ctx["instance"], policy, knobs, solve)  # plans on its own
    if dispatch not in ctx["assignments"]:
        ctx["assignments"][dispatch] = offline_assignment(ctx["instance"], dispatch, solve)[0]
    return run_policy(
        ctx["instance"], policy, knobs, solve, assignment=ctx["assignments"][dispatch]
    )


def _row(m: dict, base: dict, bound) -> dict:
    lb, t, tb = bound.lower_bound_s, m["makespan_s"], base["makespan_s"]
    return {
        **{c: m[c] for c in METRIC_COLUMNS},
        "lower_bound_s": lb,
        "bound_binding": bound.binding,
        "gap_to_lb": (t - lb) / lb,
        "gap_closed": (tb - t) / (tb - lb) if tb > lb else np.nan,
        "utilization_gain_pp": 100 * (m["utilization"] - base["utilization"]),
        "makespan_reduction": (tb - t) / tb,
    }


def ablation_deltas(table: pd.DataFrame, by: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """What each stage of the hybrid adds: the change in ``U`` and ``T`` along the ablation chain.

    ``table`` has one row per policy (per ``by`` group): a single-case table or a sweep
    table. A stage appears when both its policies are present (``STAGES``).

    Returns
    -------
    DataFrame: ``by`` columns, ``stage``, ``from_policy``, ``to_policy``,
    ``utilization_gain_pp`` (``100 (U_to - U_from)``), ``makespan_change_s``
    (``T_to - T_from``, negative is better) and ``makespan_change_pct``.
    """
    need = ["policy", "utilization", "makespan_s", *by]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ValueError(f"ablation_deltas: missing column(s) {', '.join(missing)}")
    groups = table.groupby(list(by), sort=False) if by else [((), table)]
    rows = []
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        per = part.drop_duplicates("policy").set_index("policy")
        for stage, a, b in STAGES:
            if a in per.index and b in per.index:
                ta, tb = float(per.at[a, "makespan_s"]), float(per.at[b, "makespan_s"])
                rows.append(
                    {
                        **dict(zip(by, key, strict=True)),
                        "stage": stage,
                        "from_policy": a,
                        "to_policy": b,
                        "utilization_gain_pp": 100
                        * (float(per.at[b, "utilization"]) - float(per.at[a, "utilization"])),
                        "makespan_change_s": tb - ta,
                        "makespan_change_pct": 100 * (tb - ta) / ta,
                    }
                )
    cols = [
        *by,
        "stage",
        "from_policy",
        "to_policy",
        "utilization_gain_pp",
        "makespan_change_s",
        "makespan_change_pct",
    ]
    return pd.DataFrame(rows, columns=cols)
