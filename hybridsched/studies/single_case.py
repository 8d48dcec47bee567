"""The paper's single case: every policy on one workload, with ``T_LB`` and its parts.

Result table ``single_case``: one row per policy: ``policy``, ``makespan_s``, ``utilization``,
``mean_batch``, ``num_prefill_iterations``, ``lower_bound_s``, ``gap_to_lb``
(``(T - T_LB) / T_LB``), ``gap_closed`` (``(T_base - T) / (T_base - T_LB)``), and the
other metrics of ``metrics.metrics``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

from hybridsched.bounds.lower_bound import LowerBound
from hybridsched.instance import DEFAULT_PREFILL_BUDGET_TOKENS, Instance, make_instance
from hybridsched.policies.registry import POLICIES, policy_spec
from hybridsched.provenance import versions
from hybridsched.studies.bounds import bound_for, full_lower_bound
from hybridsched.studies.config import RunConfig
from hybridsched.studies.paper import PAPER
from hybridsched.studies.run import RunResult, run_policy
from hybridsched.workloads.arrivals import apply_arrivals
from hybridsched.workloads.catalogue import workload_info
from hybridsched.workloads.predictors import predictor_spec
from hybridsched.workloads.tables import requests_for


def _gap_columns(table: pd.DataFrame, lb) -> pd.DataFrame:
    """``gap_to_lb`` and ``gap_closed`` against each row's own bound (``lb``: scalar or per row)."""
    table["lower_bound_s"] = lb
    lbs = table["lower_bound_s"]
    table["gap_to_lb"] = (table["makespan_s"] - lbs) / lbs
    if "baseline" in set(table["policy"]):
        tb = float(table.loc[table["policy"] == "baseline", "makespan_s"].iloc[0])
        table["gap_closed"] = ((tb - table["makespan_s"]) / (tb - lbs)).where(tb > lbs)
    return table


@dataclass
class SingleCaseResult:
    table: pd.DataFrame
    bound: LowerBound
    runs: dict[str, RunResult]
    instance: Instance
    params: dict = field(default_factory=dict)
    bound_mixed: LowerBound | None = None  # for chunked-prefill policies, if any ran

    def to_json(self) -> dict:
        return {
            "params": self.params,
            "lower_bound": self.bound.to_dict(),
            "lower_bound_mixed": self.bound_mixed.to_dict() if self.bound_mixed else None,
            "offline": {p: r.solve for p, r in self.runs.items()},
            "results": self.table.to_dict(orient="records"),
            "paper": PAPER,
        }


def run_single_case(
    config: RunConfig | None = None,
    *,
    policies: tuple[str, ...] | list[str] = tuple(POLICIES),
    requests: pd.DataFrame | None = None,
    check: bool = True,
    **options,
) -> SingleCaseResult:
    """The paper's single case: every policy on one workload, with ``T_LB`` and its parts.

    ``config`` (default ``RunConfig()``: all of GSM8K on the paper's cluster) with
    ``options`` over it (``RunConfig``'s names: ``clients=4``, ``time_limit=30``, ...);
    ``requests``: a request table instead of ``config.workload``. ``seed`` only matters
    when ``num_requests`` samples the workload or a policy sorts randomly; a predictor
    gives planners noisy output lengths while the simulator runs the true ones.
    """
    config = (config or RunConfig()).replace(**options)
    for p in policies:
        policy_spec(p)
    cluster, serving, solve = config.cluster(), config.serving(), config.solve()
    reqs = requests_for(
        config.workload if requests is None else requests,
        config.num_requests,
        config.seed,
        config.prediction_sigma,
        config.prediction_seed,
        config.workload_options(),
        config.predictor,
    )
    instance = make_instance(
        apply_arrivals(reqs, serving.arrivals, serving.arrival_seed),
        cluster,
        config.token_budget or DEFAULT_PREFILL_BUDGET_TOKENS,
    )
    # One bound per admission mode the runs use (on-demand drops the reservation part).
    adm = {p: serving.admission or POLICIES[p].admission for p in policies}
    paper_adm = "reservation" if "reservation" in adm.values() else "on-demand"
    bound = full_lower_bound(instance, solve=solve, admission=paper_adm)
    bound_mixed = (
        full_lower_bound(instance, solve=solve, mixed_iterations=True, admission=paper_adm)
        if any(POLICIES[p].mixed for p in policies)
        else None
    )
    runs = _run_policies(instance, policies, config, check)
    table = _policy_table(runs, instance, adm, paper_adm, bound, bound_mixed, solve)
    params = _params(config, cluster, instance, reqs, requests, policies, serving)
    return SingleCaseResult(table, bound, runs, instance, params, bound_mixed)


def _params(config, cluster, instance, reqs, requests, policies, serving) -> dict:
    """What ``single_case.json`` records of the run's parameters."""
    named = "gsm8k-test" if config.workload == "gsm8k" else config.workload
    return {
        **cluster.to_dict(),
        "num_requests": instance.num_requests,
        "requests": named if requests is None else "dataframe",
        "workload": workload_info(reqs) or None,
        "policies": list(policies),
        "knobs": asdict(config.knobs()),
        "time_limit_s": config.time_limit,
        "mip_gap": config.mip_gap,
        "seed": config.seed,
        "prediction_sigma": config.prediction_sigma,
        "prediction_seed": config.prediction_seed,
        "predictor": predictor_spec(config.predictor, config.prediction_sigma) or "oracle",
        "serving": serving.to_dict(),
        "versions": versions(),
    }


def _bound_of(instance, policy, admission, paper_adm, bound, bound_mixed, solve) -> LowerBound:
    """The bound of ``policy``'s own model: its iteration kinds and its admission mode."""
    if admission == paper_adm:
        return bound_for(policy, bound, bound_mixed)
    mixed = policy_spec(policy).mixed
    return full_lower_bound(instance, solve=solve, mixed_iterations=mixed, admission=admission)


def _run_policies(instance, policies, config, check) -> dict[str, RunResult]:
    """Every policy on the instance, with the run's overrides, KV settings and SLO."""
    serving, knobs, solve, kv = config.serving(), config.knobs(), config.solve(), config.kv()
    return {
        p: run_policy(
            instance,
            p,
            knobs,
            solve,
            check=check,
            router=serving.router,
            admission=serving.admission,
            slo_ttft_s=serving.slo_ttft_s,
            slo_tpot_s=serving.slo_tpot_s,
            kv=kv,
        )
        for p in policies
    }


def _policy_table(runs, instance, adm, paper_adm, bound, bound_mixed, solve) -> pd.DataFrame:
    """One row per policy: its metrics and its gap to its own bound and to the baseline's."""
    rows = []
    for p, r in runs.items():
        spec = POLICIES[p]
        rows.append(
            {
                "policy": p,
                "description": spec.description,
                "router": r.router,
                "admission": r.admission,
                **r.metrics,
                "simulate_s": r.simulate_s,
            }
        )
    lbs = [
        _bound_of(instance, p, adm[p], paper_adm, bound, bound_mixed, solve).lower_bound_s
        for p in runs
    ]
    table = _gap_columns(pd.DataFrame(rows), lbs)
    return table
