"""Small named instances shared by the tests."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from hypothesis import settings

from hybridsched.instance import Client, Cluster, Instance, make_instance
from hybridsched.latency.linear import LinearLatency

settings.register_profile("ci", max_examples=60, deadline=None)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def gsm8k_small() -> Instance:
    """The first 60 GSM8K test requests on the default cluster (2 clients, tp=4, B=32)."""
    from hybridsched.workloads.requests import load_gsm8k

    return make_instance(load_gsm8k().iloc[:60].reset_index(drop=True), Cluster())


@pytest.fixture(scope="session")
def memory_bound_small() -> Instance:
    """120 GSM8K requests on 4 clients of tp=2: KV memory (about 5.1k tokens), not B, limits the batch."""
    from hybridsched.workloads.requests import load_gsm8k

    return make_instance(
        load_gsm8k().iloc[:120].reset_index(drop=True), Cluster(num_clients=4, tp=2)
    )


@pytest.fixture
def linear_client() -> Client:
    """One client with round-number linear latency: prefill 1 + 0.01 s/token, decode 0.5 + 0.1 s/request + 0.001 s/context token."""
    return Client(
        max_batch=2, kv_capacity_tokens=1000, latency=LinearLatency(1.0, 0.01, 0.5, 0.1, 0.001)
    )


@pytest.fixture
def two_requests(linear_client) -> Instance:
    """Two requests (s=10, o=3) and (s=20, o=2) on one linear client with B=2."""
    req = pd.DataFrame({"prompt_tokens": [10, 20], "output_tokens": [3, 2]})
    return Instance(req, (linear_client,))


@pytest.fixture(scope="session")
def dask_scheduler():
    """The address of a 2-worker, single-threaded-worker LocalCluster (processes), shared by tests."""
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address
