"""Clients, clusters and instances: what a schedule is for.

An ``Instance`` is a validated request table plus a tuple of ``Client`` records. A
``Cluster`` (model profile, hardware profile, number of clients, tensor-parallel degree,
max batch) is the usual way to make identical clients; heterogeneous clients are a tuple
of different ``Client`` records.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd

from hybridsched.latency.kernels import KernelLatency
from hybridsched.latency.kv_capacity import vllm_kv_blocks
from hybridsched.latency.linear import LinearLatency, fit_linear
from hybridsched.latency.profiles import HardwareProfile, load_hardware_profile, load_model_profile
from hybridsched.latency.roofline import LatencyModel, RooflineLatency
from hybridsched.workloads.requests import check_context, load_gsm8k, validate_requests

DEFAULT_PREFILL_BUDGET_TOKENS = 2048
# The admission modes a run may use: the engine implements them (engine/admission.py), the
# bounds price them (bounds/lower_bound.py).
ADMISSIONS = ("reservation", "on-demand")


@dataclass(frozen=True)
class Client:
    """One model replica: ``B_j`` slots, ``M_j`` KV tokens and its latency model."""

    max_batch: int
    kv_capacity_tokens: int
    latency: LatencyModel
    # Time a request spends before the engine sees it (API server, tokenization; the
    # hardware profile's ``request_overhead_s``): its TTFT and latency include it.
    request_overhead_s: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_batch, (int, np.integer)) or self.max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, got {self.max_batch!r}")
        if (
            not isinstance(self.kv_capacity_tokens, (int, np.integer))
            or self.kv_capacity_tokens < 1
        ):
            raise ValueError(
                f"kv_capacity_tokens must be an integer >= 1, got {self.kv_capacity_tokens!r}"
            )


@dataclass(frozen=True)
class Cluster:
    """``num_clients`` identical replicas of ``model`` on ``tp`` GPUs of ``hardware`` each."""

    model: str = "llama-65b"
    hardware: str = "a100-80gb-sxm"
    num_clients: int = 2
    tp: int = 4
    max_batch: int = 32
    latency: str = "roofline"  # or "linear": the least-squares fit of the roofline
    # The KV cache: ``kv_blocks`` blocks of ``block_size`` tokens when given, else the
    # profile's: a roofline profile's usable memory, or for a profile of measured kernels
    # vLLM's sizing at ``gpu_memory_utilization`` (latency/kv_capacity.py).
    kv_blocks: int | None = None
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    ep: int = 1  # expert parallelism of a mixture of experts (kernel profiles)

    def __post_init__(self) -> None:
        for name in ("num_clients", "tp", "max_batch", "block_size", "ep"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.latency not in ("roofline", "linear"):
            raise ValueError(f"latency must be 'roofline' or 'linear', got {self.latency!r}")

    def make_clients(self, hardware: HardwareProfile | None = None) -> tuple[Client, ...]:
        """The clients; ``hardware``: this profile instead of the one named (for a profile
        with changed overheads, as ``validate`` fits them)."""
        model, hw, tp = (
            load_model_profile(self.model),
            hardware or load_hardware_profile(self.hardware),
            int(self.tp),
        )
        roof = RooflineLatency(model, hw, tp)
        M = roof.kv_capacity_tokens
        lat: LatencyModel = roof
        if hw.kernels:
            lat = KernelLatency(model, hw, tp, int(self.ep))
            blocks = vllm_kv_blocks(model, hw, tp, self.gpu_memory_utilization, self.block_size)
            M = blocks * self.block_size
        if self.kv_blocks is not None:
            M = int(self.kv_blocks) * self.block_size
        if M < 1:
            raise ValueError(
                f"tp={tp}: {tp} x {hw.name} leaves no memory for the KV cache of {model.name}"
            )
        if self.latency == "linear":
            lat = fit_linear(lat, int(self.max_batch)).model
        client = Client(int(self.max_batch), int(M), lat, hw.request_overhead_s)
        return tuple(client for _ in range(self.num_clients))

    def to_dict(self) -> dict:
        out = {
            k: getattr(self, k)
            for k in ("model", "hardware", "num_clients", "tp", "max_batch", "latency")
        }
        for k, default in (("kv_blocks", None), ("block_size", 16), ("ep", 1)):
            if getattr(self, k) != default:
                out[k] = getattr(self, k)
        if self.gpu_memory_utilization != 0.9:
            out["gpu_memory_utilization"] = self.gpu_memory_utilization
        return out


@dataclass(frozen=True)
class Instance:
    """Requests (validated, canonical schema) and the clients that serve them."""

    requests: pd.DataFrame
    clients: tuple[Client, ...]
    prefill_budget_tokens: int = DEFAULT_PREFILL_BUDGET_TOKENS
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        validate(self)

    # Arrays the hot paths read: built once per instance.
    @cached_property
    def prompt(self) -> np.ndarray:
        return self.requests["prompt_tokens"].to_numpy(np.int64)

    @cached_property
    def output(self) -> np.ndarray:
        return self.requests["output_tokens"].to_numpy(np.int64)

    @cached_property
    def predicted(self) -> np.ndarray:
        return self.requests["predicted_output_tokens"].to_numpy(np.int64)

    @cached_property
    def arrival(self) -> np.ndarray:
        return self.requests["arrival_s"].to_numpy(float)

    @cached_property
    def reservation(self) -> np.ndarray:
        """KV tokens a request reserves at admission: ``s_i + ô_i`` (docs/model.md 7.4)."""
        return self.prompt + self.predicted

    @property
    def num_requests(self) -> int:
        return len(self.requests)

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    def replace(self, **changes) -> Instance:
        return replace(self, **changes)


def validate(instance: Instance) -> None:
    """Checks that span records: every request must fit on some client, alone."""
    object.__setattr__(instance, "requests", validate_requests(instance.requests))
    if len(instance.clients) < 1:
        raise ValueError(f"clients: need at least one client, got {len(instance.clients)}")
    for j, c in enumerate(instance.clients):
        if not isinstance(c, Client):
            raise ValueError(f"clients[{j}]: expected a Client, got {type(c).__name__}")
    b = instance.prefill_budget_tokens
    if not isinstance(b, (int, np.integer)) or b < 1:
        raise ValueError(f"prefill_budget_tokens must be an integer >= 1, got {b!r}")
    req = instance.requests
    need = (
        req["prompt_tokens"] + np.maximum(req["output_tokens"], req["predicted_output_tokens"])
    ).to_numpy()
    cap = max(c.kv_capacity_tokens for c in instance.clients)
    bad = need > cap
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"request {req['request_id'].iloc[pos]} (row {pos}): prompt_tokens + output_tokens = {need[pos]} "
            f"exceeds the KV capacity of every client ({cap} tokens)"
        )


def make_instance(
    requests: pd.DataFrame | None = None,
    cluster: Cluster | None = None,
    prefill_budget_tokens: int = DEFAULT_PREFILL_BUDGET_TOKENS,
    max_context: int | None = None,
) -> Instance:
    """An instance from a request table (default: GSM8K test) and a cluster (default: 2 x tp=4, B=32).

    Requests must fit the context length: ``max_context``, default the model profile's.
    """
    cluster = cluster or Cluster()
    requests = load_gsm8k() if requests is None else requests
    if max_context is None:
        max_context = load_model_profile(cluster.model).max_context
    requests, _ = check_context(validate_requests(requests), max_context)
    return Instance(
        requests,
        cluster.make_clients(),
        int(prefill_budget_tokens),
        meta={"cluster": cluster.to_dict()},
    )


def linear_instance(instance: Instance, coef: LinearLatency) -> Instance:
    """The same requests on clients that use a linear latency model (for the exact MIP)."""
    clients = tuple(replace(c, latency=coef) for c in instance.clients)
    return replace(instance, clients=clients)
