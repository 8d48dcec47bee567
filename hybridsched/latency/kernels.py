"""Iteration times from measured kernels: each iteration as the sum of its operators.

``KernelLatency(model, hardware, tp, ep)`` prices a prefill, decode or mixed iteration the way
NVIDIA's aiconfigurator composes an iteration from its measured kernel database (the tables
in ``data/latency/kernels/``, exported by ``scripts/export_kernel_tables.py``; provenance and
licence in that folder): per layer the QKV, output and FFN GEMMs (or the router and the
routed experts of a mixture of experts) on every token of the iteration, attention per
request (context attention for prompt tokens, generation attention over the KV a decode
reads), two all-reduces per layer of the iteration's activations at the tensor-parallel
degree, norms and activations as memory-bound element-wise work; plus the embedding, one
all-reduce, and the LM head for the tokens sampled (one per prompt completed or chunked,
one per decoding request). The hardware profile adds a per-iteration host overhead
(``iteration_overhead_s``).

Time of ``x`` tokens through the token-major operators is one piecewise-linear table over
``x``; attention comes from two 2-D tables (batch, length). An iteration's requests enter only
through the engine's sums: a prefill's prompts are taken as ``n = (sum s)^2 / sum s^2`` equal
prompts of ``sum s^2 / sum s`` tokens (exact for equal prompts), a decode's contexts as their
mean, a mixed step's chunks as equal chunks at their mean prefix. Measured against
aiconfigurator's own estimates (``make bench``), and against real vLLM runs (``validate``).

Floors (docs/model.md section 5) are lower bounds of these times that ignore the context a
decode reads (the attention tables are not linear in it), so bounds stay valid and are
looser than the roofline's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from hybridsched.latency.kernel_ops import build_parts
from hybridsched.latency.kernel_tables import KernelTables, kernel_tables
from hybridsched.latency.profiles import HardwareProfile, ModelProfile


@dataclass(frozen=True)
class KernelLatency:
    """Iteration times of ``model`` on ``tp`` GPUs from the profile's kernel tables (module docstring)."""

    model: ModelProfile
    hardware: HardwareProfile
    tp: int
    ep: int = 1
    lm_head: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.hardware.kernels:
            raise ValueError(f"hardware profile {self.hardware.name!r} names no kernel tables")
        self.model.check_tp(int(self.tp))

    @cached_property
    def tables(self) -> KernelTables:
        return kernel_tables(self.hardware.kernels)

    @cached_property
    def _parts(self):
        return build_parts(self.tables, self.model, int(self.tp), int(self.ep))

    @property
    def overhead(self) -> float:
        return self.hardware.iteration_overhead_s

    # --- iteration times (s) --------------------------------------------------------
    def prefill_time(self, sum_tokens, sum_sq_tokens):
        """Prompts with ``sum(s)`` and ``sum(s^2)``: taken as equal prompts (module docstring)."""
        p = self._parts
        s1, s2 = sum_tokens, sum_sq_tokens
        if type(s1) is not float or type(s2) is not float:
            s1, s2 = np.asarray(s1, float), np.asarray(s2, float)
        n = s1 * s1 / s2
        t = p.tok(s1) + p.ctx(n, s2 / s1) + p.ctx_extra + p.logits(n)
        return self.overhead + t * 1e-3

    def decode_time(self, batch_size, sum_context):
        """A decode step of ``|D|`` requests reading ``sum(context)`` KV tokens."""
        p = self._parts
        b, c = batch_size, sum_context
        if type(b) is not float or type(c) is not float:
            b, c = np.asarray(b, float), np.asarray(c, float)
        return self.overhead + (p.tok(b) + p.logits(b) + p.gen(b, c / b)) * 1e-3

    def mixed_time(
        self, batch_size, sum_context, chunk_tokens, chunk_sq_diff=0.0, chunk_prefix=0.0
    ):
        """A decode step of ``|D|`` requests plus prompt chunks, in one forward pass."""
        b, ct = float(batch_size), float(chunk_tokens)
        if ct <= 0:
            return self.decode_time(b, float(sum_context))
        p = self._parts
        n = ct * (2.0 * float(chunk_prefix) + ct) / float(chunk_sq_diff)  # equal chunks
        a = float(chunk_prefix) / n
        e = a + ct / n
        t = p.tok(b + ct) + p.ctx(n, e) * (1.0 - (a * a) / (e * e)) + p.ctx_extra
        t += p.logits(b + n)
        if b > 0:
            t += p.gen(b, float(sum_context) / b)
        return self.overhead + t * 1e-3

    # --- floors (docs/model.md section 5): lower bounds of the times above -------------
    @cached_property
    def _floor_parts(self):
        """Per batch ``b`` of the tables: the cheapest decode step of ``b`` requests."""
        p = self._parts
        bs = np.unique(np.concatenate([np.arange(1.0, 65.0), np.geomspace(1, 4096, 200).round()]))
        step = self.overhead * 1e3 + p.tok(bs) + p.logits(bs) + p.gen_min(bs)
        xs, ys = p.tok.ax, p.tok.ay
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
            "backend": meta.get("backend"),
            "backend_version": meta.get("backend_version"),
            "aiconfigurator_core_version": meta.get("aiconfigurator_core_version"),
        }
