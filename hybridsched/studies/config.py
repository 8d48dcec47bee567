"""One run's parameters: ``RunConfig``, the vocabulary and defaults every entry point shares.

The names are the command line's options, underscored (``--time-limit`` is ``time_limit``):
the same names are the keys of a sweep grid, the columns of a sweep's results and the
keywords of the studies (``run_single_case(clients=4)``). Units: ``time_limit``,
``replan_s``, ``slo_ttft``, ``slo_tpot`` and ``window`` are seconds; lengths are tokens.

=====================  ==================================================================
workload               ``workload`` (a name or a file), ``format``, ``window``,
                       ``max_requests``, ``fit_context``, ``max_context``,
                       ``num_requests`` (a seeded sample), ``seed``
predictions            ``predictor``, ``prediction_sigma``, ``prediction_seed``
arrivals               ``arrivals``, ``arrival_seed`` (default ``seed``), ``rate_scale``
cluster                ``model``, ``hardware``, ``clients``, ``tp``, ``max_batch``,
                       ``latency``
policy                 ``policy``, ``router``, ``admission`` (``None``: the policy's own),
                       ``replan_s``, ``lambda_multiplier``, ``horizon``, ``min_prefill``,
                       ``idle_price``, ``sort`` (``None``: the policy's), ``token_budget``
offline solve          ``time_limit``, ``mip_gap``
SLO                    ``slo_ttft``, ``slo_tpot``
checks                 ``check``
=====================  ==================================================================
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from hybridsched.instance import Cluster
from hybridsched.policies.registry import RuleKnobs, Serving, SolveSettings, policy_spec
from hybridsched.workloads.arrivals import parse_arrivals
from hybridsched.workloads.catalogue import parse_window


@dataclass(frozen=True)
class RunConfig:
    """One run's parameters (module docstring); build from untyped values with ``from_dict``."""

    workload: str = "gsm8k"
    format: str | None = None
    window: str | None = None
    max_requests: int | None = None
    fit_context: str = "error"
    max_context: int | None = None
    num_requests: int | None = None
    seed: int = 0
    prediction_sigma: float = 0.0
    prediction_seed: int = 0
    predictor: str | None = None
    arrivals: str = "table"
    arrival_seed: int | None = None
    rate_scale: float = 1.0
    model: str = "llama-65b"
    hardware: str = "a100-80gb-sxm"
    clients: int = 2
    tp: int = 4
    max_batch: int = 32
    latency: str = "roofline"
    policy: str = "baseline"
    router: str | None = None
    admission: str | None = None
    slo_ttft: float | None = None
    slo_tpot: float | None = None
    replan_s: float = 1.0
    lambda_multiplier: float = 1.0
    horizon: int = 64
    token_budget: int | None = None
    time_limit: float = 10.0
    mip_gap: float = 1e-4
    check: bool = False
    min_prefill: int = 1
    idle_price: str = "fillable"
    sort: str | None = None
    block_size: int = 16
    watermark: float = 0.0
    async_scheduling: bool | None = None
    kv_blocks: int | None = None
    gpu_memory_utilization: float = 0.9
    ep: int = 1
    prefix_caching: bool = True
    shared_prefix: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        """A config from option names to values (strings and numbers coerced, checked).

        Raises a ValueError naming the option and the value: an unknown name, a value of the
        wrong type, or one out of range; ``policy`` and ``arrivals`` are parsed too.
        """
        unknown = set(values) - set(NAMES)
        if unknown:
            raise unknown_error(unknown)
        kw = {k: _coerce(k, v) for k, v in values.items()}
        return cls(**kw)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_scale) and self.rate_scale > 0):
            raise ValueError(f"rate_scale must be > 0, got {self.rate_scale!r}")
        if not (math.isfinite(self.watermark) and 0 <= self.watermark < 1):
            raise ValueError(f"watermark must be in [0, 1), got {self.watermark!r}")
        g = self.gpu_memory_utilization
        if not (math.isfinite(g) and 0 < g <= 1):
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {g!r}")
        for name in (
            *("block_size", "ep", "kv_blocks", "token_budget", "num_requests", "max_requests"),
            *("clients", "tp", "max_batch", "horizon", "min_prefill"),
        ):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v!r}")
        if self.shared_prefix < 0:
            raise ValueError(f"shared_prefix must be >= 0, got {self.shared_prefix!r}")
        if self.tp % self.ep:
            raise ValueError(f"ep must divide tp ({self.tp}), got {self.ep!r}")
        object.__setattr__(self, "arrivals", str(parse_arrivals(self.arrivals)))
        parse_window(self.window)  # a bad window fails here, before any run
        object.__setattr__(self, "workload", str(self.workload))
        policy_spec(str(self.policy))

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> RunConfig:
        """This config with ``changes`` (option names), checked as ``from_dict`` checks them."""
        return replace(self, **{k: _coerce(k, v) for k, v in _known(changes).items()})

    def workload_options(self) -> dict:
        """``load_workload``'s keywords: the context defaults to the model profile's."""
        max_context = self.max_context
        if max_context is None:
            from hybridsched.latency.profiles import load_model_profile

            max_context = getattr(load_model_profile(str(self.model)), "max_context", None)
        return {
            "format": self.format,
            "window": self.window,
            "rate_scale": self.rate_scale,
            "max_requests": self.max_requests,
            "max_context": max_context,
            "fit_context": self.fit_context,
        }

    def cluster(self) -> Cluster:
        return Cluster(
            model=str(self.model),
            hardware=str(self.hardware),
            num_clients=self.clients,
            tp=self.tp,
            max_batch=self.max_batch,
            latency=str(self.latency),
            kv_blocks=self.kv_blocks,
            block_size=self.block_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            ep=self.ep,
        )

    def kv(self) -> dict:
        """On-demand KV as the engine runs it (``run_policy``'s ``kv``); asynchronous
        scheduling defaults to the hardware profile's (its serving stack's default); the
        prefix cache is on (vLLM's default) and used where the workload says which prompts
        share prefixes."""
        async_ = self.async_scheduling
        if async_ is None:
            from hybridsched.latency.profiles import load_hardware_profile

            async_ = load_hardware_profile(str(self.hardware)).async_scheduling
        return {
            "watermark": self.watermark,
            "block_size": self.block_size,
            "async_scheduling": async_,
            "prefix_caching": bool(self.prefix_caching),
        }

    def knobs(self) -> RuleKnobs:
        """The online rules' knobs; the sort seed is ``seed``."""
        return RuleKnobs(
            lambda_multiplier=self.lambda_multiplier,
            horizon=self.horizon,
            min_prefill=self.min_prefill,
            idle_price=self.idle_price,
            sort=self.sort,
            seed=self.seed,
            token_budget=self.token_budget,
        )

    def solve(self) -> SolveSettings:
        return SolveSettings(self.time_limit, self.mip_gap, replan_s=self.replan_s)

    def serving(self) -> Serving:
        return Serving(
            router=self.router,
            admission=self.admission,
            arrivals=self.arrivals,
            arrival_seed=self.seed if self.arrival_seed is None else self.arrival_seed,
            slo_ttft_s=self.slo_ttft,
            slo_tpot_s=self.slo_tpot,
        )


