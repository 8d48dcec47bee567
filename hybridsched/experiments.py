"""The experiments: named policies, the single case and the 100-case study.

This is the only module that wires the offline solver, the online rules and the
simulator together; notebooks and the CLI call these functions.

Named policies (docs/model.md section 7, ablations):

==================  ===============  ===========  ===============  ============
policy              router           queue        online rule      admission
==================  ===============  ===========  ===============  ============
``baseline``        round-robin      FCFS         prefill-first    reservation
``a``               round-robin      FCFS         Lagrangian       reservation
``a-sorted``        round-robin      longest      Lagrangian       reservation
``b``               MMBPP            FCFS         prefill-first    reservation
``c``               MMBPP            longest      prefill-first    reservation
``hybrid``          MMBPP            longest      Lagrangian       reservation
``chunked``         round-robin      FCFS         chunked prefill  reservation
``hybrid-chunked``  MMBPP            longest      chunked prefill  reservation
``vllm``            round-robin      FCFS         chunked prefill  on-demand
``online-hybrid``   rolling-mmbpp    longest      Lagrangian       on-demand
``hybrid-reserve-hi``  MMBPP         longest      Lagrangian       estimates from ``hi``
``hybrid-sort-hi``  MMBPP            longest hi   Lagrangian       estimates from ``ô``
``hybrid-amin``     MMBPP            longest      Lagrangian       estimates from ``lo``
``amin``            round-robin      shortest lo  prefill-first    estimates from ``lo``
==================  ===============  ===========  ===============  ============

The last four use the predictor's interval (``interval_rules.py``): a request counts
``s_i + est_i`` KV tokens at admission, with ``est_i`` starting at a quantile of its
interval and raised as its tokens reach it; they run under on-demand admission with
watermark 0, which preempts by recompute if the KV held would exceed ``M``.

The paper's policies plan up front (a ``static`` router with the offline stage's
assignment: round-robin or the MMBPP); ``--router`` and ``--admission`` override a
policy's defaults (``routing.py``, ``engine/admission.py``).

Result tables (tidy DataFrames):

- ``single_case``: one row per policy: ``policy``, ``makespan_s``, ``utilization``,
  ``mean_batch``, ``num_prefill_iterations``, ``lower_bound_s``, ``gap_to_lb``
  (``(T - T_LB) / T_LB``), ``gap_closed`` (``(T_base - T) / (T_base - T_LB)``), and the
  other metrics of ``metrics.metrics``.
- ``study_cases``: one row per case and policy: ``case``, ``seed``, ``policy``,
  ``makespan_s``, ``utilization``, ``mean_batch``, ``lower_bound_s``, ``gap_to_lb``.
- ``study_summary``: one row per policy: mean/min/max of U and makespan, and for
  non-baseline policies the mean U gain (percentage points), the mean makespan
  reduction and the number of wins over the baseline.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from hybridsched import __version__
from hybridsched.arrivals import apply_arrivals
from hybridsched.bounds import LowerBound, lower_bound, planning_sizes, work_floors
from hybridsched.data import (
    load_gsm8k,
    prompt_texts,
    sample_requests,
    validate_requests,
)
from hybridsched.instance import Cluster, Instance, make_instance
from hybridsched.metrics import metrics, request_table
from hybridsched.policies import ChunkedPrefill, Lagrangian, PrefillFirst, round_robin
from hybridsched.predictors import apply_predictor, parse_predictor, predictor_spec
from hybridsched.simulator import OnlineRule, simulate
from hybridsched.workloads import load_workload, workload_info

PAPER = {
    "baseline_utilization": 0.802,
    "hybrid_utilization": 0.891,
    "baseline_makespan_s": 201.00,
    "hybrid_makespan_s": 190.58,
    "lower_bound_s": 180.0,
    "study_mean_utilization_gain_pp": 8.0,
}


@dataclass(frozen=True)
class PolicySpec:
    """A named combination of the offline stage, the queue order and the online rule."""

    name: str
    dispatch: str  # "round_robin" | "mmbpp"
    sort: str  # see policies.SORT_KEYS
    rule: str  # "prefill_first" | "lagrangian" | "chunked"
    description: str = ""
    router: str = "static"  # engine.ROUTERS; "static" plans with ``dispatch`` up front
    admission: str = "reservation"  # engine.ADMISSIONS
    # Interval policies (interval_rules.py): admit by growing estimates from this quantile
    # of the predicted interval, and optionally sort by a quantile; run on demand with
    # this watermark unless ``admission`` is overridden.
    reserve: str | None = None
    sort_quantile: str | None = None
    watermark: float | None = None

    @property
    def mixed(self) -> bool:
        """Runs mixed (chunked-prefill) iterations, so the mixed-iteration bound applies."""
        return self.rule == "chunked"


POLICIES: dict[str, PolicySpec] = {
    p.name: p
    for p in (
        PolicySpec(
            "baseline",
            "round_robin",
            "fcfs",
            "prefill_first",
            "vLLM-style: round-robin, FCFS, prefill-first",
        ),
        PolicySpec(
            "a", "round_robin", "fcfs", "lagrangian", "(a) round-robin + FCFS + Lagrangian rule"
        ),
        PolicySpec(
            "a-sorted",
            "round_robin",
            "longest",
            "lagrangian",
            "(a') round-robin + sorted + Lagrangian rule",
        ),
        PolicySpec("b", "mmbpp", "fcfs", "prefill_first", "(b) MMBPP + FCFS + prefill-first"),
        PolicySpec("c", "mmbpp", "longest", "prefill_first", "(c) MMBPP + sorted + prefill-first"),
        PolicySpec(
            "hybrid",
            "mmbpp",
            "longest",
            "lagrangian",
            "(d) MMBPP + sorted + Lagrangian rule: the paper's method",
        ),
        PolicySpec(
            "chunked",
            "round_robin",
            "fcfs",
            "chunked",
            "beyond the paper: vLLM-style chunked prefill (round-robin, FCFS, mixed iterations)",
        ),
        PolicySpec(
            "hybrid-chunked",
            "mmbpp",
            "longest",
            "chunked",
            "beyond the paper: MMBPP + sorted + chunked prefill",
        ),
        PolicySpec(
            "hybrid-robust",
            "portfolio",
            "longest",
            "lagrangian",
            "beyond the paper: the best of the hybrid, the baseline and memory-aware "
            "variants, planned on the predicted lengths with the simulator",
        ),
        PolicySpec(
            "vllm",
            "round_robin",
            "fcfs",
            "chunked",
            "vLLM today: round-robin, FCFS, chunked prefill, on-demand KV with recompute",
            router="round-robin",
            admission="on-demand",
        ),
        PolicySpec(
            "online-hybrid",
            "mmbpp",
            "longest",
            "lagrangian",
            "the paper's method online: rolling MMBPP, sorted, Lagrangian rule, on-demand KV",
            router="rolling-mmbpp",
            admission="on-demand",
        ),
        PolicySpec(
            "hybrid-reserve-hi",
            "mmbpp",
            "longest",
            "lagrangian",
            "the hybrid reserving s_i + hi_i (the interval's upper end), recompute on overflow",
            admission="on-demand",
            reserve="hi",
            watermark=0.0,
        ),
        PolicySpec(
            "hybrid-sort-hi",
            "mmbpp",
            "longest",
            "lagrangian",
            "the hybrid with its queue sorted by hi_i, reserving s_i + ô_i, recompute on overflow",
            admission="on-demand",
            reserve="mid",
            sort_quantile="hi",
            watermark=0.0,
        ),
        PolicySpec(
            "hybrid-amin",
            "mmbpp",
            "longest",
            "lagrangian",
            "the hybrid with A_min admission: estimates start at lo_i and grow, recompute",
            admission="on-demand",
            reserve="lo",
            watermark=0.0,
        ),
        PolicySpec(
            "amin",
            "round_robin",
            "shortest",
            "prefill_first",
            "A_min (Chen, Ye, Zhou): shortest lo_i first, estimates start at lo_i and grow, "
            "recompute",
            admission="on-demand",
            reserve="lo",
            sort_quantile="lo",
            watermark=0.0,
        ),
    )
}


@dataclass(frozen=True)
class RuleKnobs:
    """Knobs of the online rules (``policies.Lagrangian``, ``policies.ChunkedPrefill``) and the sort seed."""

    lambda_multiplier: float = 1.0
    horizon: int = 64
    min_prefill: int = 1
    idle_price: str = "fillable"
    sort: str | None = None  # overrides the policy's sort key
    seed: int = 0
    token_budget: int | None = None  # chunked prefill: tokens per iteration (default 2048)

    @classmethod
    def from_dict(cls, d: dict | None) -> RuleKnobs:
        d = dict(d or {})
        unknown = set(d) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown rule knob(s): {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass(frozen=True)
class SolveSettings:
    """How the offline MMBPP is solved. ``threads=1`` keeps results independent of load."""

    time_limit_s: float = 10.0
    mip_gap: float = 1e-4
    threads: int | None = 1
    replan_s: float = 1.0  # rolling-mmbpp: seconds between replans


@dataclass(frozen=True)
class Serving:
    """The online-serving setting of a run (docs/model.md section 11).

    ``router``/``admission`` override each policy's defaults (None: keep them);
    ``arrivals`` is an arrival spec (``arrivals.py``; ``table`` keeps the table's own
    ``arrival_s``, which is 0 for GSM8K, the paper's setting), seeded by ``arrival_seed``;
    ``slo_ttft_s``/``slo_tpot_s`` are the SLO targets of ``slo_attainment``.
    """

    router: str | None = None
    admission: str | None = None
    arrivals: str = "table"
    arrival_seed: int = 0
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def policy_spec(name: str) -> PolicySpec:
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
    return POLICIES[name]


def make_rule(spec: PolicySpec, knobs: RuleKnobs = RuleKnobs()) -> OnlineRule:
    rule = _point_rule(spec, knobs)
    if spec.reserve is None:
        return rule
    from hybridsched.interval_rules import EstimateAdmission

    sort_q = spec.sort_quantile if knobs.sort is None else None
    return EstimateAdmission(rule, spec.reserve, sort_q, name=f"estimates-{spec.reserve}")


def _point_rule(spec: PolicySpec, knobs: RuleKnobs) -> OnlineRule:
    sort = knobs.sort or spec.sort
    if spec.rule == "prefill_first":
        return PrefillFirst(sort=sort, seed=knobs.seed)
    if spec.rule == "chunked":
        return ChunkedPrefill(sort=sort, token_budget=knobs.token_budget, seed=knobs.seed)
    return Lagrangian(
        sort=sort,
        lambda_multiplier=knobs.lambda_multiplier,
        horizon=knobs.horizon,
        min_prefill=knobs.min_prefill,
        idle_price=knobs.idle_price,
        seed=knobs.seed,
    )


def offline_assignment(instance: Instance, dispatch: str, solve: SolveSettings = SolveSettings()):
    """``(assignment, solve_info)``: round-robin, or the MMBPP on the planning sizes."""
    if dispatch == "round_robin":
        return round_robin(instance), {"status": "n/a", "dispatch": "round_robin"}
    if dispatch == "mmbpp":
        from hybridsched.mmbpp import solve_assignment

        res = solve_assignment(
            planning_sizes(instance),
            time_limit_s=solve.time_limit_s,
            mip_gap=solve.mip_gap,
            threads=solve.threads,
        )
        return res.assignment, {"dispatch": "mmbpp", **res.to_dict()}
    raise ValueError(f"dispatch must be 'round_robin' or 'mmbpp', got {dispatch!r}")


def full_lower_bound(
    instance: Instance,
    solve_mmbpp: bool = True,
    solve: SolveSettings = SolveSettings(),
    mixed_iterations: bool = False,
    admission: str = "reservation",
) -> LowerBound:
    """``T_LB`` with every part, the MMBPP part solved on the largest floors (true lengths).

    ``mixed_iterations``: the bound for schedules with chunked-prefill iterations.
    ``admission``: ``reservation`` or ``on-demand`` (``bounds.lower_bound``); the MMBPP's
    sizes are the floors valid for it. Requests with a zero floor on some client are left
    out of the MMBPP (fewer items: its bound stays valid).
    """
    mmbpp = 0.0
    if solve_mmbpp:
        from hybridsched.mmbpp import assignment_bound

        od = admission == "on-demand"
        variants = ("memory", "compute") + (() if od else ("reserved",))
        sizes = max(
            (work_floors(instance, v, mixed_iterations, on_demand=od) for v in variants),
            key=np.sum,
        )
        sizes = sizes[(sizes > 0).all(axis=1)]
        if len(sizes):
            mmbpp = assignment_bound(
                sizes, time_limit_s=solve.time_limit_s, mip_gap=solve.mip_gap, threads=solve.threads
            )
    return lower_bound(
        instance, mmbpp_bound_s=mmbpp, mixed_iterations=mixed_iterations, admission=admission
    )


def bound_for(policy: str, bound: LowerBound, bound_mixed: LowerBound | None) -> LowerBound:
    """The bound that applies to ``policy``: the mixed-iteration one for chunked policies."""
    if policy_spec(policy).mixed:
        if bound_mixed is None:
            raise ValueError(f"policy {policy!r} needs the mixed-iteration bound")
        return bound_mixed
    return bound


@dataclass
class RunResult:
    policy: str
    trace: pd.DataFrame
    metrics: dict
    assignment: np.ndarray
    solve: dict
    simulate_s: float
    requests: pd.DataFrame | None = None  # the per-request table (metrics.request_table)
    evictions: pd.DataFrame | None = None
    router: str = "static"
    admission: str = "reservation"
    router_log: list = field(default_factory=list)


def run_policy(
    instance: Instance,
    policy: str,
    knobs: RuleKnobs = RuleKnobs(),
    solve: SolveSettings = SolveSettings(),
    check: bool = False,
    assignment=None,
    router: str | None = None,
    admission: str | None = None,
    slo_ttft_s: float | None = None,
    slo_tpot_s: float | None = None,
) -> RunResult:
    """One named policy on one instance, through the serving engine.

    ``router`` and ``admission`` override the policy's defaults; ``assignment`` fixes a
    static plan. The metrics come from the trace and the request table only.
    """
    from hybridsched.routing import make_router, mmbpp_solver
    from hybridsched.simulator import simulate_run

    spec = policy_spec(policy)
    info: dict = {"dispatch": "given"}
    router = router or ("static" if assignment is not None else spec.router)
    engine_admission = admission or spec.admission
    if admission is None and spec.watermark is not None:
        from hybridsched.engine import Admission

        engine_admission = Admission(spec.admission, spec.watermark)
    admission = admission or spec.admission
    plan = {}

    def static_plan():
        from hybridsched.simulator import _check_assignment

        if assignment is not None:
            return _check_assignment(instance, assignment)
        a, plan["info"] = offline_assignment(instance, spec.dispatch, solve)
        return _check_assignment(instance, a)

    portfolio = spec.dispatch == "portfolio" and router == "static" and assignment is None
    r = make_router(
        router,
        (lambda: np.zeros(instance.num_requests, dtype=np.int64)) if portfolio else static_plan,
        seed=knobs.seed,
        replan_s=solve.replan_s,
        solver=mmbpp_solver(solve.time_limit_s, solve.mip_gap, solve.threads),
    )
    if router == "static":
        info = plan.get("info", info)
    elif router == "rolling-mmbpp":
        info = {"dispatch": "rolling-mmbpp"}
    else:
        info = {"dispatch": router}
    rule = make_rule(spec, knobs)
    if portfolio:
        choice = _portfolio(instance, solve)
        r = make_router("static", lambda: choice.assignment)
        rule = choice.rule
        info = {
            "dispatch": "portfolio",
            "choice": choice.name,
            "predicted_makespan_s": choice.predicted_makespan_s,
            "candidates": choice.candidates,
        }
    t0 = time.perf_counter()
    res = simulate_run(instance, r, rule, engine_admission, check=check)
    elapsed = time.perf_counter() - t0
    if router == "rolling-mmbpp":
        info["replans"] = len(res.router_log)
    req = request_table(res.trace, instance, res.evictions, res.dispatch_s)
    m = metrics(res.trace, instance, res.evictions, slo_ttft_s, slo_tpot_s, req=req)
    return RunResult(
        policy,
        res.trace,
        m,
        res.dispatch_client,
        info,
        elapsed,
        req,
        res.evictions,
        router,
        res.admission,
        res.router_log,
    )


def _portfolio(instance: Instance, solve: SolveSettings):
    """The portfolio planner (``portfolio.py``) with the MMBPP on HiGHS as its assignment."""
    from hybridsched.mmbpp import solve_assignment
    from hybridsched.portfolio import plan

    def assign(sizes):
        return solve_assignment(
            sizes, time_limit_s=solve.time_limit_s, mip_gap=solve.mip_gap, threads=solve.threads
        ).assignment

    return plan(instance, assign)


def versions() -> dict:
    """Package versions for the outputs; a solver package that is missing (or cannot be
    imported) is reported as "not installed", never raised."""
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    out = {
        "hybridsched": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }
    for pkg in ("pyomo", "highspy"):
        try:
            importlib.import_module(pkg)
            out[pkg] = version(pkg)
        except (ImportError, PackageNotFoundError):
            out[pkg] = "not installed"
    return out


def _gap_columns(table: pd.DataFrame, lb) -> pd.DataFrame:
    """``gap_to_lb`` and ``gap_closed`` against each row's own bound (``lb``: scalar or per row)."""
    table["lower_bound_s"] = lb
    lbs = table["lower_bound_s"]
    table["gap_to_lb"] = (table["makespan_s"] - lbs) / lbs
    if "baseline" in set(table["policy"]):
        tb = float(table.loc[table["policy"] == "baseline", "makespan_s"].iloc[0])
        table["gap_closed"] = ((tb - table["makespan_s"]) / (tb - lbs)).where(tb > lbs)
    return table


def requests_for(
    requests: pd.DataFrame | str | None,
    num_requests: int | None = None,
    seed: int = 0,
    prediction_sigma: float = 0.0,
    prediction_seed: int = 0,
    workload_options: dict | None = None,
    predictor: str | None = None,
) -> pd.DataFrame:
    """The request table: a DataFrame, a workload name or file path, or GSM8K (``None``).

    A name or path goes through ``workloads.load_workload`` with ``workload_options``
    (window, rate scale, context check, ...; docs/model.md "Workloads"). Optionally a
    seeded sample of ``num_requests``, and the predicted lengths planners see:
    ``predictor`` (a ``predictors.parse_predictor`` spec, seeded by ``prediction_seed``)
    or, the older way, multiplicative lognormal error of ``prediction_sigma`` (=
    ``predictor="noisy:SIGMA"``; not both). Neither: the true lengths, the paper's setting
    (docs/model.md section 8, "Length predictors").
    """
    spec = predictor_spec(predictor, prediction_sigma)
    if requests is None and not workload_options:
        df = load_gsm8k()
    elif isinstance(requests, pd.DataFrame):
        df = validate_requests(requests)
    else:
        df = load_workload("gsm8k" if requests is None else requests, **(workload_options or {}))
    info = workload_info(df)
    chosen = parse_predictor(predictor) if predictor is not None else spec
    texts = prompt_texts(requests, df) if getattr(chosen, "reads_texts", False) else None
    if num_requests is not None and num_requests < len(df):
        df = sample_requests(df, num_requests, seed)
    if chosen is not None:
        df = apply_predictor(df, chosen, prediction_seed, texts)
    if info:
        df.attrs["workload"] = info
    return df


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
    clients: int = 2,
    tp: int = 4,
    max_batch: int = 32,
    requests: pd.DataFrame | str | None = None,
    num_requests: int | None = None,
    policies: tuple[str, ...] | list[str] = tuple(POLICIES),
    knobs: dict | RuleKnobs | None = None,
    time_limit_s: float = 10.0,
    mip_gap: float = 1e-4,
    seed: int = 0,
    check: bool = True,
    model: str = "llama-65b",
    hardware: str = "a100-80gb-sxm",
    latency: str = "roofline",
    prediction_sigma: float = 0.0,
    prediction_seed: int = 0,
    workload_options: dict | None = None,
    predictor: str | None = None,
    serving: Serving = Serving(),
) -> SingleCaseResult:
    """The paper's single case: every policy on one workload, with ``T_LB`` and its parts.

    ``seed`` only matters when ``num_requests`` samples the workload or a policy sorts
    randomly; ``prediction_sigma > 0`` gives planners noisy output lengths (seeded by
    ``prediction_seed``) while the simulator runs the true ones; ``predictor`` names any
    other predictor (``predictors.parse_predictor``; not together with a sigma).
    """
    knobs = knobs if isinstance(knobs, RuleKnobs) else RuleKnobs.from_dict(knobs)
    cluster = Cluster(
        model=model,
        hardware=hardware,
        num_clients=clients,
        tp=tp,
        max_batch=max_batch,
        latency=latency,
    )
    reqs = requests_for(
        requests, num_requests, seed, prediction_sigma, prediction_seed, workload_options, predictor
    )
    instance = make_instance(apply_arrivals(reqs, serving.arrivals, serving.arrival_seed), cluster)
    solve = SolveSettings(time_limit_s, mip_gap)
    for p in policies:
        policy_spec(p)
    # One bound per admission mode the runs use (on-demand drops the reservation part).
    adm = {p: serving.admission or POLICIES[p].admission for p in policies}
    paper_adm = "reservation" if "reservation" in adm.values() else "on-demand"
    bound = full_lower_bound(instance, solve=solve, admission=paper_adm)
    bound_mixed = (
        full_lower_bound(instance, solve=solve, mixed_iterations=True, admission=paper_adm)
        if any(POLICIES[p].mixed for p in policies)
        else None
    )
    runs = {
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
        )
        for p in policies
    }
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
    params = {
        **cluster.to_dict(),
        "num_requests": instance.num_requests,
        "requests": "gsm8k-test"
        if requests is None
        else (requests if isinstance(requests, str) else "dataframe"),
        "workload": workload_info(reqs) or None,
        "policies": list(policies),
        "knobs": asdict(knobs),
        "time_limit_s": time_limit_s,
        "mip_gap": mip_gap,
        "seed": seed,
        "prediction_sigma": prediction_sigma,
        "prediction_seed": prediction_seed,
        "predictor": predictor_spec(predictor, prediction_sigma) or "oracle",
        "serving": serving.to_dict(),
        "versions": versions(),
    }
    return SingleCaseResult(table, bound, runs, instance, params, bound_mixed)


