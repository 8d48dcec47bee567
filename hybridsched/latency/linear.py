"""The linear latency model of the exact MIP, and its fit to the roofline (docs/model.md 3).

``t_prefill = a_p + b_p * sum(s)`` and ``t_decode = a_d + b_d * |D| + c_d * sum(context)``
(``LinearLatency``), fitted by least squares to a roofline over an operating range
(``fit_linear``). Re-exported by ``hybridsched.latency``, its former home.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinearLatency:
    """``t_prefill = a_p + b_p sum(s)``; ``t_decode = a_d + b_d |D| + c_d sum(context)``."""

    a_p: float
    b_p: float
    a_d: float
    b_d: float
    c_d: float
    kv_capacity_tokens: int = 10**9

    def __post_init__(self) -> None:
        for name in ("a_p", "b_p", "a_d", "b_d", "c_d"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"linear latency: {name} must be finite and >= 0, got {v!r}")
        if self.a_p + self.b_p <= 0 or self.a_d + self.b_d <= 0:
            raise ValueError(
                "linear latency: every iteration must take positive time (a_p + b_p > 0, a_d + b_d > 0)"
            )

    def prefill_time(self, sum_tokens, sum_sq_tokens=0.0):
        return self.a_p + self.b_p * sum_tokens

    def decode_time(self, batch_size, sum_context):
        return self.a_d + self.b_d * batch_size + self.c_d * sum_context

    def mixed_time(
        self, batch_size, sum_context, chunk_tokens, chunk_sq_diff=0.0, chunk_prefix=0.0
    ):
        """A decode step plus prompt chunks: ``a_d`` (``a_p`` without decode) + both variable parts."""
        fixed = np.where(np.asarray(batch_size) > 0, self.a_d, self.a_p)
        return fixed + self.b_d * batch_size + self.c_d * sum_context + self.b_p * chunk_tokens

    def prefill_floor_per_token(self) -> float:
        return self.b_p

    def prefill_floors(self) -> dict[str, float]:
        return {"compute": self.b_p, "memory": self.b_p}

    def decode_fixed_cost(self) -> float:
        return self.a_d

    def decode_floors(self, context, max_batch: int) -> dict[str, np.ndarray]:
        c = np.asarray(context, dtype=float)
        return {
            "memory": self.a_d / max_batch + self.b_d + self.c_d * c,
            "compute": self.b_d + self.c_d * c,
        }

    def decode_variable_floor(self, context) -> np.ndarray:
        return self.b_d + self.c_d * np.asarray(context, dtype=float)

    def prefill_fixed_cost(self) -> float:
        return self.a_p

    def prefill_token_floor(self) -> float:
        return self.b_p

    def describe(self) -> dict:
        return {
            "kind": "linear",
            "a_p": self.a_p,
            "b_p": self.b_p,
            "a_d": self.a_d,
            "b_d": self.b_d,
            "c_d": self.c_d,
            "kv_capacity_tokens": self.kv_capacity_tokens,
        }


@dataclass(frozen=True)
class LinearFit:
    """A fitted linear model and how far it is from the roofline over the fitted range."""

    model: LinearLatency
    prefill_max_rel_error: float
    decode_max_rel_error: float
    prefill_rmse_s: float
    decode_rmse_s: float


def fit_linear(
    roofline,
    max_batch: int,
    max_prefill_tokens: int = 2048,
    prompt_tokens: tuple[int, int] = (16, 256),
    context_tokens: tuple[int, int] = (32, 2048),
) -> LinearFit:
    """Least-squares linear model of a ``latency.RooflineLatency`` over an operating range.

    The exact MIP needs a linear model; fitting it to the roofline (not inventing one)
    keeps the MIP's optimum comparable with the simulator's schedules.
    """
    # Prefill: sets of equal prompts of length s, count k, up to the token budget.
    rows_p, y_p = [], []
    for s in np.linspace(*prompt_tokens, 8).round():
        for k in range(
            1, max(2, int(max_prefill_tokens // s)) + 1, max(1, int(max_prefill_tokens // s) // 8)
        ):
            rows_p.append([1.0, k * s])
            y_p.append(float(roofline.prefill_time(k * s, k * s * s)))
    # Decode: batches of n requests at mean context c.
    rows_d, y_d = [], []
    for n in range(1, max_batch + 1, max(1, max_batch // 16)):
        for c in np.linspace(*context_tokens, 8):
            rows_d.append([1.0, n, n * c])
            y_d.append(float(roofline.decode_time(n, n * c)))
    Ap, yp, Ad, yd = map(np.asarray, (rows_p, y_p, rows_d, y_d))
    cp = np.linalg.lstsq(Ap, yp, rcond=None)[0]
    cd = np.linalg.lstsq(Ad, yd, rcond=None)[0]
    cp, cd = np.maximum(cp, 0.0), np.maximum(cd, 0.0)  # keep the fit physical
    lin = LinearLatency(
        *map(float, (cp[0], cp[1], cd[0], cd[1], cd[2])),
        kv_capacity_tokens=roofline.kv_capacity_tokens,
    )
    ep, ed = Ap @ cp - yp, Ad @ cd - yd
    return LinearFit(
        model=lin,
        prefill_max_rel_error=float(np.max(np.abs(ep) / yp)),
        decode_max_rel_error=float(np.max(np.abs(ed) / yd)),
        prefill_rmse_s=float(np.sqrt(np.mean(ep**2))),
        decode_rmse_s=float(np.sqrt(np.mean(ed**2))),
    )
