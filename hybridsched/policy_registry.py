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
==================  ===============  ===========  ===============  ============

The paper's policies plan up front (a ``static`` router with the offline stage's
assignment: round-robin or the MMBPP); ``--router`` and ``--admission`` override a
policy's defaults (``routing.py``, ``engine/admission.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hybridsched.policies import ChunkedPrefill, Lagrangian, PrefillFirst
from hybridsched.simulator import OnlineRule


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