NAMES: tuple[str, ...] = tuple(f.name for f in fields(RunConfig))
DEFAULTS: dict[str, object] = RunConfig().to_dict()
INT_OPTIONS = (
    "num_requests",
    "max_requests",
    "max_context",
    "seed",
    "arrival_seed",
    "prediction_seed",
    "clients",
    "tp",
    "max_batch",
    "horizon",
    "token_budget",
    "min_prefill",
    "block_size",
    "kv_blocks",
    "ep",
    "shared_prefix",
)
FLOAT_OPTIONS = (
    "prediction_sigma",
    "rate_scale",
    "slo_ttft",
    "slo_tpot",
    "lambda_multiplier",
    "replan_s",
    "time_limit",
    "mip_gap",
    "watermark",
    "gpu_memory_utilization",
)


def unknown_error(names) -> ValueError:
    return ValueError(
        f"unknown option(s) {', '.join(sorted(map(str, names)))}; known: {', '.join(NAMES)}"
    )


def _known(values: dict) -> dict:
    unknown = set(values) - set(NAMES)
    if unknown:
        raise unknown_error(unknown)
    return values


def _coerce(name: str, v):
    """``v`` as option ``name``'s type (``None`` stays ``None``); a ValueError names both."""
    if v is None:
        return None
    if name in INT_OPTIONS:
        return _number(name, v, int)
    if name in FLOAT_OPTIONS:
        return _number(name, v, float)
    if name == "check":
        return bool(v)
    if name in ("async_scheduling", "prefix_caching"):
        return _switch(name, v)
    return v


def _switch(name: str, v) -> bool:
    """``on``/``off`` (or a bool, ``true``/``false``, 1/0) as a bool."""
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"{name} must be on or off, got {v!r}")


def _number(name: str, v, kind: type):
    try:
        x = float(v)
        ok = not isinstance(v, bool) and (kind is float or x == int(x))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {v!r}")
    return kind(x)
