"""Latency models of one client (a tensor-parallel replica): docs/model.md section 3.

Two implementations share one interface, ``LatencyModel``:

- ``RooflineLatency``: ``t = overhead + max(flops / peak_eff, bytes / bw_eff) + comm``,
  built from a model profile and a hardware profile (YAML files in data/profiles/).
- ``LinearLatency``: ``t_prefill = a_p + b_p * sum(s)`` and
  ``t_decode = a_d + b_d * |D| + c_d * sum(context)``, the model of the exact MIP; it is
  fitted to the roofline by least squares (``fit_linear``); both live in
  ``latency/linear.py`` and are re-exported here.

An iteration's time depends on its requests only through a few sums, so the methods take
those sums (scalars or numpy arrays, broadcast): a prefill needs ``sum(s)``, ``sum(s^2)``;
a decode needs ``|D|`` and ``sum(context)``. That keeps the simulator's hot path free of
per-request work.

The per-token floors of section 5 live here too, next to the model they bound: every
feasible iteration lasts at least the sum of the floors of the tokens it processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np

from hybridsched.latency.profiles import HardwareProfile, ModelProfile


class LatencyModel(Protocol):
    """What the simulator, the policies and the bounds need from a latency model."""

    def prefill_time(self, sum_tokens, sum_sq_tokens): ...

    def decode_time(self, batch_size, sum_context): ...

    def mixed_time(self, batch_size, sum_context, chunk_tokens, chunk_sq_diff, chunk_prefix): ...

    def prefill_floor_per_token(self) -> float: ...

    def prefill_floors(self) -> dict[str, float]: ...

    def decode_floors(self, context, max_batch: int) -> dict[str, np.ndarray]: ...

    def decode_fixed_cost(self) -> float: ...

    def prefill_fixed_cost(self) -> float: ...

    def prefill_token_floor(self) -> float: ...


def _maximum(a, b):
    """``np.maximum``, without its overhead on two Python floats (the engine's per-iteration call)."""
    if type(a) is float and type(b) is float:
        if a >= b:
            return a
        if a < b:
            return b
    return np.maximum(a, b)  # arrays, or a NaN


@dataclass(frozen=True)
class RooflineLatency:
    """Roofline of one replica of ``tp`` GPUs: compute or memory bound, plus all-reduces."""

    model: ModelProfile
    hardware: HardwareProfile
    tp: int

    def __post_init__(self) -> None:
        if not isinstance(self.tp, (int, np.integer)) or isinstance(self.tp, bool) or self.tp < 1:
            raise ValueError(f"tp must be an integer >= 1, got {self.tp!r}")
        self.model.check_tp(int(self.tp))
        if self.kv_capacity_tokens < 1:
            need = math.ceil(
                self.model.weight_bytes
                / (self.hardware.memory_bytes * self.hardware.usable_memory_fraction)
            )
            raise ValueError(
                f"tp={self.tp}: {self.tp} x {self.hardware.name} cannot hold the weights of {self.model.name} "
                f"({self.model.weight_bytes / 1e9:.1f} GB) with room for KV cache; use tp >= {need}"
            )

    # --- derived constants -------------------------------------------------------------
    @cached_property
    def overhead(self) -> float:
        """Fixed cost of any iteration: ``overhead + overhead_per_extra_gpu * (tp - 1)``."""
        hw = self.hardware
        return hw.iteration_overhead_s + hw.overhead_per_extra_gpu_s * (self.tp - 1)

    @cached_property
    def kv_bytes_per_token(self) -> int:
        """KV bytes per token this replica stores (KV heads replicated when ``tp > H_kv``)."""
        return self.model.kv_bytes_per_token_tp(int(self.tp))

    @cached_property
    def peak_eff(self) -> float:
        return self.tp * self.hardware.peak_flops * self.hardware.mfu

    @cached_property
    def bw_eff(self) -> float:
        return self.tp * self.hardware.memory_bandwidth * self.hardware.mbu

    @cached_property
    def prefill_bw_eff(self) -> float:
        """The memory side of an iteration with prompt tokens: ``prefill_mbu`` (default ``mbu``)."""
        if self.hardware.prefill_mbu is None:
            return self.bw_eff
        return self.tp * self.hardware.memory_bandwidth * self.hardware.prefill_mbu

    def _prompt_terms(self, core, tokens, sq_tokens):
        """The prefill terms on the roofline's max ``core``: a floor and a cost per prompt.

        Both are 0 by default, and then ``core`` comes back untouched (bit for bit). The
        prompts are counted as ``(sum s)^2 / sum s^2`` (``effective_prompts``).
        """
        hw = self.hardware
        if hw.prefill_floor_s:
            core = np.maximum(core, hw.prefill_floor_s)
        if hw.prefill_per_request_s:
            core = core + hw.prefill_per_request_s * effective_prompts(tokens, sq_tokens)
        return core

    @cached_property
    def kv_capacity_tokens(self) -> int:
        """``M = floor((tp * mem * usable - weight bytes) / kv bytes per token)``."""
        free = (
            self.tp * self.hardware.memory_bytes * self.hardware.usable_memory_fraction
            - self.model.weight_bytes
        )
        return max(0, int(free // self.kv_bytes_per_token))

    def comm_time(self, tokens):
        """Two all-reduces per layer of ``tokens * d * 2`` bytes; none without tensor parallelism.

        With ``allreduce_ring`` the bytes carry the ring factor ``2 (tp - 1) / tp``; with
        ``allreduce_large_message_bytes`` the bytes of a message beyond that size move at
        ``allreduce_large_bandwidth`` (docs/model.md section 3). Both are off by default.
        """
        if self.tp == 1:
            return 0.0 * tokens
        hw = self.hardware
        if not hw.allreduce_ring and hw.allreduce_large_message_bytes is None:
            per = (
                hw.allreduce_latency_s
                + tokens * self.model.hidden_size * 2 / hw.allreduce_bandwidth
            )
            return 2 * self.model.num_layers * per
        ring = 2.0 * (self.tp - 1) / self.tp if hw.allreduce_ring else 1.0
        msg = np.asarray(tokens, dtype=float) * (self.model.hidden_size * 2)
        if hw.allreduce_large_message_bytes is None:
            wire = msg / hw.allreduce_bandwidth
        else:
            cut = hw.allreduce_large_message_bytes
            wire = (
                np.minimum(msg, cut) / hw.allreduce_bandwidth
                + np.maximum(msg - cut, 0.0) / hw.allreduce_large_bandwidth
            )
        out = 2 * self.model.num_layers * (hw.allreduce_latency_s + ring * wire)
        return out if np.ndim(tokens) else float(out)

    # --- iteration times -----------------------------------------------------------------
    def prefill_time(self, sum_tokens, sum_sq_tokens):
        """Prefill of prompts with ``sum(s)`` and ``sum(s^2)``: linear FLOPs plus causal attention."""
        m = self.model
        flops = (
            2.0 * m.active_params * sum_tokens
            + 2.0 * m.num_layers * m.attention_dim * sum_sq_tokens
        )
        # Weights are read once; the prompt's KV is written once.
        bytes_ = m.weight_bytes + self.kv_bytes_per_token * sum_tokens
        core = _maximum(flops / self.peak_eff, bytes_ / self.prefill_bw_eff)
        return (
            self.overhead
            + self._prompt_terms(core, sum_tokens, sum_sq_tokens)
            + self.comm_time(sum_tokens)
        )

    def decode_time(self, batch_size, sum_context):
        """One decode step of ``|D|`` requests holding ``sum(context)`` KV tokens."""
        m = self.model
        flops = (
            2.0 * m.active_params * batch_size + 4.0 * m.num_layers * m.attention_dim * sum_context
        )
        bytes_ = m.weight_bytes + self.kv_bytes_per_token * sum_context
        return (
            self.overhead
            + _maximum(flops / self.peak_eff, bytes_ / self.bw_eff)
            + self.comm_time(batch_size)
            + self.hardware.decode_per_request_s * batch_size
        )

    def mixed_time(self, batch_size, sum_context, chunk_tokens, chunk_sq_diff, chunk_prefix):
        """A mixed (chunked-prefill) iteration: a decode step of ``|D|`` plus prompt chunks.

        A chunk covers positions ``a..b-1`` of a prompt: ``chunk_tokens = sum(b - a)``,
        ``chunk_sq_diff = sum(b^2 - a^2)`` (causal attention) and ``chunk_prefix = sum(a)``
        (the earlier chunks' KV, read). One chunk of a whole prompt with no decode costs
        exactly ``prefill_time``; no chunk costs exactly ``decode_time``. The weights are
        read once for both, which is what chunked prefill buys on a memory-bound replica.
        An iteration with chunk tokens takes the prefill terms (``prefill_mbu``, the
        floor, the cost per prompt, ``chunk_tokens^2 / chunk_sq_diff`` prompts).
        """
        m = self.model
        flops = (
            2.0 * m.active_params * (batch_size + chunk_tokens)
            + 4.0 * m.num_layers * m.attention_dim * sum_context
            + 2.0 * m.num_layers * m.attention_dim * chunk_sq_diff
        )
        bytes_ = m.weight_bytes + self.kv_bytes_per_token * (
            sum_context + chunk_tokens + chunk_prefix
        )
        hw = self.hardware
        bw = self.bw_eff
        prompt_terms = hw.prefill_floor_s or hw.prefill_per_request_s
        if hw.prefill_mbu is not None or prompt_terms:  # off by default: no array work per call
            chunked = np.asarray(chunk_tokens) > 0
        if hw.prefill_mbu is not None:
            bw = np.where(chunked, self.prefill_bw_eff, self.bw_eff)
        core = _maximum(flops / self.peak_eff, bytes_ / bw)
        if prompt_terms:
            core = np.where(chunked, self._prompt_terms(core, chunk_tokens, chunk_sq_diff), core)
            core = core if np.ndim(core) else float(core)
        return (
            self.overhead
            + core
            + self.comm_time(batch_size + chunk_tokens)
            + self.hardware.decode_per_request_s * batch_size
        )

    # --- floors (section 5) --------------------------------------------------------------
    def prefill_floor_per_token(self) -> float:
        """``phi_p = 2 * params / peak_eff``: the compute a prompt token needs at any batch."""
        return 2.0 * self.model.active_params / self.peak_eff

    def prefill_floors(self) -> dict[str, float]:
        """Per-prompt-token floors valid inside mixed iterations, the two ends of section 5.

        ``compute``: ``phi_p``. ``memory``: the token's KV write and all-reduce share; a
        mixed iteration hides the prompt's compute under the decode step's weight read, so
        on the memory side a prompt token costs only this.
        """
        comm_slope = self.comm_time(1.0) - self.comm_time(0.0)
        return {
            "compute": self.prefill_floor_per_token(),
            "memory": comm_slope + self.kv_bytes_per_token / self.bw_eff,
        }

    def decode_fixed_cost(self) -> float:
        """The part of a decode step that does not grow with the batch: what slots or memory share."""
        return self.overhead + self.comm_time(0.0) + self.model.weight_bytes / self.bw_eff

    def decode_floors(self, context, max_batch: int) -> dict[str, np.ndarray]:
        """Per-token floors of a decode step at ``context``, the two ends of section 5.

        ``memory``: the fixed cost shared by at most ``max_batch`` slots plus the token's own
        KV read and all-reduce share. ``compute``: the token's FLOPs at peak efficiency.
        Both add the per-request cost of a decode step (0 unless the profile sets it).
        """
        m = self.model
        c = np.asarray(context, dtype=float)
        comm_slope = self.comm_time(1.0) - self.comm_time(0.0)
        per_request = self.hardware.decode_per_request_s
        memory = (
            self.decode_fixed_cost() / max_batch
            + comm_slope
            + self.kv_bytes_per_token * c / self.bw_eff
            + per_request
        )
        compute = (
            2.0 * m.active_params + 4.0 * m.num_layers * m.attention_dim * c
        ) / self.peak_eff + per_request
        return {"memory": memory, "compute": compute}

    def decode_variable_floor(self, context) -> np.ndarray:
        """The batch-dependent part of a decode step per token (memory side), for reservation shares."""
        c = np.asarray(context, dtype=float)
        comm_slope = self.comm_time(1.0) - self.comm_time(0.0)
        return (
            comm_slope
            + self.kv_bytes_per_token * c / self.bw_eff
            + self.hardware.decode_per_request_s
        )

    def prefill_fixed_cost(self) -> float:
        """``F_p``, the part of a prefill outside the roofline's max: overhead + ``comm(0)``.

        With :meth:`prefill_token_floor` ``g``: ``t_prefill(P) >= F_p + g sum_{i in P} s_i``.
        """
        return self.hardware.iteration_overhead_s + float(self.comm_time(0.0))

    def prefill_token_floor(self) -> float:
        """``g = phi_p + comm slope``: a prompt token's compute at peak plus its all-reduce share."""
        return self.prefill_floor_per_token() + float(self.comm_time(1.0) - self.comm_time(0.0))

    def describe(self) -> dict:
        return {
            "kind": "roofline",
            "model": self.model.name,
            "hardware": self.hardware.name,
            "tp": int(self.tp),
            "num_params": self.model.num_params,
            "active_params": self.model.active_params,
            "weight_gb": self.model.weight_bytes / 1e9,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "kv_capacity_tokens": self.kv_capacity_tokens,
        }


def effective_prompts(tokens, sq_tokens):
    """``(sum s)^2 / sum s^2``: the number of prompts of a prefill from its two sums.

    Exact for prompts of one length (every measured batch), fewer than the count otherwise
    (at least 1); 0 for no prompt. The latency interface carries only these sums.
    """
    t = np.asarray(tokens, dtype=float)
    q = np.asarray(sq_tokens, dtype=float)
    out = np.divide(t * t, q, out=np.zeros(np.broadcast(t, q).shape), where=q > 0)
    return out if out.ndim else float(out)