def _bound_of(instance, policy, admission, paper_adm, bound, bound_mixed, solve) -> LowerBound:
    """The bound of ``policy``'s own model: its iteration kinds and its admission mode."""
    if admission == paper_adm:
        return bound_for(policy, bound, bound_mixed)
    mixed = policy_spec(policy).mixed
    return full_lower_bound(instance, solve=solve, mixed_iterations=mixed, admission=admission)


# --- the exact MIP on a tiny instance --------------------------------------------------


@dataclass
class ExactResult:
    """The exact MIP's optimum and its schedule replayed through the simulator."""

    mip: object  # iteration_mip.IterationMIPResult
    trace: pd.DataFrame
    metrics: dict


def linear_coefficients(latency):
    """The exact MIP's coefficients from a ``LinearLatency``."""
    from hybridsched.iteration_mip import LinearCoefficients
    from hybridsched.latency import LinearLatency

    if not isinstance(latency, LinearLatency):
        raise ValueError(
            f"the exact MIP needs clients with a linear latency model, got {type(latency).__name__}"
        )
    return LinearCoefficients(latency.a_p, latency.b_p, latency.a_d, latency.b_d, latency.c_d)


def solve_exact(
    instance: Instance, time_limit_s: float = 60.0, mip_gap: float = 0.0
) -> ExactResult:
    """Solve the exact iteration MIP and replay its schedule in the simulator (invariants checked).

    Raises ``RuntimeError`` if the replay's makespan differs from the MIP's (relative
    1e-6): the two models must agree, or one of them is wrong.
    """
    from hybridsched.iteration_mip import solve_iteration_mip
    from hybridsched.policies import Scripted

    c = instance.clients[0]
    if any(x != c for x in instance.clients):
        raise ValueError("the exact MIP needs identical clients")
    mip = solve_iteration_mip(
        instance.prompt,
        instance.output,
        instance.num_clients,
        c.max_batch,
        c.kv_capacity_tokens,
        linear_coefficients(c.latency),
        prefill_budget_tokens=instance.prefill_budget_tokens,
        reservation_tokens=instance.reservation,
        time_limit_s=time_limit_s,
        mip_gap=mip_gap,
    )
    if mip.assignment is None:
        raise RuntimeError(f"the exact MIP found no schedule: {mip.fallback_reason}")
    trace = simulate(instance, mip.assignment.astype(np.int64), Scripted(mip.actions), check=True)
    m = metrics(trace, instance)
    if not np.isclose(m["makespan_s"], mip.makespan_s, rtol=1e-6, atol=0):
        raise RuntimeError(
            f"replay makespan {m['makespan_s']:.9f} s != MIP makespan {mip.makespan_s:.9f} s"
        )
    return ExactResult(mip, trace, m)


