"""Tests for hybridsched.instance: clients, clusters and validated instances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridsched.instance import Client, Cluster, Instance, linear_instance, make_instance
from hybridsched.latency.linear import LinearLatency
from hybridsched.latency.roofline import RooflineLatency
from hybridsched.workloads.requests import COLUMNS

LIN = LinearLatency(1.0, 0.01, 0.5, 0.1, 0.001)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_batch", 0),
        ("max_batch", -1),
        ("max_batch", 2.5),
        ("num_clients", 0),
        ("num_clients", True),
        ("tp", 0),
        ("tp", "4"),
    ],
)
def test_cluster_rejects_bad_integers(field, value):
    """Tests that Cluster rejects a zero, negative, fractional, boolean or string count
    with ValueError naming the field."""
    with pytest.raises(ValueError, match=field):
        Cluster(**{field: value})


def test_cluster_rejects_unknown_latency():
    """Tests that an unknown latency kind raises ValueError naming latency."""
    with pytest.raises(ValueError, match="latency"):
        Cluster(latency="magic")


def test_cluster_tp1_fails_when_clients_are_made():
    """Tests that tp=1 (weights do not fit one GPU) fails with ValueError naming tp."""
    with pytest.raises(ValueError, match="tp"):
        Cluster(tp=1).make_clients()


def test_cluster_unknown_profile_fails():
    """Tests that an unknown model profile fails with ValueError listing the known ones."""
    with pytest.raises(ValueError, match="known: .*llama-65b"):
        Cluster(model="gpt-9").make_clients()


@pytest.mark.parametrize(("tp", "M"), [(2, 5122), (4, 60054)])
def test_default_cluster_clients(tp, M):
    """Tests that a cluster makes num_clients identical roofline clients with B=32 and the
    profile's KV capacity (tp=2: 5122, tp=4: 60054 tokens)."""
    clients = Cluster(num_clients=3, tp=tp).make_clients()
    assert len(clients) == 3
    for c in clients:
        assert c.max_batch == 32
        assert c.kv_capacity_tokens == M
        assert isinstance(c.latency, RooflineLatency)
        assert c.latency.tp == tp


def test_linear_cluster_uses_fitted_model():
    """Tests that latency='linear' gives LinearLatency clients that keep the roofline's KV
    capacity and match its decode times."""
    lin = Cluster(latency="linear", num_clients=1).make_clients()[0]
    roof = Cluster(num_clients=1).make_clients()[0]
    assert isinstance(lin.latency, LinearLatency)
    assert lin.kv_capacity_tokens == roof.kv_capacity_tokens == 60054
    assert lin.latency.decode_time(16, 16 * 300) == pytest.approx(
        roof.latency.decode_time(16, 16 * 300), rel=1e-6
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_batch": 0}, "max_batch"), ({"kv_capacity_tokens": 0}, "kv_capacity_tokens")],
)
def test_client_rejects_bad_capacity(kwargs, match):
    """Tests that a client with no slot or no KV memory raises ValueError naming the field."""
    args = {"max_batch": 2, "kv_capacity_tokens": 100, "latency": LIN} | kwargs
    with pytest.raises(ValueError, match=match):
        Client(**args)


def test_make_instance_rejects_request_over_kv_capacity(tmp_path):
    """Tests that at tp=2 (M = 5122) a request with s + o = 5123 is rejected with
    ValueError naming the request, its need and the capacity, while s + o = 5122 fits
    (on LLaMA-65B without its 2,048-token context limit, so that the KV check is the one hit)."""
    from hybridsched.paths import data_dir

    text = (data_dir() / "profiles" / "models" / "llama-65b.yaml").read_text()
    model = tmp_path / "llama-65b-nolimit.yaml"
    model.write_text(text.replace("max_context: 2048\n", ""))
    ok = pd.DataFrame(
        {"request_id": [3, 7], "prompt_tokens": [100, 5000], "output_tokens": [10, 122]}
    )
    inst = make_instance(ok, Cluster(tp=2, model=str(model)))
    assert inst.num_requests == 2
    bad = ok.assign(output_tokens=[10, 123])
    with pytest.raises(ValueError, match=r"request 7 \(row 1\).*5123.*5122"):
        make_instance(bad, Cluster(tp=2, model=str(model)))


