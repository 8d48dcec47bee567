"""Tests for the roofline's prefill terms (prefill_mbu, prefill_floor_s, prefill_per_request_s):
off by default, bit for bit; what each adds when on; the identities and floors they keep."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridsched.latency.profiles import load_hardware_profile, load_model_profile, profile_names
from hybridsched.latency.roofline import RooflineLatency, effective_prompts

MEASURED = {"a100-sxm-splitwise2023", "h100-sxm-splitwise2023"}
# Roofline profiles only: a profile of measured kernels times iterations from its tables.
ROOFLINE = sorted(
    n
    for n in profile_names("hardware")
    if n not in MEASURED and not load_hardware_profile(n).kernels
)


def old_prefill(r: RooflineLatency, s, s2):
    """The prefill as written before the prefill terms existed (the paper reproduction's)."""
    m = r.model
    flops = 2.0 * m.active_params * s + 2.0 * m.num_layers * m.attention_dim * s2
    bytes_ = m.weight_bytes + r.kv_bytes_per_token * s
    return r.overhead + np.maximum(flops / r.peak_eff, bytes_ / r.bw_eff) + r.comm_time(s)


def old_mixed(r: RooflineLatency, n, c, tok, sq, prefix):
    """The mixed iteration as written before the prefill terms existed."""
    m = r.model
    flops = (
        2.0 * m.active_params * (n + tok)
        + 4.0 * m.num_layers * m.attention_dim * c
        + 2.0 * m.num_layers * m.attention_dim * sq
    )
    bytes_ = m.weight_bytes + r.kv_bytes_per_token * (c + tok + prefix)
    return (
        r.overhead
        + np.maximum(flops / r.peak_eff, bytes_ / r.bw_eff)
        + r.comm_time(n + tok)
        + r.hardware.decode_per_request_s * n
    )


@pytest.mark.parametrize("hw_name", ROOFLINE)
def test_defaults_leave_every_guessed_profile_bit_for_bit(hw_name):
    """Tests that every shipped profile without the prefill terms has them at their defaults
    and gives prefill and mixed times identical (==, not approx) to the formulas before them."""
    hw = load_hardware_profile(hw_name)
    assert (hw.prefill_mbu, hw.prefill_floor_s, hw.prefill_per_request_s) == (None, 0.0, 0.0)
    rng = np.random.default_rng(7)
    s = rng.integers(1, 8192, 200).astype(float)
    k = rng.integers(1, 32, 200).astype(float)
    for model_name, tp in (("llama-65b", 4), ("llama-2-70b", 2), ("llama-3.1-8b", 1)):
        r = RooflineLatency(load_model_profile(model_name), hw, tp)
        tok, sq = k * s, k * s * s
        assert np.array_equal(r.prefill_time(tok, sq), old_prefill(r, tok, sq))
        assert r.prefill_time(512.0, 512.0**2) == old_prefill(r, 512.0, 512.0**2)
        n, c, pre = k, k * (s + 100), rng.integers(0, 500, 200).astype(float)
        chunk = np.where(rng.random(200) < 0.3, 0.0, s)
        sqd = (pre + chunk) ** 2 - pre**2
        got = r.mixed_time(n, c, chunk, sqd, pre)
        assert np.array_equal(got, old_mixed(r, n, c, chunk, sqd, pre))


@pytest.fixture(scope="module")
def h100():
    return load_hardware_profile("h100-80gb-sxm")


@pytest.fixture(scope="module")
def llama():
    return load_model_profile("llama-2-70b")


def test_floor_lifts_only_short_prefills(h100, llama):
    """Tests that the floor replaces the roofline's max where the max is smaller (a short
    prompt: overhead + floor + comm) and leaves a long prompt's time as it was."""
    base = RooflineLatency(llama, h100, 8)
    r = RooflineLatency(llama, replace(h100, prefill_floor_s=0.05), 8)
    assert r.prefill_time(128.0, 128.0**2) == pytest.approx(
        r.overhead + 0.05 + r.comm_time(128.0), rel=1e-12
    )
    assert r.prefill_time(8192.0, 8192.0**2) == base.prefill_time(8192.0, 8192.0**2)
    assert r.decode_time(4.0, 4000.0) == base.decode_time(4.0, 4000.0)


@pytest.mark.parametrize("b", [1, 2, 16, 64])
def test_per_request_cost_counts_equal_prompts(h100, llama, b):
    """Tests that a batch of b equal prompts costs b * prefill_per_request_s more."""
    base = RooflineLatency(llama, h100, 2)
    r = RooflineLatency(llama, replace(h100, prefill_per_request_s=0.01), 2)
    s = 512.0
    extra = r.prefill_time(b * s, b * s * s) - base.prefill_time(b * s, b * s * s)
    assert extra == pytest.approx(0.01 * b, rel=1e-9)


@given(st.lists(st.integers(1, 4096), min_size=1, max_size=40))
def test_effective_prompts_bounds(prompts):
    """Tests that (sum s)^2 / sum s^2 is at least 1 and at most the count, and exact for
    prompts of one length."""
    s = np.array(prompts, dtype=float)
    n = effective_prompts(s.sum(), (s * s).sum())
    assert 1 - 1e-12 <= n <= len(prompts) + 1e-9
    assert effective_prompts(len(prompts) * s[0], len(prompts) * s[0] ** 2) == pytest.approx(
        len(prompts), rel=1e-12
    )
    assert effective_prompts(0.0, 0.0) == 0.0


def test_prefill_mbu_slows_the_memory_side_only(h100, llama):
    """Tests that prefill_mbu sets the memory side of a memory-bound prefill and leaves
    decode steps and compute-bound prefills alone; and that above mbu it is refused."""
    base = RooflineLatency(llama, h100, 8)
    r = RooflineLatency(llama, replace(h100, prefill_mbu=h100.mbu / 2), 8)
    mem = (llama.weight_bytes + r.kv_bytes_per_token * 16) / (
        8 * h100.memory_bandwidth * h100.mbu / 2
    )
    assert r.prefill_time(16.0, 256.0) == pytest.approx(
        r.overhead + mem + r.comm_time(16.0), rel=1e-12
    )
    assert r.decode_time(32.0, 32e3) == base.decode_time(32.0, 32e3)
    assert r.prefill_time(8192.0, 8192.0**2) == base.prefill_time(8192.0, 8192.0**2)
    with pytest.raises(ValueError, match=r"prefill_mbu must be in \(0, mbu"):
        replace(h100, prefill_mbu=h100.mbu * 1.1)


@pytest.mark.parametrize("hw_name", sorted(MEASURED))
def test_mixed_identities_and_floors_hold_with_the_terms(hw_name, llama):
    """Tests that with the fitted prefill terms on, one whole prompt and no batch costs exactly
    a prefill, no chunk costs exactly a decode step, and the section-5 prefill bounds
    (F_p + g sum(s), phi_p sum(s)) stay below the prefill times."""
    hw = load_hardware_profile(hw_name)
    assert hw.prefill_mbu is not None and hw.prefill_floor_s > 0
    for tp in (2, 8):
        r = RooflineLatency(llama, hw, tp)
        s = np.array([1.0, 64.0, 512.0, 3000.0])
        assert np.allclose(
            r.mixed_time(0.0, 0.0, s, s * s, 0.0), r.prefill_time(s, s * s), rtol=1e-12
        )
        assert np.allclose(
            r.mixed_time(8.0, 8000.0, 0.0, 0.0, 0.0), r.decode_time(8.0, 8000.0), rtol=1e-12
        )
        for k in (1, 4, 32):
            t = r.prefill_time(k * s, k * s * s)
            assert np.all(t >= r.prefill_fixed_cost() + r.prefill_token_floor() * k * s)
            assert np.all(t >= r.prefill_floor_per_token() * k * s)
