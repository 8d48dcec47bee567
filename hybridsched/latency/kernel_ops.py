"""The operators of one iteration, summed into the lookups ``KernelLatency`` evaluates.

``build_parts(tables, model, tp, ep)`` returns, for ``model`` on ``tp`` GPUs (``ep``-way expert
parallelism for a mixture of experts), in milliseconds:

- ``tok(x)``: every operator whose cost follows the iteration's token count ``x``, over all
  layers: the QKV and output GEMMs, the FFN GEMMs and the SiLU-gate (dense) or the router
  GEMM and the routed experts (MoE), two add-and-norms, the embedding, and with ``tp > 1``
  ``1 + 2 L`` all-reduces of ``x * hidden`` half-precision elements;
- ``logits(n)``: the LM head for ``n`` sampled tokens; ``prefill_logits`` whether a prefill
  runs it (aiconfigurator's mixture-of-experts models have none in their context pass) and
  ``mixed_logits`` its cost in a mixed step (one token; none for a mixture of experts);
- ``ctx(n, s)``: context attention of ``n`` prompts of ``s`` tokens, all layers, and
  ``ctx_extra`` (rotary embedding, KV writes, QK-norm) per prefill;
- ``gen(b, c)``: generation attention of ``b`` requests reading ``c`` KV tokens each, all
  layers, and ``gen_min(b)`` its smallest value over ``c`` (for floors).

Element-wise operators are priced as aiconfigurator prices them: bytes over the GPU's
empirical bandwidth plus a launch constant. The composition follows aiconfigurator 0.12's
``sdk/models`` (per-layer operator lists), ``run_static`` and ``mixed_step_latency`` (sums),
quirks included; see ``data/latency/kernels/README.md``. Every term of ``tok`` is piecewise
linear in the tokens (the all-reduce too: its table is interpolated linearly in elements, as
aiconfigurator does), so ``tok`` is exact on the union of the terms' knots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridsched.latency.kernel_tables import X_MAX, Curve, Grid, KernelTables
from hybridsched.latency.profiles import ModelProfile

DTYPE = "bfloat16"


@dataclass(frozen=True)
class Parts:
    tok: Curve
    logits: Curve
    ctx: Grid
    gen: Grid
    gen_min: Curve
    ctx_extra: float
    prefill_logits: bool
    mixed_logits: float


def build_parts(t: KernelTables, m: ModelProfile, tp: int, ep: int) -> Parts:
    L = m.num_layers
    heads = m.num_heads // tp
    kv = -(-m.kv_heads // tp)
    lookup_kv = 0 if heads == kv else kv  # aiconfigurator's convention: 0 is full attention
    tok = _token_major(t, m, tp, ep, heads, kv)
    logits = Curve(*t.gemm_curve(DTYPE, m.vocab_size // tp, m.hidden_size))
    keys = dict(kv=DTYPE, n_kv=lookup_kv, head=m.head_size)
    bs, ss, g = t.attention_grid("context_attention", heads, fmha=DTYPE, **keys)
    ctx = Grid(bs, ss, L * g)
    bs, ss, g = t.attention_grid("generation_attention", heads, **keys)
    gen = Grid(bs, ss, L * g)
    moe = m.num_experts > 1  # aiconfigurator 0.12's MoE context pass has no LM head
    return Parts(
        tok,
        logits,
        ctx,
        gen,
        gen.lower_envelope_in_s(),
        _ctx_extra(t, m, heads, kv),
        prefill_logits=not moe,
        mixed_logits=0.0 if moe else logits(1.0),
    )


def _token_major(t: KernelTables, m: ModelProfile, tp: int, ep: int, heads: int, kv: int) -> Curve:
    L, h, hd = m.num_layers, m.hidden_size, m.head_size
    gemms = {"qkv": ((heads + 2 * kv) * hd, h), "o": (h, heads * hd)}
    moe = m.num_experts > 1
    if moe:
        gemms["router"] = (m.num_experts, h)
    else:
        gemms["gate_up"] = (2 * m.ffn_size // tp, h)
        gemms["down"] = (h, m.ffn_size // tp)
    curves = {name: t.gemm_curve(DTYPE, n, k) for name, (n, k) in gemms.items()}
    if moe:
        ffn = m.expert_ffn_size or m.ffn_size
        curves["moe"] = t.moe_curve(DTYPE, h, ffn, m.experts_per_token, m.num_experts, tp // ep, ep)
    knots = {1.0, X_MAX}
    for x, _ in curves.values():
        knots |= set(x.tolist())
    ar = t.allreduce_curve(tp) if tp > 1 else None
    if ar is not None:
        knots |= set((ar[0] / h).tolist())
    xs = np.array(sorted(v for v in knots if 1 <= v <= X_MAX))
    total = sum(L * Curve(x, y)(xs) for x, y in curves.values())
    total = total + L * 2 * t.memop_ms(8.0 * h * xs)  # add + RMSNorm, twice a layer
    if not moe:
        total = total + L * t.memop_ms(6.0 * (m.ffn_size // tp) * xs)  # SiLU(gate) * up
    total = total + t.memop_ms(2.0 * h * xs)  # embedding
    if ar is not None:  # the embedding's and two a layer (attention out, FFN out)
        total = total + (1 + 2 * L) * Curve(*ar)(xs * h)  # linear in elements, not log
    return Curve(xs, total)


def _ctx_extra(t: KernelTables, m: ModelProfile, heads: int, kv: int) -> float:
    """Rotary embedding and KV writes (and QK-norm) of a prefill, all layers (ms)."""
    q, k = heads * m.head_size, kv * m.head_size
    mem = t.memop_ms
    extra = 2 * mem(2.0 * q + 2.0 * k) + 2 * mem(2.0 * k)
    if m.qk_norm:
        extra = extra + 2 * (2 * mem(2.0 * q) + 2 * mem(2.0 * k))
    return float(m.num_layers * 1.1 * extra)
