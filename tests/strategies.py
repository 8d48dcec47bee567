"""Hypothesis strategies shared by the tests: small random serving instances."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from hybridsched.engine.admission import Admission
from hybridsched.instance import Client, Instance
from hybridsched.latency.linear import LinearLatency

FAST = LinearLatency(0.02, 0.0005, 0.01, 0.001, 0.00001)
SLOW = LinearLatency(0.04, 0.001, 0.02, 0.002, 0.00002)


@st.composite
def serving_instances(draw, homogeneous: bool):
    """Small random instances: one to three clients (heterogeneous unless ``homogeneous``),
    memory-bound or not, arrivals at 0 or Poisson, predictions exact or off by up to 4x."""
    n = draw(st.integers(1, 14))
    J = draw(st.integers(1, 3))
    memory_bound = draw(st.booleans())
    if homogeneous:
        M = draw(st.integers(60, 300))
        Ms, lats = [M] * J, [FAST] * J
        B = [draw(st.integers(8, 16)) if memory_bound else draw(st.integers(1, 6))] * J
    else:
        Ms = [draw(st.integers(60, 300)) for _ in range(J)]
        lats = [draw(st.sampled_from([FAST, SLOW])) for _ in range(J)]
        B = [
            draw(st.integers(8, 16)) if memory_bound else draw(st.integers(1, 6)) for _ in range(J)
        ]
    cap = max(Ms)
    s = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    o = [min(draw(st.integers(1, 60)), cap - x) for x in s]
    if draw(st.booleans()):  # prediction error
        f = draw(st.lists(st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]), min_size=n, max_size=n))
        pred = [max(1, min(round(a * b), cap - x)) for a, b, x in zip(o, f, s, strict=True)]
    else:
        pred = o
    cols = {"prompt_tokens": s, "output_tokens": o, "predicted_output_tokens": pred}
    if draw(st.booleans()):  # Poisson arrivals, rate 20/s, seeded by the draw
        seed = draw(st.integers(0, 2**16))
        cols["arrival_s"] = np.cumsum(np.random.default_rng(seed).exponential(0.05, n))
    clients = tuple(Client(b, m, lat) for b, m, lat in zip(B, Ms, lats, strict=True))
    return Instance(pd.DataFrame(cols), clients, prefill_budget_tokens=draw(st.integers(8, 200)))


# On-demand admission as the toy clients above need it: token-level KV (block size 1), and
# small blocks with either engine loop, so the block rules run on small memories too.
TOKENS = Admission("on-demand", block_size=1)
ADMISSIONS = (
    "reservation",
    TOKENS,
    Admission("on-demand", block_size=4),
    Admission("on-demand", block_size=4, async_scheduling=True),
)
