"""Tests for hybridsched.profiles: architectures, parameter counts, tensor parallelism, memory units."""

from __future__ import annotations

import pytest

from hybridsched.latency.profiles import (
    ModelProfile,
    load_hardware_profile,
    load_model_profile,
    parse_bytes,
    profile_names,
)
from hybridsched.latency.roofline import RooflineLatency

SHIPPED_MODELS = [
    "llama-2-70b",
    "llama-3.1-405b",
    "llama-3.1-70b",
    "llama-3.1-8b",
    "llama-65b",
    "mixtral-8x7b",
    "qwen3-30b-a3b",
    "qwen3-32b",
]


def test_shipped_profiles_listed():
    """Tests that the shipped model and hardware profiles are the documented ones."""
    assert profile_names("model") == SHIPPED_MODELS
    assert set(profile_names("hardware")) >= {
        "a100-80gb-sxm",
        "h100-80gb-sxm",
        "h200-141gb",
        "a100-sxm-splitwise2023",
        "h100-sxm-splitwise2023",
    }


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_params_within_one_percent_of_published(name):
    """Tests that the architecture's parameter count is within 1% of the published count,
    and that every profile states its source."""
    m = load_model_profile(name)
    assert m.published_params is not None and m.source
    assert abs(m.num_params / m.published_params - 1) < 0.01


def test_llama2_70b_by_hand():
    """Tests Llama-2-70B's count and KV bytes against the formula written out: GQA with 8 KV
    heads of 128 makes the KV cache 8x smaller than full attention."""
    d, ffn, L, V, kvd = 8192, 28672, 80, 32000, 8 * 128
    per_layer = d * d + 2 * d * kvd + d * d + 3 * d * ffn + 2 * d
    m = load_model_profile("llama-2-70b")
    assert m.num_params == L * per_layer + 2 * V * d + d == 68_976_648_192
    assert m.kv_bytes_per_token == 2 * L * kvd * 2 == 327_680
    assert m.max_context == 4096


def test_mixtral_weights_count_every_expert_flops_only_active():
    """Tests that Mixtral's weights count 8 experts and its FLOPs 2 (12.9B active, published)."""
    m = load_model_profile("mixtral-8x7b")
    assert abs(m.num_params / 46.7e9 - 1) < 0.01
    assert abs(m.active_params / 12.9e9 - 1) < 0.01
    roof = RooflineLatency(m, load_hardware_profile("h100-80gb-sxm"), 2)
    assert roof.prefill_floor_per_token() == pytest.approx(2 * m.active_params / roof.peak_eff)


def test_defaults_reduce_to_classic_layout():
    """Tests that without kv heads / head_dim the profile is full multi-head attention."""
    m = ModelProfile("x", num_layers=2, hidden_size=64, ffn_size=128, num_heads=8, vocab_size=10)
    assert m.kv_heads == 8 and m.head_size == 8
    assert m.num_params == 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 2 * 10 * 64 + 64


@pytest.mark.parametrize("tp", [3, 5, 6])
def test_tp_must_divide_heads(tp):
    """Tests that tp=3 on 64 heads is refused, naming the heads."""
    with pytest.raises(ValueError, match="64 attention heads"):
        RooflineLatency(
            load_model_profile("llama-2-70b"), load_hardware_profile("h100-80gb-sxm"), tp
        )


def test_tp2_fits_llama2_70b_on_two_h100_and_kv_heads_replicate_beyond_eight():
    """Tests that Llama-2-70B runs at tp=2 on H100-80GB (80 GiB each) and that at tp=16 the
    8 KV heads are replicated (vLLM's rule), doubling the KV bytes per token."""
    m, hw = load_model_profile("llama-2-70b"), load_hardware_profile("h100-80gb-sxm")
    r2 = RooflineLatency(m, hw, 2)
    assert r2.kv_capacity_tokens == int((2 * 80 * 2**30 * 0.9 - m.weight_bytes) // 327_680)
    assert m.kv_replicas(8) == 1 and m.kv_replicas(16) == 2
    assert RooflineLatency(m, hw, 16).kv_bytes_per_token == 2 * 327_680


def test_replication_needs_a_multiple():
    """Tests that KV heads that neither split nor replicate evenly are refused."""
    m = ModelProfile(
        "x", num_layers=1, hidden_size=96, ffn_size=8, num_heads=12, num_kv_heads=4, vocab_size=8
    )
    m.check_tp(2)
    m.check_tp(4)
    m.check_tp(12)
    with pytest.raises(ValueError, match="replicated"):
        m.check_tp(6)


def test_memory_units():
    """Tests that 80 GiB is 85,899,345,920 bytes and that the new profiles state true bytes
    while the paper's profile keeps its 80e9."""
    assert parse_bytes("80 GiB", "m") == 85_899_345_920
    assert parse_bytes("141 GB", "m") == 141e9
    assert load_hardware_profile("h100-80gb-sxm").memory_bytes == 80 * 2**30
    assert load_hardware_profile("a100-sxm-splitwise2023").memory_bytes == 80 * 2**30
    assert load_hardware_profile("a100-80gb-sxm").memory_bytes == 80e9
    with pytest.raises(ValueError, match="memory_bytes"):
        parse_bytes("80 GiBs", "memory_bytes")


def test_hardware_profiles_have_sources():
    """Tests that every shipped hardware profile states where its figures come from."""
    for name in profile_names("hardware"):
        assert load_hardware_profile(name).source, name


def test_bad_architecture_is_named():
    """Tests that heads that do not share KV heads evenly are refused naming both fields."""
    with pytest.raises(ValueError, match="num_kv_heads"):
        ModelProfile(
            "x", num_layers=1, hidden_size=64, ffn_size=8, num_heads=8, num_kv_heads=3, vocab_size=8
        )
    with pytest.raises(ValueError, match="experts_per_token"):
        ModelProfile(
            "x",
            num_layers=1,
            hidden_size=64,
            ffn_size=8,
            num_heads=8,
            vocab_size=8,
            num_experts=2,
            experts_per_token=3,
        )
