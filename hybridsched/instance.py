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

from hybridsched.latency.linear import LinearLatency, fit_linear
from hybridsched.latency.profiles import load_hardware_profile, load_model_profile
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

    def __post_init__(self) -> None:
        for name in ("num_clients", "tp", "max_batch"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.latency not in ("roofline", "linear"):
            raise ValueError(f"latency must be 'roofline' or 'linear', got {self.latency!r}")

    def make_clients(self) -> tuple[Client, ...]:
        roof = RooflineLatency(
            load_model_profile(self.model), load_hardware_profile(self.hardware), int(self.tp)
        )
        lat: LatencyModel = roof
        if self.latency == "linear":
            lat = fit_linear(roof, int(self.max_batch)).model
        client = Client(int(self.max_batch), roof.kv_capacity_tokens, lat)
        return tuple(client for _ in range(self.num_clients))

    def to_dict(self) -> dict:
        return {
            k: getattr(self, k)
            for k in ("model", "hardware", "num_clients", "tp", "max_batch", "latency")
        }


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
