"""The named policies (``POLICIES``) and the settings a run takes: rule knobs, solve, serving.

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

The last four use the predictor's interval (``policies/interval.py``): a request counts
``s_i + est_i`` KV tokens at admission, with ``est_i`` starting at a quantile of its
interval and raised as its tokens reach it; they run under on-demand admission with
watermark 0, which preempts by recompute if the KV held would exceed ``M``.

The paper's policies plan up front (a ``static`` router with the offline stage's
assignment: round-robin or the MMBPP); ``--router`` and ``--admission`` override a
policy's defaults (``policies/registry.py``, ``engine/admission.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from hybridsched.engine.state import OnlineRule
from hybridsched.engine.views import Router
from hybridsched.policies.chunked import ChunkedPrefill
from hybridsched.policies.lagrangian import Lagrangian
from hybridsched.policies.prefill_first import PrefillFirst
from hybridsched.policies.rolling import RollingMMBPP
from hybridsched.policies.routers import (
    LeastKV,
    LeastWork,
    PowerOfTwo,
    PrefixAffinity,
    RoundRobin,
    VllmDP,
)
from hybridsched.policies.static import StaticRouter


@dataclass(frozen=True)
class PolicySpec:
    """A named combination of the offline stage, the queue order and the online rule."""

    name: str
    dispatch: str  # "round-robin" | "mmbpp" | "portfolio": the offline stage of a static plan
    sort: str  # see policies.SORT_KEYS
    rule: str  # RULES: "prefill-first" | "lagrangian" | "chunked"
    description: str = ""
    router: str = "static"  # ROUTERS; "static" plans with ``dispatch`` up front
    admission: str = "reservation"  # ADMISSIONS (instance.py)
    # Interval policies (policies/interval.py): admit by growing estimates from this quantile
    # of the predicted interval, and optionally sort by a quantile; run on demand with
    # this watermark unless ``admission`` is overridden.
    reserve: str | None = None
    sort_quantile: str | None = None
    watermark: float | None = None

    @property
    def mixed(self) -> bool:
        """Runs mixed (chunked-prefill) iterations, so the mixed-iteration bound applies."""
        return self.rule == "chunked"


# Policies that use the predictor's interval (docs/model.md section 8).
INTERVAL_POLICIES = (
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
        "round-robin",
        "shortest",
        "prefill-first",
        "A_min (Chen, Ye, Zhou): shortest lo_i first, estimates start at lo_i and grow, recompute",
        admission="on-demand",
        reserve="lo",
        sort_quantile="lo",
        watermark=0.0,
    ),
)

POLICIES: dict[str, PolicySpec] = {
    p.name: p
    for p in (
        PolicySpec(
            "baseline",
            "round-robin",
            "fcfs",
            "prefill-first",
            "vLLM-style: round-robin, FCFS, prefill-first",
        ),
        PolicySpec(
            "a", "round-robin", "fcfs", "lagrangian", "(a) round-robin + FCFS + Lagrangian rule"
        ),
        PolicySpec(
            "a-sorted",
            "round-robin",
            "longest",
            "lagrangian",
            "(a') round-robin + sorted + Lagrangian rule",
        ),
        PolicySpec("b", "mmbpp", "fcfs", "prefill-first", "(b) MMBPP + FCFS + prefill-first"),
        PolicySpec("c", "mmbpp", "longest", "prefill-first", "(c) MMBPP + sorted + prefill-first"),
        PolicySpec(
            "hybrid",
            "mmbpp",
            "longest",
            "lagrangian",
            "(d) MMBPP + sorted + Lagrangian rule: the paper's method",
        ),
        PolicySpec(
            "chunked",
            "round-robin",
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
            "round-robin",
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
        *INTERVAL_POLICIES,
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
    from hybridsched.policies.interval import EstimateAdmission

    sort_q = spec.sort_quantile if knobs.sort is None else None
    return EstimateAdmission(rule, spec.reserve, sort_q, name=f"estimates-{spec.reserve}")


# The online rules by name: adding one is a file in policies/ and a line here.
RULE_FACTORIES: dict[str, Callable[[str, RuleKnobs], OnlineRule]] = {
    "prefill-first": lambda sort, k: PrefillFirst(sort=sort, seed=k.seed),
    "chunked": lambda sort, k: ChunkedPrefill(sort=sort, token_budget=k.token_budget, seed=k.seed),
    "lagrangian": lambda sort, k: Lagrangian(
        sort=sort,
        lambda_multiplier=k.lambda_multiplier,
        horizon=k.horizon,
        min_prefill=k.min_prefill,
        idle_price=k.idle_price,
        seed=k.seed,
    ),
}
RULES = tuple(RULE_FACTORIES)


def _point_rule(spec: PolicySpec, knobs: RuleKnobs) -> OnlineRule:
    if spec.rule not in RULE_FACTORIES:
        raise ValueError(
            f"policy {spec.name!r}: rule must be one of {', '.join(RULES)}, got {spec.rule!r}"
        )
    return RULE_FACTORIES[spec.rule](knobs.sort or spec.sort, knobs)


@dataclass(frozen=True)
class RouterContext:
    """What building a router may need: the static plan (called only by ``static``), the
    power-of-two seed, the replan period and the MMBPP solver handed to ``rolling-mmbpp``
    (``None``: LPT only; the policies never import a solver)."""

    static_plan: Callable[[], np.ndarray] | None = None
    seed: int = 0
    replan_s: float = 1.0
    solver: Callable | None = None


def _static(c: RouterContext) -> Router:
    if c.static_plan is None:
        raise ValueError("router 'static' needs a plan (the policy's offline stage)")
    return StaticRouter(assignment=np.asarray(c.static_plan(), dtype=np.int64))


# The routers by name: adding one is a class in routers.py (or its own file) and a line here.
ROUTER_FACTORIES: dict[str, Callable[[RouterContext], Router]] = {
    "static": _static,
    "round-robin": lambda c: RoundRobin(),
    "least-work": lambda c: LeastWork(),
    "least-kv": lambda c: LeastKV(),
    "power-of-two": lambda c: PowerOfTwo(seed=c.seed),
    "rolling-mmbpp": lambda c: RollingMMBPP(solve=c.solver, replan_s=c.replan_s),
    "prefix-affinity": lambda c: PrefixAffinity(),
    "vllm-dp": lambda c: VllmDP(),
}
ROUTERS = tuple(ROUTER_FACTORIES)


def make_router(
    name: str,
    static_plan: Callable[[], np.ndarray] | None = None,
    seed: int = 0,
    replan_s: float = 1.0,
    solver: Callable | None = None,
) -> Router:
    """The router called ``name`` (``ROUTERS``); ``static`` asks ``static_plan()`` for its plan."""
    if name not in ROUTER_FACTORIES:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, got {name!r}")
    return ROUTER_FACTORIES[name](RouterContext(static_plan, seed, replan_s, solver))
