"""Kernel tables of a sibling GPU, rescaled to a GPU measured layer by layer.

No kernel database covers some GPUs (the RTX 4090); the kernel tables of a sibling (the L40S,
the same AD102 die) stand in for them. A per-layer profile measured on the GPU itself
(``data/latency/measured/<name>/``: CUDA kernel times of one model's layers on the real GPU,
LLMServingSim's profiler format; provenance in that folder's README) gives the ratio of the
GPU's times to the sibling's tables on that model, per operator family:

- ``tokens``: the token-major operators (GEMMs, norms, activation, rotary, embedding) summed
  over the layers, as a factor that varies with the iteration's tokens (memory-bound at a
  few tokens, compute-bound at many: the two GPUs' ratio differs between the two);
- ``logits``: the LM head, by rows;
- ``generation_attention``: one factor, the median over the memory-dominated part of the
  decode grid (at least 16 requests reading at least 512 tokens each);
- ``context_attention``: one factor, the median over prompts of at least 256 tokens.

``rescale(parts, scale)`` applies them to any model's operators on the sibling's tables, so
every model gets the measured GPU's speed ratios; only the model the profile measured is
checked against it (tests/latency/test_measured_scale.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import pandas as pd

from hybridsched.latency.kernel_ops import Parts, build_parts
from hybridsched.latency.kernel_tables import Curve, Grid, kernel_tables
from hybridsched.latency.profiles import load_model_profile
from hybridsched.paths import data_dir

MIN_GEN_REQUESTS, MIN_GEN_CONTEXT, MIN_CTX_TOKENS = 16, 512, 256
_ONCE = {"embedding", "final_layernorm"}  # once per iteration; the rest once per layer


@dataclass(frozen=True)
class MeasuredScale:
    """Factors (measured GPU over the sibling's tables) per operator family (module docstring)."""

    name: str
    tokens: Curve
    logits: Curve
    generation_attention: float
    context_attention: float


def measured_folder(name: str):
    path = data_dir() / "latency" / "measured" / name
    if not (path / "dense.csv").is_file():
        raise ValueError(f"measured layer profile {name!r}: no dense.csv in {path.name}")
    return path


def _model_of(path) -> str:
    """The shipped model profile the measurement is of (``model:`` in its meta.yaml)."""
    for line in (path / "meta.yaml").read_text().splitlines():
        if line.startswith("model:"):
            return line.split(":", 1)[1].strip().split("/")[-1].lower()
    raise ValueError(f"measured layer profile {path.name!r}: meta.yaml names no model")


def measured_times(path, num_layers: int):
    """``(tokens, token_major_ms, rows, lm_head_ms, attention)``: the measured per-iteration
    times (all layers) of the token-major operators and the LM head, and the attention table."""
    dense = pd.read_csv(path / "dense.csv")
    xs = np.sort(dense["tokens"].unique()).astype(float)
    total = np.zeros(len(xs))
    for layer, g in dense.groupby("layer"):
        g = g.sort_values("tokens")
        calls = 1 if layer in _ONCE else (2 * num_layers if layer == "layernorm" else num_layers)
        total += calls * np.interp(xs, g["tokens"], g["time_us"]) / 1e3
    seq = pd.read_csv(path / "per_sequence.csv")
    head = seq[seq["layer"] == "lm_head"].sort_values("sequences")
    rows, head_ms = head["sequences"].to_numpy(float), head["time_us"].to_numpy(float) / 1e3
    return xs, total, rows, head_ms, pd.read_csv(path / "attention.csv")


@lru_cache(maxsize=8)
def measured_scale(name: str, sibling_tables: str) -> MeasuredScale:
    """The factors of measurement ``name`` against the kernel tables ``sibling_tables``."""
    path = measured_folder(name)
    model = load_model_profile(_model_of(path))
    parts = build_parts(kernel_tables(sibling_tables), model, 1, 1)
    L = model.num_layers
    xs, tok_ms, rows, head_ms, att = measured_times(path, L)
    tokens = Curve(xs, tok_ms / parts.tok(xs))
    logits = Curve(rows, head_ms / parts.logits(rows))
    dec = att[(att["prefill_chunk"] == 0) & (att["n_decode"] >= MIN_GEN_REQUESTS)]
    dec = dec[dec["kv_decode"] >= MIN_GEN_CONTEXT]
    b, c = dec["n_decode"].to_numpy(float), dec["kv_decode"].to_numpy(float)
    gen = float(np.median(L * dec["time_us"].to_numpy() / 1e3 / parts.gen(b, c)))
    pre = att[(att["n_decode"] == 0) & (att["kv_prefill"] == 0)]
    pre = pre[pre["prefill_chunk"] >= MIN_CTX_TOKENS]
    s = pre["prefill_chunk"].to_numpy(float)
    ctx = float(np.median(L * pre["time_us"].to_numpy() / 1e3 / parts.ctx(np.ones_like(s), s)))
    return MeasuredScale(name, tokens, logits, gen, ctx)


def _scaled_curve(c: Curve, f: Curve) -> Curve:
    """``c * f`` on the union of both knot sets (``f`` held constant beyond its ends)."""
    xs = np.union1d(c.ax, f.ax)
    factor = np.interp(xs, f.ax, f.ay)  # constant beyond the measured range
    return Curve(xs, c(xs) * factor)


def _scaled_grid(g: Grid, f: float) -> Grid:
    return Grid(g.ab, np.exp(g.als), np.exp(g.alf) * f)


def rescale(parts: Parts, scale: MeasuredScale) -> Parts:
    """``parts`` (any model, on the sibling's tables) at the measured GPU's speed ratios."""
    gen = _scaled_grid(parts.gen, scale.generation_attention)
    logits = _scaled_curve(parts.logits, scale.logits)
    return replace(
        parts,
        tok=_scaled_curve(parts.tok, scale.tokens),
        logits=logits,
        ctx=_scaled_grid(parts.ctx, scale.context_attention),
        gen=gen,
        gen_min=gen.lower_envelope_in_s(),
        mixed_logits=0.0 if parts.mixed_logits == 0.0 else logits(1.0),
    )
