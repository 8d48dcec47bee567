"""Capacity planning: the highest request rate each cluster sustains under an SLO, and the
cheapest cluster for a target rate (docs/model.md section 12).

A rate ``r`` is *sustained* when at least ``target`` (default 90%) of the requests meet
both SLOs (TTFT <= ``slo_ttft``, TPOT <= ``slo_tpot``) with Poisson arrivals at ``r``
requests per second (``arrivals=poisson:r``): DistServe's goodput definition. For each
candidate cluster (model, hardware, tp, clients, ``max_batch``, policy) the highest
sustained rate is found by bisection (``Bisection``): start at the target rate, double
while sustained (up to ``2**max_doublings`` times it) or halve while not (down to
``2**-max_doublings`` times it, else 0), then bisect until the bracket is within
``rel_tol``. The reported ``max_rate`` is the highest rate *measured* as sustained. With
one seed the arrival times at two rates are the same draw rescaled, so attainment falls
with the rate up to the noise of a finite run.

All candidates bisect together: every round is one batch of cells (``cells.run_cell``)
on one ``jobs.executor.Executor``, so the planner runs wherever sweeps run. The cheapest cluster
that sustains the target rate has the fewest GPUs (``clients * tp``), then the lowest
cost per hour (``prices``: ``hardware`` -> US$ per GPU-hour), then the highest
``max_rate``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from hybridsched.jobs.executor import Executor
from hybridsched.studies.grid import expand_grid, run_cells, workload_tables


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


def _rate(x: float) -> float:
    return float(f"{x:.4g}")  # a rate the arrival spec prints exactly


@dataclass
class CapacityResult:
    candidates: pd.DataFrame  # one row per candidate: parameters, gpus, max_rate, sustains, cost
    evaluations: pd.DataFrame  # one row per simulated (candidate, rate): the cell rows
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
]


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


def plan_capacity(
    workload: str,
    slo_ttft: float,
    slo_tpot: float,
    rate: float,
    models: list[str] = ("llama-65b",),
    hardware: list[str] = ("a100-80gb-sxm",),
    tp: list[int] = (1, 2, 4, 8),
    clients: list[int] = (1, 2, 4, 8),
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
) -> CapacityResult:
    """Highest sustained rate per candidate and the cheapest one for ``rate`` (module docstring).

    ``max_doublings``: the search covers ``rate / 2**k`` to ``rate * 2**k``; a candidate
    sustaining the top is reported there with ``capped=True``.
    ``extra``: more fixed cell options (for example ``time_limit``). Candidates with more
    than ``max_gpus`` GPUs, or whose tp cannot hold the model, are skipped.
    """
    for name, v in (("slo_ttft", slo_ttft), ("slo_tpot", slo_tpot), ("rate", rate)):
        if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    if not 0 < target <= 1:
        raise ValueError(f"target must be in (0, 1], got {target!r}")
    if max_gpus < 1:
        raise ValueError(f"max_gpus must be >= 1, got {max_gpus!r}")
    policies = list(policies or default_policies())
    fixed = {
        "workload": workload,
        "num_requests": num_requests,
        "seed": seed,
        "slo_ttft": slo_ttft,
        "slo_tpot": slo_tpot,
        **(extra or {}),
    }
    space = {
        "model": list(models),
        "hardware": list(hardware),
        "tp": list(tp),
        "clients": list(clients),
        "max_batch": list(max_batch),
        "policy": policies,
    }
    cells = expand_grid({**fixed, **space})
    too_big = [c for c in cells.cells if c["clients"] * c["tp"] > max_gpus]
    cands = [c for c in cells.cells if c["clients"] * c["tp"] <= max_gpus]
    skipped = cells.skipped + [
        {**{k: c[k] for k in CANDIDATE_KEYS}, "reason": f"more than max_gpus={max_gpus} GPUs"}
        for c in too_big
    ]
    searches = [Bisection(_rate(rate), rel_tol, max_doublings) for _ in cands]
    eng = Executor(engine, workers, scheduler, progress=False)
    with eng if cands else contextlib.nullcontext():  # no workers for an empty plan
        errors, evals = _search(cands, searches, target, eng, progress)
    table = _candidate_table(cands, searches, errors, rate, prices)
    choice = cheapest(table, rate)
    params = {
        **fixed,
        "rate": rate,
        "target": target,
        "max_gpus": max_gpus,
        "rel_tol": rel_tol,
        "max_doublings": max_doublings,
        "search_space": space,
        "prices": prices or {},
        **eng.describe(),
    }
    return CapacityResult(table, pd.DataFrame(evals), choice, skipped, params)


def _search(cands: list[dict], searches: list[Bisection], target: float, eng, progress: bool):
    """Advance every candidate's bisection, one batch of cells per round, until all stop.

    Returns the candidates that failed (index -> error) and every simulated cell's row.
    """
    errors: dict[int, str] = {}
    evals: list[dict] = []
    tables = workload_tables(cands) if cands else {}
    for round_ in range(1, 100):
        todo = [
            (i, _rate(x))
            for i, b in enumerate(searches)
            if i not in errors and (x := b.next()) is not None
        ]
        if not todo:
            break
        batch = [{**cands[i], "arrivals": f"poisson:{x!r}"} for i, x in todo]
        rows = run_cells(batch, eng, tables=tables, desc=f"round {round_}")
        for (i, x), row in zip(todo, rows, strict=True):
            evals.append({"candidate": i, "round": round_, "rate": x, **row})
            if row.get("status") != "ok":
                errors[i] = str(row.get("error"))
                continue
            searches[i].update(x, row["slo_attainment"] >= target)
        if progress:
            print(f"capacity: round {round_}, {len(todo)} simulations", flush=True)
    return errors, evals


def default_policies() -> list[str]:
    """The policies a plan compares by default: those of these that exist."""
    from hybridsched.policies.registry import POLICIES

    return [p for p in ("vllm", "baseline", "hybrid", "chunked") if p in POLICIES]


def _candidate_table(cands, searches, errors, rate, prices) -> pd.DataFrame:
    rows = []
    for i, (c, b) in enumerate(zip(cands, searches, strict=True)):
        gpus = c["clients"] * c["tp"]
        price = (prices or {}).get(c["hardware"], math.nan)
        rows.append(
            {
                "candidate": i,
                **{k: c[k] for k in CANDIDATE_KEYS},
                "gpus": gpus,
                "max_rate": b.lo if i not in errors else math.nan,
                "rate_upper": b.hi,
                "capped": b.capped,
                "simulations": len(b.tested),
                "sustains": i not in errors and b.lo >= _rate(rate),
                "cost_per_hour": gpus * price,
                "error": errors.get(i),
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


def frontier(table: pd.DataFrame, by: tuple[str, ...] = ("hardware", "policy")) -> pd.DataFrame:
    """Per group and GPU count: the highest sustained rate of any candidate with at most
    that many GPUs (the GPUs-against-rate frontier)."""
    rows = []
    for key, part in table.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        best = part.groupby("gpus")["max_rate"].max().sort_index().cummax()
        for g, r in best.items():
            rows.append({**dict(zip(by, key, strict=True)), "gpus": int(g), "max_rate": r})
    return pd.DataFrame(rows, columns=[*by, "gpus", "max_rate"])
