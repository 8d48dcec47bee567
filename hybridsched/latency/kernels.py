"""Iteration times from measured kernels: each iteration as the sum of its operators.

``KernelLatency(model, hardware, tp, ep)`` prices a prefill, decode or mixed iteration the way
NVIDIA's aiconfigurator composes an iteration from its measured kernel database (the tables
in ``data/latency/kernels/``, exported by ``scripts/export_kernel_tables.py``; provenance and
licence in that folder): per layer the QKV, output and FFN GEMMs (or the router and the
routed experts of a mixture of experts) on every token of the iteration, attention per
request (context attention for prompt tokens, generation attention over the KV a decode
reads), two all-reduces per layer of the iteration's activations at the tensor-parallel
degree, norms and activations as memory-bound element-wise work; plus the embedding, one
all-reduce, and the LM head as aiconfigurator 0.12 runs it: one row per prompt in a
prefill and per request in a decode step, one row in a mixed step (its first pass runs at
batch 1), and none in a mixture of experts' prefill or mixed step (its context operator
list has no LM head). The hardware profile adds a per-iteration host overhead
(``iteration_overhead_s``), which aiconfigurator's per-iteration estimates leave out.

Time of ``x`` tokens through the token-major operators is one piecewise-linear table over
``x``; attention comes from two 2-D tables (batch, length). An iteration's requests enter only
through the engine's sums: a prefill's prompts are taken as ``n = (sum s)^2 / sum s^2`` equal
prompts of ``sum s^2 / sum s`` tokens (exact for equal prompts), a decode's contexts as their
mean, a mixed step's chunks as equal chunks at their mean prefix. Measured against
aiconfigurator's own estimates (``benchmarks/kernel_accuracy.py``, all 130,944 of them:
|error| median 0.001%, p90 0.012%, 1.14% at worst), and against real vLLM runs (``validate``).

Floors (docs/model.md section 5) are lower bounds of these times that ignore the context a
decode reads (the attention tables are not linear in it), so bounds stay valid and are
looser than the roofline's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hybridsched.latency.kernel_ops import build_parts
from hybridsched.latency.kernel_tables import KernelTables, kernel_tables
from hybridsched.latency.measured_scale import measured_scale, rescale
from hybridsched.latency.profiles import HardwareProfile, ModelProfile

_NUMBER = (float, int)  # Python numbers: the scalar path


@dataclass(frozen=True)
class KernelLatency:
    """Iteration times of ``model`` on ``tp`` GPUs from the profile's kernel tables (module docstring)."""

    model: ModelProfile
    hardware: HardwareProfile
    tp: int
    ep: int = 1

    def __post_init__(self) -> None:
        if not self.hardware.kernels:
            raise ValueError(f"hardware profile {self.hardware.name!r} names no kernel tables")
        self.model.check_tp(int(self.tp))
        self._parts  # noqa: B018 - a configuration the tables do not cover fails here, up front

    @cached_property
    def tables(self) -> KernelTables:
        return kernel_tables(self.hardware.kernels)

    @cached_property
    def _parts(self):
        parts = build_parts(self.tables, self.model, int(self.tp), int(self.ep))
        if self.hardware.kernel_scale:
            scale = measured_scale(self.hardware.kernel_scale, self.hardware.kernels)
            parts = rescale(parts, scale)
        return parts

    @property
    def overhead(self) -> float:
        return self.hardware.iteration_overhead_s

    @cached_property
    def scalar(self):
        """``(decode, prefill, mixed)``: the three times as functions of Python numbers, on
        cached lists (bisection and a few multiplications, no numpy): the engine's hot calls
        (``latency/scalar.py``), and what the methods below do with scalar arguments."""
        p, ovh = self._parts, self.overhead
        tok, logits, ctx, gen = p.tok.at, p.logits.at, p.ctx.at, p.gen.at
        extra, mixed_logits = p.ctx_extra, p.mixed_logits
        prefill_logits = logits if p.prefill_logits else lambda n: 0.0

        def decode_time(batch_size, sum_context) -> float:
            b = float(batch_size)
            return ovh + (tok(b) + logits(b) + gen(b, sum_context / b)) * 1e-3

        def prefill_time(sum_tokens, sum_sq_tokens) -> float:
            s1 = float(sum_tokens)
            n = s1 * s1 / sum_sq_tokens
            return ovh + (tok(s1) + ctx(n, sum_sq_tokens / s1) + extra + prefill_logits(n)) * 1e-3

        def mixed_time(batch_size, sum_context, chunk_tokens, chunk_sq_diff, chunk_prefix) -> float:
            b, ct = float(batch_size), float(chunk_tokens)
            if ct <= 0:
                return decode_time(b, sum_context)
            n = ct * (2.0 * chunk_prefix + ct) / chunk_sq_diff  # equal chunks
            a = chunk_prefix / n
            e = a + ct / n
            t = tok(b + ct) + ctx(n, e) * (1.0 - (a * a) / (e * e)) + extra + mixed_logits
            if b > 0:
                t += gen(b, sum_context / b)
            return ovh + t * 1e-3

        return decode_time, prefill_time, mixed_time

    # --- iteration times (s): Python numbers (the engine's) or numpy arrays (broadcast) -----
    def prefill_time(self, sum_tokens, sum_sq_tokens):
        """Prompts with ``sum(s)`` and ``sum(s^2)``: taken as equal prompts (module docstring)."""
        if type(sum_tokens) in _NUMBER and type(sum_sq_tokens) in _NUMBER:
            return self.scalar[1](sum_tokens, sum_sq_tokens)
        p = self._parts
        s1, s2 = np.asarray(sum_tokens, float), np.asarray(sum_sq_tokens, float)
        n = s1 * s1 / s2
        t = p.tok(s1) + p.ctx(n, s2 / s1) + p.ctx_extra
        if p.prefill_logits:
            t = t + p.logits(n)
        return self.overhead + t * 1e-3

    def decode_time(self, batch_size, sum_context):
        """A decode step of ``|D|`` requests reading ``sum(context)`` KV tokens."""
        if type(batch_size) in _NUMBER and type(sum_context) in _NUMBER:
            return self.scalar[0](batch_size, sum_context)
        p = self._parts
        b, c = np.asarray(batch_size, float), np.asarray(sum_context, float)
        return self.overhead + (p.tok(b) + p.logits(b) + p.gen(b, c / b)) * 1e-3

    def mixed_time(
        self, batch_size, sum_context, chunk_tokens, chunk_sq_diff=0.0, chunk_prefix=0.0
    ):
        """A decode step of ``|D|`` requests plus prompt chunks, in one forward pass: the
        chunks as equal chunks at their mean prefix (module docstring)."""
        args = (batch_size, sum_context, chunk_tokens, chunk_sq_diff, chunk_prefix)
        if all(type(x) in _NUMBER for x in args):
            return self.scalar[2](*args)
        p = self._parts
        b, c, ct, sq, pre = np.broadcast_arrays(*(np.asarray(x, float) for x in args))
        out = np.empty(b.shape)
        dec = ct <= 0
        if dec.any():
            out[dec] = self.decode_time(b[dec], c[dec])
        on = ~dec
        if on.any():
            b, c, ct, sq, pre = b[on], c[on], ct[on], sq[on], pre[on]
            n = ct * (2.0 * pre + ct) / sq
            a = pre / n
            e = a + ct / n
            t = p.tok(b + ct) + p.ctx(n, e) * (1.0 - (a * a) / (e * e)) + p.ctx_extra
            t = t + p.mixed_logits
            g = b > 0
            if g.any():
                t[g] += p.gen(b[g], c[g] / b[g])
            out[on] = self.overhead + t * 1e-3
        return out if out.ndim else float(out)

    # --- floors (docs/model.md section 5): lower bounds of the times above -------------
    @cached_property
    def _floor_parts(self):
        """Per batch ``b`` of the tables: the cheapest iteration holding ``b`` decoding
        requests, a decode step or a mixed step (whose LM head may be cheaper, and whose
        token-major part is at least the table's smallest value from ``b`` tokens on)."""
        p = self._parts
        bs = np.unique(np.concatenate([np.arange(1.0, 65.0), np.geomspace(1, 4096, 200).round()]))
        xs, ys = p.tok.ax, p.tok.ay
        after = np.minimum.accumulate(ys[::-1])[::-1]  # min of the knots from each one on
        nxt = np.searchsorted(xs, bs, side="right")
        tok = np.minimum(p.tok(bs), np.append(after, np.inf)[nxt])
        head = np.minimum(p.logits(bs), p.mixed_logits)
        step = self.overhead * 1e3 + tok + head + p.gen_min(bs)
        return bs, step * 1e-3, float(min((ys / xs).min(), (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])))

    def prefill_floor_per_token(self) -> float:
        """``min_x Tok(x) / x``: a prompt token's share of the token-major operators at best."""
        return self._floor_parts[2] * 1e-3

    def prefill_token_floor(self) -> float:
        return self.prefill_floor_per_token()

    def prefill_fixed_cost(self) -> float:
        return self.overhead

    def prefill_floors(self) -> dict[str, float]:
        """``compute``: as ``prefill_floor_per_token``; ``memory``: the smallest marginal cost of
        a token added to an iteration (the token-major table's smallest slope)."""
        xs, ys = self._parts.tok.ax, self._parts.tok.ay
        slope = float(max(np.min(np.diff(ys) / np.diff(xs)), 0.0))
        return {"compute": self.prefill_floor_per_token(), "memory": slope * 1e-3}

    def decode_fixed_cost(self) -> float:
        """A decode step of any batch lasts at least this (the cheapest one-request step)."""
        return float(self._floor_parts[1].min())

    def decode_floors(self, context, max_batch: int) -> dict[str, np.ndarray]:
        """Per-request share of a decode step at its most efficient batch (at most
        ``max_batch`` for ``memory``, any for ``compute``), whatever the contexts."""
        bs, step, _ = self._floor_parts
        per = step / bs
        mem = float(per[bs <= max_batch].min())
        out = {"memory": mem, "compute": float(per.min())}
        shape = np.shape(context)
        return {k: np.full(shape, v) if shape else v for k, v in out.items()}

    def decode_variable_floor(self, context) -> np.ndarray:
        """The part of a decode step that grows with a request's context: 0 here (see above)."""
        return np.zeros(np.shape(context)) if np.shape(context) else 0.0

    def describe(self) -> dict:
        meta = self.tables.meta
        return {
            "kind": "kernels",
            "model": self.model.name,
            "hardware": self.hardware.name,
            "tp": int(self.tp),
            "ep": int(self.ep),
            "tables": self.hardware.kernels,
            "measured_scale": self.hardware.kernel_scale,
            "backend": meta.get("backend"),
            "backend_version": meta.get("backend_version"),
            "aiconfigurator_core_version": meta.get("aiconfigurator_core_version"),
        }
