"""Arrival processes: when requests reach the cluster (docs/model.md section 11).

An arrival spec is a string, the same on the CLI (``--arrivals``), in notebooks and in
sweep grids:

=======================  ==========================================================
``zero``                 every request at time 0 (the paper's setting)
``table``                keep the request table's own ``arrival_s`` (a trace's timestamps)
``poisson:RATE``         exponential inter-arrival times, ``RATE`` requests per second
``gamma:RATE,CV``        gamma inter-arrival times with mean ``1 / RATE`` and coefficient
                         of variation ``CV`` (``CV = 1`` is Poisson; ``CV > 1`` is bursty)
=======================  ==========================================================

``apply_arrivals(requests, spec, seed)`` returns the table with ``arrival_s`` replaced
(the first request arrives at its first inter-arrival time, so ``poisson`` starts after
0) and the row order, which is the arrival order, unchanged. The draw is seeded, so the
same spec and seed give the same arrivals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

KINDS = ("zero", "table", "poisson", "gamma")


@dataclass(frozen=True)
class ArrivalSpec:
    """A parsed arrival spec: ``kind`` and, for the random processes, ``rate`` and ``cv``."""

    kind: str
    rate: float = 0.0
    cv: float = 1.0

    def __str__(self) -> str:
        if self.kind == "poisson":
            return f"poisson:{self.rate:g}"
        if self.kind == "gamma":
            return f"gamma:{self.rate:g},{self.cv:g}"
        return self.kind


def _positive(text: str, what: str, spec: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"arrivals: {what} must be a positive number, got {text!r} in {spec!r}")
    return v


def parse_arrivals(spec: str | ArrivalSpec | None) -> ArrivalSpec:
    """Parse ``zero``, ``table``, ``poisson:RATE`` or ``gamma:RATE,CV``; raise naming the bad part."""
    if isinstance(spec, ArrivalSpec):
        return spec
    if spec is None:
        return ArrivalSpec("zero")
    text = str(spec).strip()
    kind, _, args = text.partition(":")
    kind = kind.strip().lower()
    if kind in ("zero", "table"):
        if args:
            raise ValueError(f"arrivals: {kind!r} takes no arguments, got {text!r}")
        return ArrivalSpec(kind)
    if kind == "poisson":
        return ArrivalSpec("poisson", _positive(args, "RATE", text))
    if kind == "gamma":
        parts = args.split(",")
        if len(parts) != 2:
            raise ValueError(f"arrivals: gamma needs RATE,CV (for example gamma:2,3), got {text!r}")
        return ArrivalSpec(
            "gamma", _positive(parts[0], "RATE", text), _positive(parts[1], "CV", text)
        )
    raise ValueError(
        f"arrivals: unknown process {kind!r} in {text!r}; known: zero, table, poisson:RATE, "
        "gamma:RATE,CV"
    )


def inter_arrivals(spec: ArrivalSpec, n: int, seed: int) -> np.ndarray:
    """``n`` seeded inter-arrival gaps (seconds) of a random process."""
    rng = np.random.default_rng(seed)
    mean = 1.0 / spec.rate
    if spec.kind == "poisson":
        return rng.exponential(mean, n)
    if spec.kind == "gamma":
        shape = 1.0 / spec.cv**2
        return rng.gamma(shape, mean / shape, n)
    raise ValueError(f"arrivals: {spec.kind!r} has no inter-arrival times")


MAX_ARRIVAL_S = 1e13  # workloads/requests.py MAX_CLOCK_S


def apply_arrivals(
    requests: pd.DataFrame, spec: str | ArrivalSpec | None, seed: int = 0
) -> pd.DataFrame:
    """The request table with ``arrival_s`` set by ``spec`` (module docstring), rows in order."""
    sp = parse_arrivals(spec)
    if sp.kind == "table":
        if "arrival_s" not in requests.columns:
            return requests.assign(arrival_s=0.0)
        return requests
    if sp.kind == "zero":
        return requests.assign(arrival_s=0.0)
    times = np.cumsum(inter_arrivals(sp, len(requests), seed))
    if len(times) and not times[-1] <= MAX_ARRIVAL_S:
        raise ValueError(
            f"arrivals: {spec} puts the last of {len(times)} arrivals at {times[-1]:.3g} s, past "
            f"{MAX_ARRIVAL_S:g} s, where the clock no longer resolves an iteration; use a higher rate"
        )
    return requests.assign(arrival_s=times)
