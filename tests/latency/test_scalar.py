"""The engine's scalar iteration times equal the latency model's methods, bit for bit."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridsched.latency.linear import LinearLatency
from hybridsched.latency.profiles import load_hardware_profile, load_model_profile
from hybridsched.latency.roofline import RooflineLatency
from hybridsched.latency.scalar import scalar_decode_time, scalar_mixed_time, scalar_prefill_time
from hybridsched.paths import data_dir

MODELS = sorted(p.stem for p in (data_dir() / "profiles" / "models").glob("*.yaml"))
HARDWARE = sorted(p.stem for p in (data_dir() / "profiles" / "hardware").glob("*.yaml"))


def _latencies():
    out = []
    for m in MODELS:
        for h in HARDWARE:
            for tp in (1, 2, 4, 8):
                try:
                    out.append(RooflineLatency(load_model_profile(m), load_hardware_profile(h), tp))
                except ValueError:
                    continue  # the weights do not fit, or tp does not divide the heads
    hw = load_hardware_profile("a100-80gb-sxm")
    model = load_model_profile("llama-65b")
    for change in (
        {"allreduce_ring": True},
        {"allreduce_large_message_bytes": 1e6, "allreduce_large_bandwidth": 1e11},
        {"decode_per_request_s": 1e-4},
        {"prefill_mbu": 0.5},
        {"prefill_floor_s": 0.01, "prefill_per_request_s": 1e-3},
    ):
        out.append(RooflineLatency(model, dataclasses.replace(hw, **change), 4))
    out.append(LinearLatency(0.01, 1e-5, 0.02, 1e-4, 1e-7))
    return out


LATENCIES = _latencies()


def test_every_shipped_profile_is_covered():
    assert len(LATENCIES) > 20
    assert any(getattr(x, "tp", 0) == 1 for x in LATENCIES)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 512),
    c=st.integers(0, 2_000_000),
    s=st.integers(0, 32_768),
    ct=st.integers(0, 4096),
    pre=st.integers(0, 8192),
)
def test_scalar_times_equal_the_methods(n, c, s, ct, pre):
    s2, sq = s * s, (pre + ct) ** 2 - pre**2
    for lat in LATENCIES:
        d, p, m = scalar_decode_time(lat), scalar_prefill_time(lat), scalar_mixed_time(lat)
        assert d(n, c) == float(lat.decode_time(n, c))
        assert p(s, s2) == float(lat.prefill_time(s, s2))
        assert m(n, c, ct, sq, pre) == float(lat.mixed_time(n, c, ct, sq, pre))
        assert type(d(n, c)) is float and type(p(s, s2)) is float


@pytest.mark.parametrize("fn", [scalar_decode_time, scalar_prefill_time, scalar_mixed_time])
def test_scalar_form_is_a_closure_on_the_plain_roofline(fn):
    """The fast path is taken where it can be (else the engine gains nothing)."""
    lat = RooflineLatency(
        load_model_profile("llama-65b"), load_hardware_profile("a100-80gb-sxm"), 4
    )
    assert fn(lat).__name__ != "<lambda>"
