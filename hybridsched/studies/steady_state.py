"""Steady-state measurement of one request rate, for capacity planning (docs/model.md section 12).

A rate ``r`` is measured on runs long enough to reach steady state (``SteadyState``):

- **Length.** Poisson arrivals at ``r`` for at least ``min_duration_s`` seconds: each run
  draws ``max(min_requests, ceil(r * min_duration_s))`` requests (at most
  ``max_run_requests``) from the workload, shaped by its options (``max_requests``,
  ``fit_context``); when the workload holds fewer, it is repeated (new ids) and sampled
  from the repeats. With a ``window`` of a trace, the window's own arrivals are kept and
  compressed to ``r`` instead (``rate_scale = r / native rate``, the native rate being
  the window's requests over its length), so such a run spans the window's length
  divided by the scale, whatever ``min_duration_s`` asks.
- **Warm-up.** Requests arriving in the first ``warmup`` share (0.2) of the arrival span
  start on an empty cluster: they are simulated but not counted. The run's attainment
  (``steady_attainment``) is the share of the requests arriving after it that meet both
  SLOs (``metrics.slo_attainment`` on the run's per-request table).
- **Seeds.** ``seeds`` independent runs (seeds ``seed, seed + 1, ...``: the sample, the
  arrival draw and the random sort keys). A trace window has one set of arrivals, so it
  is measured once.
- **Rule** (``sustained``): ``r`` is sustained iff *every* seed's steady attainment is at
  least ``target``. Conservative: a rate one unlucky draw misses is not sustained.
- **Interval** (``rate_interval``): at each tested rate, the two-sided ``level`` (90%)
  t-interval of the mean attainment over the seeds (``half_width``). ``ci_low`` is the
  rate where its lower end first falls below ``target``, ``ci_high`` where its upper end
  does, each linear between the two tested rates around the crossing (below the lowest
  tested rate the lower end is taken linear from attainment 1 at 0 req/s; ``ci_high`` is
  infinite if the upper end never falls below), then widened to hold the bracket
  ``[max_rate, rate_upper]``. With one seed the band is the attainment itself and the
  interval is the bracket, up to the interpolation; seed spread widens it.

``analytic_capacity`` (``analytic_table`` over a grid) is the estimate a simulation is
compared with: each replica's throughput at the largest batch whose decode iteration
meets the TPOT SLO, times replicas.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hybridsched.jobs.executor import JobError
from hybridsched.trace.metrics import slo_attainment


def round_rate(x: float) -> float:
    return float(f"{x:.4g}")  # a rate the arrival spec prints exactly


WORKLOAD_KEYS = ("format", "window", "rate_scale", "max_requests", "fit_context", "max_context")
STEADY_COLUMNS = ("steady_attainment", "warmup_s", "span_s", "counted", "pool_requests")


@dataclass(frozen=True)
class SteadyState:
    """How one rate is measured (module docstring). ``native_rates``: per model, the
    trace window's own rate (requests/s) when a window is used, else ``None``."""

    min_duration_s: float = 600.0
    warmup: float = 0.2
    seeds: tuple[int, ...] = (0, 1, 2)
    min_requests: int | None = 200
    max_run_requests: int = 100_000
    native_rates: dict | None = field(default=None)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_duration_s) and self.min_duration_s >= 0):
            raise ValueError(f"min_duration_s must be >= 0, got {self.min_duration_s!r}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be in [0, 1), got {self.warmup!r}")
        if not self.seeds:
            raise ValueError("seeds: need at least one seed")
        if self.max_run_requests < 1:
            raise ValueError(f"max_run_requests must be >= 1, got {self.max_run_requests!r}")

    def num_requests(self, rate: float) -> int:
        """Requests of one Poisson run at ``rate``: enough to span ``min_duration_s``."""
        n = max(self.min_requests or 1, math.ceil(rate * self.min_duration_s - 1e-9))
        return int(min(n, self.max_run_requests))

    def cells(self, cand: dict, rate: float) -> list[dict]:
        """The cells (one per seed) that measure ``cand`` at ``rate``."""
        if self.native_rates is not None:  # the window's own arrivals, compressed to ``rate``
            scale = rate / self.native_rates[cand["model"]]
            return [{**cand, "arrivals": "table", "rate_scale": scale, "num_requests": None}]
        n = self.num_requests(rate)
        spec = f"poisson:{rate!r}"
        return [
            {**cand, "arrivals": spec, "num_requests": n, "seed": s, "max_requests": None}
            for s in self.seeds
        ]


