"""Capacity planning: the highest request rate each cluster sustains under an SLO, and the
cheapest cluster for a target rate (docs/model.md section 12).

A rate ``r`` is *sustained* when, in steady state, at least ``target`` (default 90%) of
the requests meet both SLOs (TTFT <= ``slo_ttft``, TPOT <= ``slo_tpot``): DistServe's
goodput definition, measured as ``steady_state`` says: runs whose Poisson arrivals at
``r`` span at least ``min_duration_s`` (600 s), the first ``warmup`` (20%) of the
arrival span not counted, ``seeds`` (3) seeds, and ``r`` sustained iff every seed meets
the target. For each candidate cluster (model, hardware, tp, clients, ``max_batch``,
policy) the highest sustained rate is found by bisection (``Bisection``): start at the
target rate, double while sustained (up to ``2**max_doublings`` times it) or halve while
not (down to ``2**-max_doublings`` times it, else 0), then bisect until the bracket is
within ``rel_tol``. ``max_rate`` is the highest rate *measured* as sustained,
``rate_upper`` the lowest measured as not, ``max_rate_ci_low``/``max_rate_ci_high`` the
bracket widened by the seed spread (``steady_state.rate_interval``). A candidate that
sustains the top of the range is flagged ``at_search_bound`` (``capped``): its rate is a
lower bound (">= max_rate"), never a measurement.

Candidates: by default every client count from 1 to ``max_gpus // tp`` for every ``tp``
whose GPUs hold the model with room for KV cache. They are searched in order of GPUs:
per (model, hardware, policy), the clusters with the fewest GPUs first, all clusters of
one GPU count together (one batch of cells per round on one ``jobs.executor.Executor``,
so the planner runs wherever sweeps run); once a GPU count sustains the target rate,
larger clusters of that model, hardware and policy are not searched (they cannot be
the cheapest), unless ``stop_at_target=False``.

Policies that plan with every request's arrival known in advance (a ``static`` router
with the MMBPP or portfolio offline stage: ``hybrid`` and its variants, ``b``, ``c``) are
*clairvoyant*: refused unless ``allow_clairvoyant``, and labelled so. A static
round-robin plan (``baseline``, ``chunked``, ...) sends the k-th arrival to client
``k mod J``, as an online round-robin does, and is not.

The cheapest cluster that sustains the target rate has the fewest GPUs (``clients *
tp``), then the lowest cost per hour (``prices``: ``hardware`` -> US$ per GPU-hour),
then the highest ``max_rate``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from hybridsched.jobs.executor import Executor
from hybridsched.studies.grid import expand_grid
from hybridsched.studies.steady_state import (
    RateSearch,
    base_tables,
    measurement,
    rate_interval,
    round_rate,
)


@dataclass
class Bisection:
    """Stepwise search for the highest ``x`` with ``ok(x)``, assuming ``ok`` holds below a
    threshold and fails above it (module docstring). Call ``next()`` for the point to
    test (``None``: done) and ``update(x, ok)`` with the outcome."""

    start: float
    rel_tol: float = 0.05
    max_doublings: int = 6
    lo: float = 0.0  # highest x seen to hold
    hi: float = math.inf  # lowest x seen to fail
    tested: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if not (self.start > 0 and math.isfinite(self.start)):
            raise ValueError(f"bisection start must be a positive number, got {self.start!r}")
        if not 0 < self.rel_tol < 1:
            raise ValueError(f"rel_tol must be in (0, 1), got {self.rel_tol!r}")

    def next(self) -> float | None:
        if not self.tested:
            return self.start
        scale = 2.0**self.max_doublings
        if self.hi == math.inf:  # everything so far held: double
            x = self.lo * 2
            return x if x <= self.start * scale * (1 + 1e-12) else None
        if self.lo == 0.0:  # everything so far failed: halve
            x = self.hi / 2
            return x if x >= self.start / scale * (1 - 1e-12) else None
        if self.hi - self.lo <= self.rel_tol * self.hi:
            return None
        return (self.lo + self.hi) / 2

    def update(self, x: float, ok: bool) -> None:
        self.tested.append((x, bool(ok)))
        if ok:
            self.lo = max(self.lo, x)
        else:
            self.hi = min(self.hi, x)

    @property
    def capped(self) -> bool:
        """The search stopped at the top of its range: the true maximum may be higher."""
        return self.hi == math.inf and bool(self.tested)


def bisect_max(ok: Callable[[float], bool], start: float, **kw) -> Bisection:
    """Run a ``Bisection`` on ``ok`` serially; its ``lo`` is the highest ``x`` found to hold."""
    b = Bisection(start, **kw)
    while (x := b.next()) is not None:
        b.update(x, ok(x))
    return b


_rate = round_rate


@dataclass
class CapacityResult:
    candidates: pd.DataFrame  # one row per searched candidate (CANDIDATE_COLUMNS)
    evaluations: pd.DataFrame  # one row per simulation: (candidate, rate, seed) and its cell row
    choice: dict | None  # the cheapest candidate that sustains the rate, or None
    skipped: list[dict]
    params: dict


CANDIDATE_KEYS = ("model", "hardware", "tp", "clients", "max_batch", "policy")
CANDIDATE_COLUMNS = [
    "candidate",
    *CANDIDATE_KEYS,
    "gpus",
    "max_rate",
    "rate_upper",
    "capped",
    "simulations",
    "sustains",
    "cost_per_hour",
    "error",
    "max_rate_ci_low",
    "max_rate_ci_high",
    "at_search_bound",
    "clairvoyant",
    "seeds",
]
RULE = "sustained iff every seed's steady-state SLO attainment >= target"


def read_prices(path) -> dict[str, float]:
    """A price table CSV with columns ``hardware`` and ``usd_per_gpu_hour``."""
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise ValueError(f"prices: {path} does not exist") from None
    missing = {"hardware", "usd_per_gpu_hour"} - set(df.columns)
    if missing:
        raise ValueError(f"prices: {path} lacks column(s) {', '.join(sorted(missing))}")
    price = pd.to_numeric(df["usd_per_gpu_hour"], errors="coerce")
    bad = price.isna() | (price < 0)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ValueError(
            f"prices: usd_per_gpu_hour must be a number >= 0, got "
            f"{df['usd_per_gpu_hour'].iloc[i]!r} in row {i}"
        )
    return dict(zip(df["hardware"].astype(str), price.astype(float), strict=True))


def is_clairvoyant(policy: str, router: str | None = None) -> bool:
    """The policy's plan reads arrivals still to come: a static router over the MMBPP (or
    portfolio) offline stage. A static round-robin is what an online round-robin does."""
    from hybridsched.policies.registry import policy_spec

    spec = policy_spec(policy)
    return (router or spec.router) == "static" and spec.dispatch != "round-robin"


def default_policies() -> list[str]:
    """The policies a plan compares by default: those of these that exist; none clairvoyant."""
    from hybridsched.policies.registry import POLICIES

    names = ("vllm", "online-hybrid", "baseline", "chunked")
    return [p for p in names if p in POLICIES and not is_clairvoyant(p)]


def plan_capacity(
    workload: str,
    slo_ttft: float,
    slo_tpot: float,
    rate: float,
    models: list[str] = ("llama-65b",),
    hardware: list[str] = ("h100-sxm-vllm",),
    tp: list[int] = (1, 2, 4, 8),
    clients: list[int] | None = None,
    max_batch: list[int] = (32,),
    policies: list[str] | None = None,
    max_gpus: int = 16,
    target: float = 0.9,
    num_requests: int | None = 200,
    seed: int = 0,
    rel_tol: float = 0.05,
    max_doublings: int = 6,
    prices: dict[str, float] | None = None,
    extra: dict | None = None,
    engine: str = "dask",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    seeds: int = 3,
    min_duration_s: float = 600.0,
    warmup: float = 0.2,
    max_run_requests: int = 100_000,
    allow_clairvoyant: bool = False,
    stop_at_target: bool = True,
) -> CapacityResult:
    """Highest sustained rate per candidate and the cheapest one for ``rate`` (module docstring).

    ``clients``: the client counts tried for every ``tp`` (default: 1 to ``max_gpus // tp``).
    ``num_requests``: the fewest requests of one run (a run at ``r`` has at least
    ``r * min_duration_s``, at most ``max_run_requests``). ``extra``: more fixed cell
    options (``time_limit``, and the workload's ``format``, ``window``, ``max_requests``,
    ``fit_context``, ``max_context``; ``rate_scale`` must stay 1: the search sets the
    load). Candidates with more than ``max_gpus`` GPUs, or whose tp cannot hold the
    model, are skipped.
    """
    _check(slo_ttft, slo_tpot, rate, target, max_gpus, seeds, extra)
    policies = list(policies or default_policies())
    clairvoyant = [p for p in policies if is_clairvoyant(p, (extra or {}).get("router"))]
    if clairvoyant and not allow_clairvoyant:
        raise ValueError(
            f"policies {', '.join(clairvoyant)} plan with every arrival known in advance "
            "(clairvoyant); pass --allow-clairvoyant (allow_clairvoyant=True) to include them"
        )
    fixed = {"workload": workload, "seed": seed, "slo_ttft": slo_ttft, "slo_tpot": slo_tpot}
    fixed.update(extra or {})
    space = {"model": list(models), "hardware": list(hardware), "max_batch": list(max_batch)}
    space["policy"] = policies
    cands, skipped = candidate_cells(fixed, space, list(tp), clients, max_gpus)
    seed_list = tuple(range(seed, seed + seeds))
    steady, notes = measurement(
        fixed, models, rate, seed_list, num_requests, min_duration_s, warmup, max_run_requests
    )
    notes.insert(0, _policy_note(policies, clairvoyant))
    searches = [Bisection(_rate(rate), rel_tol, max_doublings) for _ in cands]
    eng = Executor(engine, workers, scheduler, progress=False)
    with eng if cands else contextlib.nullcontext():  # no workers for an empty plan
        s = RateSearch(cands, searches, steady, target, rate, stop_at_target)
        s.run(eng, base_tables(cands, fixed), progress)
    skipped += [_pruned(cands[i], g, rate) for i, g in s.pruned]
    table = _candidate_table(cands, s, rate, prices)
    params = {
        **fixed,
        "num_requests": num_requests,
        **{k: v for k, v in locals().items() if k in _RECORDED},
        "seeds": list(steady.seeds),
        "rule": RULE,
        "interval": "90% t-interval of the mean attainment over seeds, at the tested rates",
        "search_space": {**space, "tp": list(tp), "clients": clients or "1..max_gpus//tp"},
        "prices": prices or {},
        "notes": notes,
        **eng.describe(),
    }
    return CapacityResult(table, pd.DataFrame(s.evals), cheapest(table, rate), skipped, params)


_RECORDED = ("rate", "target", "max_gpus", "rel_tol", "max_doublings", "min_duration_s")
_RECORDED += ("warmup", "max_run_requests", "allow_clairvoyant", "stop_at_target")


def _check(slo_ttft, slo_tpot, rate, target, max_gpus, seeds, extra) -> None:
    for name, v in (("slo_ttft", slo_ttft), ("slo_tpot", slo_tpot), ("rate", rate)):
        if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    if not 0 < target <= 1:
        raise ValueError(f"target must be in (0, 1], got {target!r}")
    if max_gpus < 1:
        raise ValueError(f"max_gpus must be >= 1, got {max_gpus!r}")
    if not (isinstance(seeds, int) and seeds >= 1):
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    scale = (extra or {}).get("rate_scale")
    if scale is not None and float(scale) != 1.0:
        raise ValueError(
            f"rate-scale must be 1 in a capacity plan, got {scale}: the search sets the load "
            "itself (Poisson arrivals at each rate, or with a window the trace's arrivals "
            "compressed to it)"
        )


def _policy_note(policies: list[str], clairvoyant: list[str]) -> str:
    from hybridsched.policies.registry import POLICIES

    left = [p for p in POLICIES if is_clairvoyant(p) and p not in policies]
    text = f"policies: {', '.join(p for p in policies if p not in clairvoyant)} (non-clairvoyant)"
    if clairvoyant:
        text += f"; {', '.join(clairvoyant)} clairvoyant (plan with future arrivals known)"
    if left:
        text += f"; not compared: clairvoyant {', '.join(left)} (--allow-clairvoyant)"
    return text


def candidate_cells(fixed: dict, space: dict, tps: list[int], clients, max_gpus: int):
    """The candidate cells in order of GPUs and the clusters skipped (one entry each):
    ``space`` lists models, hardware, ``max_batch`` and policies; ``clients=None`` tries
    1 to ``max_gpus // tp`` clients for each of ``tps``."""
    cells, skipped = [], {}
    for t in tps:
        counts = list(clients) if clients is not None else list(range(1, max_gpus // t + 1))
        if not counts:
            skipped[(None, None, t, "gpus")] = {"tp": t, "reason": _too_big(max_gpus)}
            continue
        got = expand_grid({**fixed, **space, "tp": [t], "clients": counts})
        for c in got.cells:
            if c["clients"] * c["tp"] <= max_gpus:
                cells.append(c)
            else:
                key = tuple(c[k] for k in CANDIDATE_KEYS)
                skipped[key] = {**{k: c[k] for k in CANDIDATE_KEYS}, "reason": _too_big(max_gpus)}
        for c in got.skipped:
            key = (c.get("model"), c.get("hardware"), t, c["reason"])
            skipped[key] = {"model": key[0], "hardware": key[1], "tp": t, "reason": c["reason"]}
    order = ("model", "hardware", "policy", "tp", "max_batch", "clients")
    cells.sort(key=lambda c: (c["clients"] * c["tp"], *(str(c[k]) for k in order)))
    return cells, list(skipped.values())


def _too_big(max_gpus: int) -> str:
    return f"more than max_gpus={max_gpus} GPUs"


def _pruned(c: dict, g: int, rate: float) -> dict:
    why = f"a {g}-GPU cluster of {c['hardware']} already sustains {rate:g} req/s with {c['policy']}"
    return {**{k: c[k] for k in CANDIDATE_KEYS}, "reason": f"not searched: {why}"}


def _candidate_table(cands, s: RateSearch, rate, prices) -> pd.DataFrame:
    rows = []
    for i, (c, b) in enumerate(zip(cands, s.searches, strict=True)):
        if i in s.dropped:
            continue
        gpus = c["clients"] * c["tp"]
        price = (prices or {}).get(c["hardware"], math.nan)
        err = s.errors.get(i)
        low, high = rate_interval(s.points[i], s.target, b.lo, b.hi)
        rows.append(
            {
                "candidate": i,
                **{k: c[k] for k in CANDIDATE_KEYS},
                "gpus": gpus,
                "max_rate": b.lo if err is None else math.nan,
                "rate_upper": b.hi,
                "capped": b.capped,
                "simulations": len(b.tested) * len(s.steady.seeds),
                "sustains": err is None and b.lo >= _rate(rate),
                "cost_per_hour": gpus * price,
                "error": err,
                "max_rate_ci_low": low if err is None else math.nan,
                "max_rate_ci_high": high if err is None else math.nan,
                "at_search_bound": err is None and b.capped,
                "clairvoyant": is_clairvoyant(c["policy"], c.get("router")),
                "seeds": len(s.steady.seeds),
            }
        )
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)


def cheapest(table: pd.DataFrame, rate: float) -> dict | None:
    """The candidate that sustains ``rate`` with the fewest GPUs, then the lowest cost per
    hour, then the highest ``max_rate``; ``None`` when none does."""
    ok = table[table["max_rate"] >= _rate(rate)]
    if ok.empty:
        return None
    best = ok.sort_values(
        ["gpus", "cost_per_hour", "max_rate", "candidate"],
        ascending=[True, True, False, True],
        na_position="last",
    ).iloc[0]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in best.to_dict().items()}


def gpus_needed(table: pd.DataFrame, rate: float, by: str = "policy") -> pd.DataFrame:
    """Per ``by`` value: the fewest GPUs of a candidate that sustains ``rate`` (NaN: none)."""
    ok = table[table["max_rate"] >= _rate(rate)]
    need = ok.groupby(by)["gpus"].min()
    return need.reindex(table[by].unique()).rename("gpus_needed").reset_index()


_FRONTIER_EXTRA = ("at_search_bound", "max_rate_ci_low", "max_rate_ci_high")


def frontier(table: pd.DataFrame, by: tuple[str, ...] = ("hardware", "policy")) -> pd.DataFrame:
    """Per group and GPU count: the highest sustained rate of any candidate with at most
    that many GPUs (the GPUs-against-rate frontier), with that candidate's search-bound
    flag and interval when the table has them."""
    extra = [c for c in _FRONTIER_EXTRA if c in table.columns]
    rows = []
    for key, part in table.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        best = None
        for g, at in part.groupby("gpus", sort=True):
            rated = at[at["max_rate"].notna()]
            if len(rated):
                top = rated.loc[rated["max_rate"].idxmax()]
                if best is None or top["max_rate"] > best["max_rate"]:
                    best = top
            row = {**dict(zip(by, key, strict=True)), "gpus": int(g)}
            row["max_rate"] = math.nan if best is None else best["max_rate"]
            row.update({c: (math.nan if best is None else best[c]) for c in extra})
            rows.append(row)
    return pd.DataFrame(rows, columns=[*by, "gpus", "max_rate", *extra])