# --- the 100-case study ------------------------------------------------------------------


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
    cases: int = 100,
    requests_per_case: int = 1000,
    clients: int = 2,
    tp: int = 4,
    max_batch: int = 32,
    policies: tuple[str, ...] | list[str] = ("baseline", "hybrid"),
    knobs: dict | RuleKnobs | None = None,
    workers: int = 2,
    requests: pd.DataFrame | str | None = None,
    first_seed: int = 1,
    time_limit_s: float = 10.0,
    mip_gap: float = 1e-3,
    progress: bool = True,
    workload_options: dict | None = None,
    prediction_sigma: float = 0.0,
    prediction_seed: int = 0,
    predictor: str | None = None,
    serving: Serving = Serving(),
    model: str = "llama-65b",
    hardware: str = "a100-80gb-sxm",
    engine: str = "processes",
    scheduler: str | None = None,
) -> StudyResult:
    """Case ``k`` draws ``requests_per_case`` requests with seed ``first_seed + k - 1``.

    Cases run on ``runner.Engine(engine, workers, scheduler)``: ``processes`` (a pool of
    ``workers`` processes; one worker runs in this process), ``dask`` (a local cluster of
    ``workers``, or the running cluster at ``scheduler``) or ``serial``; the request table
    reaches each worker once. Each solve uses one HiGHS thread, so the results do not
    depend on the engine or the number of workers. A failing case is listed in ``failures``.
    The default MMBPP gap is 0.1%: with 1,000 requests LPT is usually already there, and a
    tighter gap costs seconds per case for milliseconds of makespan.
    Predictions (``predictor`` or ``prediction_sigma``, as in ``requests_for``) are made
    once on the whole table, seeded by ``prediction_seed``, so a request keeps its
    prediction in every case that draws it.
    """

    knobs = knobs if isinstance(knobs, RuleKnobs) else RuleKnobs.from_dict(knobs)
    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    for p in policies:
        policy_spec(p)
    base = requests_for(
        requests,
        prediction_sigma=prediction_sigma,
        prediction_seed=prediction_seed,
        workload_options=workload_options,
        predictor=predictor,
    )
    if not 1 <= requests_per_case <= len(base):
        raise ValueError(f"requests_per_case must be in 1..{len(base)}, got {requests_per_case}")
    cluster = Cluster(
        model=model, hardware=hardware, num_clients=clients, tp=tp, max_batch=max_batch
    )
    cluster.make_clients()  # fail fast on a bad cluster, before any process starts
    solve = SolveSettings(time_limit_s, mip_gap, threads=1)
    from hybridsched.runner import Engine, JobError

    jobs = [
        _Case(
            k,
            first_seed + k - 1,
            None,
            requests_per_case,
            cluster,
            tuple(policies),
            knobs,
            solve,
            serving,
        )
        for k in range(1, cases + 1)
    ]
    if engine == "processes" and workers == 1:
        engine = "serial"
    t0 = time.perf_counter()
    with Engine(engine, workers, scheduler, progress=progress) as eng:
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
        "time_limit_s": time_limit_s,
        "mip_gap": mip_gap,
        "prediction_sigma": prediction_sigma,
        "prediction_seed": prediction_seed,
        "predictor": predictor_spec(predictor, prediction_sigma) or "oracle",
        "serving": serving.to_dict(),
        "versions": versions(),
    }
    return StudyResult(
        table, summary, pd.DataFrame(failures, columns=["case", "seed", "error"]), params, wall
    )