def steady_attainment(req: pd.DataFrame, slo_ttft, slo_tpot, warmup: float) -> dict:
    """The SLO attainment of the requests arriving after the warm-up, and what it counted."""
    t = req["arrival_s"].to_numpy(dtype=float)
    t0, span = (float(t.min()), float(np.ptp(t))) if len(t) else (0.0, 0.0)
    cut = t0 + warmup * span
    counted = req[t >= cut] if span > 0 else req
    return {
        "steady_attainment": slo_attainment(counted, slo_ttft, slo_tpot),
        "warmup_s": cut - t0,
        "span_s": span,
        "counted": len(counted),
    }


def tiled(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """``table`` repeated until it has at least ``n`` rows; copy ``k`` gets new request ids
    (``id + k * (max id + 1)``) and arrives after the ones before it."""
    k = math.ceil(n / len(table))
    if k <= 1:
        return table
    ids = table["request_id"].to_numpy(dtype=np.int64)
    step = int(ids.max()) + 1
    t = table["arrival_s"].to_numpy(dtype=float)
    gap = float(np.ptp(t)) + 1.0
    parts = [table.assign(request_id=ids + j * step, arrival_s=t + j * gap) for j in range(k)]
    out = pd.concat(parts, ignore_index=True)
    out.attrs = dict(table.attrs)
    return out


def _pool(p: dict, src: pd.DataFrame) -> pd.DataFrame:
    """The workload ``src`` shaped as the cell shapes it (``max_requests``, context rule)."""
    from hybridsched.latency.profiles import load_model_profile
    from hybridsched.workloads.tables import requests_for

    max_context = p.get("max_context")
    if max_context is None:
        max_context = getattr(load_model_profile(str(p["model"])), "max_context", None)
    opts = {
        "max_requests": p.get("max_requests"),
        "max_context": max_context,
        "fit_context": p.get("fit_context") or "error",
    }
    return requests_for(src, workload_options=opts)


def steady_job(job: dict, tables: dict | None) -> dict:
    """One seed of one rate: the cell's row (``cells.run_cell``'s columns) plus
    ``STEADY_COLUMNS``. ``job``: ``{"cell": params, "warmup": share, "max_requests": N}``;
    a failure is a row with ``status = failed``, never an exception."""
    from hybridsched.studies.cells import simulate_cell

    t0 = time.perf_counter()
    p = dict(job["cell"])
    try:
        src = (tables or {}).get(p["workload"])
        pool_n = None
        if src is not None and p.get("num_requests") is not None:
            pool = _pool({**p, "max_requests": job.get("max_requests")}, src)
            pool_n = len(pool)
            tables = {**tables, p["workload"]: tiled(pool, p["num_requests"])}
        c = simulate_cell(p, tables)
    except Exception as e:  # a row, as run_cell gives one
        err = f"{type(e).__name__}: {e}"
        return {**p, "status": "failed", "error": err, "wall_s": time.perf_counter() - t0}
    row = {**c.params, "status": "ok", "error": None, **c.run.metrics, **c.slo}
    row.update(steady_attainment(c.run.requests, p["slo_ttft"], p["slo_tpot"], job["warmup"]))
    row.update(pool_requests=pool_n, wall_s=time.perf_counter() - t0)
    return row


def sustained(attainments, target: float) -> bool:
    """The rule: every seed's steady attainment is at least ``target``."""
    a = np.asarray(list(attainments), dtype=float)
    return bool(len(a)) and bool(np.all(a >= target))


def half_width(values, level: float = 0.9) -> float:
    """Half-width of the two-sided ``level`` t-interval of the mean (0 for one value)."""
    from scipy.stats import t

    a = np.asarray(list(values), dtype=float)
    if len(a) < 2:
        return 0.0
    return float(t.ppf(0.5 + level / 2, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))


def rate_interval(
    points: dict, target: float, max_rate: float, rate_upper: float, level: float = 0.9
) -> tuple[float, float]:
    """``(ci_low, ci_high)`` from the attainments per tested rate ``points`` (module
    docstring): where the lower and the upper end of the t-band of the mean attainment
    first fall below ``target``, widened to hold ``[max_rate, rate_upper]``."""
    if not points:
        return max_rate, rate_upper
    rates = np.array(sorted(points), dtype=float)
    mean = np.array([np.mean(points[r]) for r in rates])
    h = np.array([half_width(points[r], level) for r in rates])
    # Below the lowest tested rate the lower end runs linearly to attainment 1 at 0 req/s
    # (an idle cluster meets the SLO): the ``0.0`` point anchors it.
    low = _crossing(np.r_[0.0, rates], np.r_[1.0, mean - h], target)
    high = _crossing(rates, mean + h, target)
    return min(low, max_rate), max(high, rate_upper)


def _crossing(rates: np.ndarray, y: np.ndarray, target: float) -> float:
    """The rate where ``y`` (at the tested ``rates``) first falls below ``target``, linear
    between the tested rates around it; 0 if it is below at the lowest, inf if never."""
    below = np.flatnonzero(y < target)
    if not len(below):
        return math.inf
    k = int(below[0])
    if k == 0:
        return 0.0
    r0, r1, y0, y1 = rates[k - 1], rates[k], y[k - 1], y[k]
    return float(r0 + (r1 - r0) * (y0 - target) / (y0 - y1))


def window_sizes(workload: str, options: dict, models) -> dict[str, tuple[int, float]]:
    """Per model, a trace window's requests and length in seconds (its last arrival when
    the window is open-ended or ``max_requests`` cuts it): the native rate is their ratio."""
    from hybridsched.latency.profiles import load_model_profile
    from hybridsched.workloads.catalogue import parse_window
    from hybridsched.workloads.tables import requests_for

    start, end = parse_window(options["window"])
    out = {}
    for m in models:
        ctx = options.get("max_context")
        if ctx is None:
            ctx = getattr(load_model_profile(str(m)), "max_context", None)
        df = requests_for(workload, workload_options={**options, "max_context": ctx})
        cut = options.get("max_requests") is not None or not math.isfinite(end)
        span = float(df["arrival_s"].max()) if cut else end - start
        if not span > 0:
            raise ValueError(
                f"window {options['window']}: its {len(df)} requests of {workload} all "
                "arrive at once; a window needs arrival times spread over time"
            )
        out[str(m)] = (len(df), span)
    return out


def measurement(fixed, models, rate, seed_list, num_requests, min_duration_s, warmup, max_run):
    """The ``SteadyState`` of a plan (``fixed``: its fixed cell options), and notes on it
    (a trace window's arrivals span less than ``min_duration_s`` at ``rate``)."""
    notes: list[str] = []
    native = None
    if fixed.get("window") is not None:
        opts = {k: fixed.get(k) for k in WORKLOAD_KEYS if k != "rate_scale"}
        opts["fit_context"] = opts["fit_context"] or "error"
        sizes = window_sizes(fixed["workload"], opts, models)
        native = {m: n / span for m, (n, span) in sizes.items()}
        seed_list = seed_list[:1]
        notes.append("a trace window is one set of arrivals: each rate is measured once")
        for m, (n, _) in sizes.items():
            if n / rate < min_duration_s:
                notes.append(
                    f"window {fixed['window']} ({m}): at {rate:g} req/s its {n} requests span "
                    f"{n / rate:.0f} s, less than min_duration_s={min_duration_s:g} s"
                )
    steady = SteadyState(min_duration_s, warmup, seed_list, num_requests, max_run, native)
    return steady, notes


def base_tables(cands: list[dict], fixed: dict) -> dict:
    """Each workload's table, loaded once (and sent to each worker once)."""
    from hybridsched.workloads.tables import requests_for

    names = sorted({c["workload"] for c in cands})
    return {w: requests_for(w, workload_options={"format": fixed.get("format")}) for w in names}


class RateSearch:
    """Every candidate's bisection (``searches``: ``capacity.Bisection``), in order of GPUs
    per (model, hardware, policy): the clusters of the fewest GPUs not yet done run, all of
    one GPU count together, each rate measured by ``steady``; once one of them sustains
    ``rate``, the larger ones are dropped (``stop``; ``pruned``: ``(candidate, gpus)``)."""

    def __init__(self, cands, searches, steady: SteadyState, target, rate, stop: bool):
        self.cands, self.searches, self.steady = cands, searches, steady
        self.target, self.rate, self.stop = target, round_rate(rate), stop
        self.errors: dict[int, str] = {}
        self.points: list[dict] = [{} for _ in cands]  # rate -> attainment per seed
        self.evals: list[dict] = []
        self.pruned: list[tuple[int, int]] = []
        self.dropped: set[int] = set()
        self.groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(cands):  # cands are in order of GPUs
            self.groups.setdefault((c["model"], c["hardware"], c["policy"]), []).append(i)

    def _gpus(self, i: int) -> int:
        return self.cands[i]["clients"] * self.cands[i]["tp"]

    def _pending(self, i: int) -> bool:
        return i not in self.errors and self.searches[i].next() is not None

    def active(self) -> list[int]:
        """The candidates to advance this round."""
        if not self.stop:
            return [i for i in range(len(self.cands)) if self._pending(i)]
        out: list[int] = []
        for members in self.groups.values():
            live = [i for i in members if i not in self.dropped]
            while live:
                g = self._gpus(live[0])
                level = [i for i in live if self._gpus(i) == g]
                running = [i for i in level if self._pending(i)]
                if running:
                    out += running
                    break
                if any(i not in self.errors and self.searches[i].lo >= self.rate for i in level):
                    self._drop([i for i in live if self._gpus(i) > g], g)
                    break
                live = live[len(level) :]
        return out

    def _drop(self, larger: list[int], g: int) -> None:
        self.dropped.update(larger)
        self.pruned += [(i, g) for i in larger]

    def run(self, eng, tables: dict, progress: bool) -> None:
        for round_ in range(1, 10_000):
            todo = [(i, round_rate(self.searches[i].next())) for i in self.active()]
            if not todo:
                break
            jobs, owner = [], []
            for i, x in todo:
                for cell in self.steady.cells(self.cands[i], x):
                    job = {"cell": cell, "warmup": self.steady.warmup}
                    jobs.append({**job, "max_requests": self.cands[i].get("max_requests")})
                    owner.append((i, x))
            rows = eng.map(
                steady_job,
                jobs,
                shared=tables,
                desc=f"round {round_}",
                failed=lambda r: isinstance(r, dict) and r.get("status") != "ok",
            )
            self._record(round_, todo, owner, rows)
            if progress:
                print(f"capacity: round {round_}, {len(jobs)} simulations", flush=True)

    def _record(self, round_: int, todo, owner, rows) -> None:
        got: dict[tuple, list[dict]] = {}
        for key, r in zip(owner, rows, strict=True):
            if isinstance(r, JobError):  # the worker failed, not the cell
                r = {"status": "failed", "error": r.error}
            got.setdefault(key, []).append(r)
        for i, x in todo:
            rs = got[(i, x)]
            bad = [r for r in rs if r.get("status") != "ok"]
            ok = not bad and sustained([r["steady_attainment"] for r in rs], self.target)
            for r in rs:
                self.evals.append(
                    {"candidate": i, "round": round_, "rate": x, **r, "sustained": ok}
                )
            if bad:
                self.errors[i] = str(bad[0].get("error"))
                continue
            self.points[i][x] = [r["steady_attainment"] for r in rs]
            self.searches[i].update(x, ok)


def analytic_capacity(cluster, prompt_tokens: float, output_tokens: float, slo_tpot: float) -> dict:
    """The textbook estimate for ``cluster`` (an ``instance.Cluster``): each replica decodes
    the largest batch ``b`` (at most ``max_batch``, within its KV cache) whose decode
    iteration at the mean context (``prompt + output / 2`` tokens) meets ``slo_tpot``, so
    it serves ``b / (output * t_decode(b))`` requests per second; with its prompt's
    prefill time added per request, ``1 / (output * t_decode(b) / b + t_prefill)``. No
    queueing, no TTFT, no interference between prefills and decodes: an upper estimate."""
    client = cluster.make_clients()[0]
    lat, ctx = client.latency, prompt_tokens + output_tokens / 2
    best = 0
    for b in range(1, client.max_batch + 1):
        fits = b * (prompt_tokens + output_tokens) <= client.kv_capacity_tokens
        if fits and float(lat.decode_time(b, b * ctx)) <= slo_tpot:
            best = b
    n = cluster.num_clients
    if best == 0:
        return {"batch": 0, "decode_rps": 0.0, "with_prefill_rps": 0.0, "t_decode_s": math.nan}
    t_dec = float(lat.decode_time(best, best * ctx))
    t_pre = float(lat.prefill_time(prompt_tokens, prompt_tokens**2))
    return {
        "batch": best,
        "t_decode_s": t_dec,
        "decode_rps": n * best / (output_tokens * t_dec),
        "with_prefill_rps": n / (output_tokens * t_dec / best + t_pre),
    }


def analytic_table(workload, model, hardware, tps, max_batch, slo_tpot, rate) -> pd.DataFrame:
    """Per (hardware, tp, B): ``analytic_capacity`` of one replica on the workload's mean
    prompt and output, and the replicas and GPUs it says ``rate`` needs."""
    from hybridsched.instance import Cluster
    from hybridsched.workloads.tables import requests_for

    reqs = requests_for(workload)
    s, o = float(reqs["prompt_tokens"].mean()), float(reqs["output_tokens"].mean())
    rows = []
    for hw, t, b in itertools.product(hardware, tps, max_batch):
        try:
            est = analytic_capacity(Cluster(str(model), str(hw), 1, int(t), int(b)), s, o, slo_tpot)
        except ValueError:  # tp GPUs cannot hold the model
            continue
        per = est["with_prefill_rps"]
        n = math.ceil(rate / per) if per > 0 else math.nan
        rows.append({"hardware": hw, "tp": t, "max_batch": b, **est, "replicas": n, "gpus": n * t})
    return pd.DataFrame(rows)
