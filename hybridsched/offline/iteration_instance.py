"""The exact iteration MIP's input: the linear latency model, the checked instance, the replay.

Kept apart from the model (:mod:`hybridsched.iteration_mip`) so that the instance checks
and the schedule replay need no solver. Names follow MODEL.md (6), first part.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "IterationInstance",
    "LinearCoefficients",
    "check_iteration_instance",
    "replay_client_s",
    "request_constant_s",
]


@dataclass(frozen=True)
class LinearCoefficients:
    """Linear latency model of MODEL.md (3), the one the exact MIP can express.

    ``t_prefill(P) = a_p + b_p * sum_{i in P} s_i`` and
    ``t_decode(D) = a_d + b_d * |D| + c_d * sum_{i in D} context_i`` (seconds).
    """

    a_p: float
    b_p: float
    a_d: float
    b_d: float
    c_d: float

    def __post_init__(self) -> None:
        for name in ("a_p", "b_p", "a_d", "b_d", "c_d"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"LinearCoefficients: {name} must be a finite number, got {v!r}")

    def t_prefill(self, prompt_tokens: Any) -> float:
        """Duration of a prefill of requests with these prompt lengths."""
        return float(self.a_p + self.b_p * float(np.sum(prompt_tokens)))

    def t_decode(self, contexts: Any) -> float:
        """Duration of a decode of requests with these contexts."""
        c = np.asarray(contexts, dtype=float)
        return float(self.a_d + self.b_d * c.size + self.c_d * c.sum())


@dataclass(frozen=True)
class IterationInstance:
    prompt: np.ndarray  # s_i, int
    output: np.ndarray  # o_i, int
    reservation: np.ndarray  # res_i, int
    num_clients: int
    max_batch: int
    kv_capacity_tokens: int
    coef: LinearCoefficients
    prefill_budget_tokens: int
    num_iterations: int


def _int_vector(values: Any, name: str, minimum: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence, got shape {arr.shape}")
    if arr.size and not np.all(np.isfinite(arr.astype(float))):
        raise ValueError(f"{name}: values must be finite")
    if arr.size and not np.all(arr.astype(float) == np.round(arr.astype(float))):
        i = int(np.flatnonzero(arr.astype(float) != np.round(arr.astype(float)))[0])
        raise ValueError(f"{name}: request {i} has a non-integer value {arr[i]!r}")
    arr = arr.astype(np.int64)
    low = np.flatnonzero(arr < minimum)
    if low.size:
        i = int(low[0])
        raise ValueError(f"{name}: request {i} must be >= {minimum}, got {int(arr[i])}")
    return arr


def check_iteration_instance(
    prompt_tokens: Any,
    output_tokens: Any,
    num_clients: int,
    max_batch: int,
    kv_capacity_tokens: int,
    coef: LinearCoefficients,
    num_iterations: int | None,
    prefill_budget_tokens: int,
    reservation_tokens: Any,
) -> IterationInstance:
    prompt = _int_vector(prompt_tokens, "prompt_tokens", 1)
    output = _int_vector(output_tokens, "output_tokens", 1)
    if prompt.size == 0:
        raise ValueError("prompt_tokens: no requests")
    if output.size != prompt.size:
        raise ValueError(
            f"output_tokens: expected {prompt.size} values (one per request), got {output.size}"
        )
    for name, v in (
        ("num_clients", num_clients),
        ("max_batch", max_batch),
        ("kv_capacity_tokens", kv_capacity_tokens),
        ("prefill_budget_tokens", prefill_budget_tokens),
    ):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if not isinstance(coef, LinearCoefficients):
        raise ValueError(f"coef must be a LinearCoefficients, got {type(coef).__name__}")
    if reservation_tokens is None:
        reservation = prompt + output
    else:
        reservation = _int_vector(reservation_tokens, "reservation_tokens", 1)
        if reservation.size != prompt.size:
            raise ValueError(
                f"reservation_tokens: expected {prompt.size} values, got {reservation.size}"
            )
    over = np.flatnonzero(reservation > kv_capacity_tokens)
    if over.size:
        i = int(over[0])
        raise ValueError(
            f"reservation_tokens: request {i} reserves {int(reservation[i])} tokens, more than "
            f"kv_capacity_tokens={kv_capacity_tokens}; no schedule can run it"
        )
    # Upper bound on the iterations of one client: one prefill per request at worst and
    # at most one decode per decode token.
    k_default = int(prompt.size + (output - 1).sum())
    if num_iterations is None:
        num_iterations = k_default
    elif int(num_iterations) != num_iterations or num_iterations < 1:
        raise ValueError(f"num_iterations must be None or an integer >= 1, got {num_iterations!r}")
    return IterationInstance(
        prompt=prompt,
        output=output,
        reservation=reservation,
        num_clients=int(num_clients),
        max_batch=int(max_batch),
        kv_capacity_tokens=int(kv_capacity_tokens),
        coef=coef,
        prefill_budget_tokens=int(prefill_budget_tokens),
        num_iterations=int(num_iterations),
    )


def request_constant_s(inst: IterationInstance) -> np.ndarray:
    """Per-request time that does not depend on the schedule: token-proportional parts."""
    s = inst.prompt.astype(float)
    o = inst.output.astype(float)
    c = inst.coef
    return c.b_p * s + c.b_d * (o - 1) + c.c_d * ((o - 1) * s + o * (o - 1) / 2)


def replay_client_s(
    inst: IterationInstance, actions: list[tuple[str, tuple[int, ...]]], requests: set[int]
) -> float:
    """Replay one client's actions under the simulator's rules and return its time.

    Raises RuntimeError if the schedule breaks a rule: it would mean the MIP is wrong.
    """
    s, o, res = inst.prompt, inst.output, inst.reservation
    waiting = set(requests)
    running: dict[int, int] = {}  # request -> decode steps done
    t = 0.0
    for kind, ids in actions:
        if kind == "prefill":
            batch = set(ids)
            if not batch or not batch <= waiting:
                raise RuntimeError(f"prefill of {ids}: not all waiting")
            if len(running) + len(batch) > inst.max_batch:
                raise RuntimeError(f"prefill of {ids}: batch over {inst.max_batch}")
            kv = sum(int(res[i]) for i in running) + sum(int(res[i]) for i in batch)
            if kv > inst.kv_capacity_tokens:
                raise RuntimeError(f"prefill of {ids}: reserved KV {kv} over capacity")
            tokens = int(sum(int(s[i]) for i in batch))
            if len(batch) > 1 and tokens > inst.prefill_budget_tokens:
                raise RuntimeError(f"prefill of {ids}: {tokens} tokens over the budget")
            t += inst.coef.t_prefill([s[i] for i in batch])
            waiting -= batch
            for i in batch:
                if o[i] > 1:
                    running[i] = 0
        elif kind == "decode":
            if not running:
                raise RuntimeError("decode with an empty running batch")
            t += inst.coef.t_decode([s[i] + done + 1 for i, done in running.items()])
            for i in list(running):
                running[i] += 1
                if running[i] == o[i] - 1:
                    del running[i]
        else:
            raise RuntimeError(f"unknown action {kind!r}")
    if waiting or running:
        raise RuntimeError(f"requests left unfinished: waiting {waiting}, running {running}")
    return t