def test_instance_rejects_prediction_over_capacity():
    """Tests that a predicted output that would overflow every client's memory is rejected
    (planners reserve s + ô)."""
    req = pd.DataFrame(
        {"prompt_tokens": [10], "output_tokens": [5], "predicted_output_tokens": [200]}
    )
    with pytest.raises(ValueError, match="request 0"):
        Instance(req, (Client(2, 100, LIN),))


def test_instance_validates_requests():
    """Tests that an Instance validates its request table (a bad row fails at construction)."""
    with pytest.raises(ValueError, match="prompt_tokens"):
        Instance(pd.DataFrame({"prompt_tokens": [0], "output_tokens": [1]}), (Client(2, 100, LIN),))


@pytest.mark.parametrize(
    ("clients", "budget", "match"),
    [
        ((), 2048, "client"),
        (("not a client",), 2048, r"clients\[0\]"),
        ((Client(2, 100, LIN),), 0, "prefill_budget_tokens"),
    ],
)
def test_instance_rejects_bad_clients_and_budget(clients, budget, match):
    """Tests that no clients, a non-Client entry or a zero prefill budget raise ValueError."""
    req = pd.DataFrame({"prompt_tokens": [1], "output_tokens": [1]})
    with pytest.raises(ValueError, match=match):
        Instance(req, clients, prefill_budget_tokens=budget)


def test_instance_arrays_match_table():
    """Tests that the Instance's arrays equal the request table's columns, and the
    reservation is s_i + ô_i."""
    req = pd.DataFrame(
        {
            "request_id": [5, 2, 9],
            "prompt_tokens": [10, 20, 30],
            "output_tokens": [3, 1, 7],
            "predicted_output_tokens": [4, 2, 6],
            "arrival_s": [0.0, 1.5, 0.25],
        }
    )
    inst = Instance(req, (Client(2, 100, LIN), Client(3, 80, LIN)))
    assert list(inst.requests.columns) == COLUMNS
    np.testing.assert_array_equal(inst.prompt, [10, 20, 30])
    np.testing.assert_array_equal(inst.output, [3, 1, 7])
    np.testing.assert_array_equal(inst.predicted, [4, 2, 6])
    np.testing.assert_array_equal(inst.arrival, [0.0, 1.5, 0.25])
    np.testing.assert_array_equal(inst.reservation, [14, 22, 36])
    assert inst.prompt.dtype == np.int64 and inst.arrival.dtype == np.float64
    assert inst.num_requests == 3 and inst.num_clients == 2


def test_gsm8k_fixture_arrays(gsm8k_small):
    """Tests that the GSM8K fixture's arrays agree with its table row by row."""
    req = gsm8k_small.requests
    np.testing.assert_array_equal(gsm8k_small.prompt, req["prompt_tokens"].to_numpy())
    np.testing.assert_array_equal(gsm8k_small.output, req["output_tokens"].to_numpy())
    np.testing.assert_array_equal(
        gsm8k_small.reservation, (req["prompt_tokens"] + req["output_tokens"]).to_numpy()
    )
    assert gsm8k_small.num_requests == 60 and gsm8k_small.num_clients == 2


def test_replace_and_linear_instance_keep_requests(two_requests):
    """Tests that linear_instance swaps every client's latency model and keeps the requests,
    slots and memory, without touching the original instance."""
    coef = LinearLatency(2.0, 0.02, 1.0, 0.2, 0.002)
    lin = linear_instance(two_requests, coef)
    pd.testing.assert_frame_equal(lin.requests, two_requests.requests)
    assert all(c.latency == coef for c in lin.clients)
    assert [(c.max_batch, c.kv_capacity_tokens) for c in lin.clients] == [(2, 1000)]
    assert two_requests.clients[0].latency.a_p == 1.0
    shorter = two_requests.replace(prefill_budget_tokens=15)
    assert shorter.prefill_budget_tokens == 15 and two_requests.prefill_budget_tokens == 2048
