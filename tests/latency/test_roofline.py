"""Tests for hybridsched.latency: profiles, the roofline and linear models, floors, the fit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridsched.latency.linear import LinearLatency, fit_linear
from hybridsched.latency.profiles import (
    HardwareProfile,
    ModelProfile,
    load_hardware_profile,
    load_model_profile,
)
from hybridsched.latency.roofline import RooflineLatency
from hybridsched.paths import data_dir

# MODEL.md section 3, written out here so the tests do not read the package's numbers.
L, D, FFN, V = 80, 8192, 22016, 32000
PARAMS = L * (4 * D**2 + 3 * D * FFN + 2 * D) + 2 * V * D + D
WEIGHT_BYTES = 2 * PARAMS
KV_PER_TOKEN = 2 * L * D * 2
PEAK, HBM, MEM, USABLE = 312e12, 2.039e12, 80e9, 0.9
AR_BW, AR_LAT, MFU, MBU, OVERHEAD = 300e9, 10e-6, 0.5, 0.75, 3e-3


def kv_capacity(tp: int) -> int:
    """``M = floor((tp * 80 GB * 0.9 - weight bytes) / kv bytes per token)``."""
    return math.floor((tp * MEM * USABLE - WEIGHT_BYTES) / KV_PER_TOKEN)


def comm(tp: int, tokens: float) -> float:
    return 0.0 if tp == 1 else 2 * L * (AR_LAT + tokens * D * 2 / AR_BW)


def ref_prefill(tp: int, s: list[int]) -> float:
    """Roofline prefill by hand: 2*params FLOPs per token plus causal attention; weights
    read once and the prompt's KV written once."""
    flops = 2 * PARAMS * sum(s) + 2 * L * D * sum(x * x for x in s)
    bytes_ = WEIGHT_BYTES + KV_PER_TOKEN * sum(s)
    return OVERHEAD + max(flops / (tp * PEAK * MFU), bytes_ / (tp * HBM * MBU)) + comm(tp, sum(s))


def ref_decode(tp: int, contexts: list[int]) -> float:
    """Roofline decode by hand: 2*params + 4 L d c FLOPs per token; weights plus KV read."""
    n, c = len(contexts), sum(contexts)
    flops = 2 * PARAMS * n + 4 * L * D * c
    bytes_ = WEIGHT_BYTES + KV_PER_TOKEN * c
    return OVERHEAD + max(flops / (tp * PEAK * MFU), bytes_ / (tp * HBM * MBU)) + comm(tp, n)


@pytest.fixture(scope="module")
def model() -> ModelProfile:
    """The shipped LLaMA-65B profile."""
    return load_model_profile("llama-65b")


@pytest.fixture(scope="module")
def hardware() -> HardwareProfile:
    """The shipped A100-80GB SXM profile."""
    return load_hardware_profile("a100-80gb-sxm")


@pytest.fixture(scope="module")
def rooflines(model, hardware) -> dict[int, RooflineLatency]:
    """The roofline at tp = 2, 4, 8."""
    return {tp: RooflineLatency(model, hardware, tp) for tp in (2, 4, 8)}


# --------------------------------------------------------------------------------------
# profiles
# --------------------------------------------------------------------------------------


def test_llama65b_params_and_weights(model):
    """Tests that LLaMA-65B has about 65.3e9 parameters and 130.6 GB of bf16 weights,
    equal to MODEL.md's formula evaluated by hand."""
    assert model.num_params == PARAMS
    assert model.num_params == pytest.approx(65.3e9, rel=1e-3)
    assert model.weight_bytes == 2 * PARAMS
    assert model.weight_bytes / 1e9 == pytest.approx(130.6, abs=0.05)
    assert model.kv_bytes_per_token == KV_PER_TOKEN


def test_hardware_profile_constants(hardware):
    """Tests that the shipped hardware profile holds MODEL.md's default A100 constants."""
    got = (
        hardware.peak_flops,
        hardware.memory_bandwidth,
        hardware.memory_bytes,
        hardware.usable_memory_fraction,
        hardware.allreduce_bandwidth,
        hardware.allreduce_latency_s,
        hardware.mfu,
        hardware.mbu,
        hardware.iteration_overhead_s,
    )
    assert got == pytest.approx(
        (PEAK, HBM, MEM, USABLE, AR_BW, AR_LAT, MFU, MBU, OVERHEAD), rel=1e-12
    )


@pytest.mark.parametrize(("tp", "exact", "about"), [(2, 5122, 5.1e3), (4, 60054, 60e3)])
def test_kv_capacity(rooflines, tp, exact, about):
    """Tests that KV capacity is about 5.1k tokens at tp=2 and about 60k at tp=4, and
    equals MODEL.md's floor formula computed here (5122 and 60054)."""
    assert kv_capacity(tp) == exact
    assert rooflines[tp].kv_capacity_tokens == exact
    assert rooflines[tp].kv_capacity_tokens == pytest.approx(about, rel=0.02)


def test_kv_capacity_tp8(rooflines):
    """Tests that the capacity formula also holds at tp=8."""
    assert rooflines[8].kv_capacity_tokens == kv_capacity(8)


def test_tp1_cannot_hold_weights(model, hardware):
    """Tests that tp=1 (80 GB cannot hold 130.6 GB of weights) raises ValueError naming tp."""
    with pytest.raises(ValueError, match="tp"):
        RooflineLatency(model, hardware, 1)


@pytest.mark.parametrize("tp", [0, -2, 2.0])
def test_bad_tp(model, hardware, tp):
    """Tests that a non-positive or non-integer tp raises ValueError naming tp."""
    with pytest.raises(ValueError, match="tp"):
        RooflineLatency(model, hardware, tp)


@pytest.mark.parametrize(
    ("loader", "kind", "known"),
    [
        (load_model_profile, "model", "llama-65b"),
        (load_hardware_profile, "hardware", "a100-80gb-sxm"),
    ],
)
def test_unknown_profile_lists_known(loader, kind, known):
    """Tests that an unknown profile name raises ValueError that lists the known profiles."""
    with pytest.raises(ValueError, match=f"unknown {kind} profile 'gpt-9'.*known: .*{known}"):
        loader("gpt-9")


def _edited_profile(tmp_path: Path, kind: str, old: str, new: str) -> Path:
    name = {"models": "llama-65b", "hardware": "a100-80gb-sxm"}[kind]
    text = (data_dir() / "profiles" / kind / f"{name}.yaml").read_text()
    assert old in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("kind", "old", "new", "match"),
    [
        (
            "models",
            "num_layers: 80",
            "num_layers: 80\nnum_shards: 8",
            "unknown field.*num_shards",
        ),
        ("models", "num_layers: 80", "num_layers: eighty", "num_layers"),
        ("models", "num_layers: 80", "num_layers: 80.5", "num_layers"),
        ("models", "num_layers: 80", "num_layers: -80", "num_layers"),
        ("hardware", "mfu: 0.5", "mfu: 0.5\nflux_capacitor: 1.21", "unknown field.*flux_capacitor"),
        ("hardware", "mfu: 0.5", "mfu: fast", "mfu must be a number"),
        ("hardware", "mfu: 0.5", "mfu: [0.5]", "mfu"),
        ("hardware", "mfu: 0.5", "mfu: .nan", "mfu"),
        ("hardware", "mfu: 0.5", "mfu: 1.5", "mfu"),
        ("hardware", "peak_flops: 312.0e+12", "peak_flops: 0", "peak_flops"),
        ("hardware", "mfu: 0.5", "mfu: 0.5\n  - : [", "YAML"),
    ],
)
def test_bad_yaml_profile(tmp_path, kind, old, new, match):
    """Tests that a YAML profile with an unknown field, a non-number or an out-of-range
    value raises ValueError naming the field."""
    path = _edited_profile(tmp_path, kind, old, new)
    loader = load_model_profile if kind == "models" else load_hardware_profile
    with pytest.raises(ValueError, match=match):
        loader(path)


def test_missing_constant_in_profile(tmp_path):
    """Tests that a model profile missing a required constant raises ValueError."""
    path = _edited_profile(tmp_path, "models", "hidden_size: 8192\n", "")
    with pytest.raises(ValueError, match="hidden_size"):
        load_model_profile(path)


def test_yaml11_exponent_string_accepted(tmp_path, hardware):
    """Tests that '312e12' (a string in YAML 1.1) is read as the number it plainly is."""
    path = _edited_profile(tmp_path, "hardware", "peak_flops: 312.0e+12", "peak_flops: 312e12")
    assert load_hardware_profile(path).peak_flops == 312e12


@pytest.mark.parametrize(
    ("kind", "old", "new"),
    [("models", "num_layers: 80", "num_layers: true"), ("hardware", "mbu: 0.75", "mbu: yes")],
)
def test_boolean_in_profile_rejected(tmp_path, kind, old, new):
    """Tests that a YAML boolean in a numeric profile field raises ValueError."""
    path = _edited_profile(tmp_path, kind, old, new)
    loader = load_model_profile if kind == "models" else load_hardware_profile
    with pytest.raises(ValueError):
        loader(path)


# --------------------------------------------------------------------------------------
# roofline iteration times
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tp", [2, 4, 8])
@pytest.mark.parametrize("prompts", [[1], [73], [16, 300], [512, 512, 1024]])
def test_prefill_matches_hand_roofline(rooflines, tp, prompts):
    """Tests that prefill_time equals the roofline of MODEL.md section 3 computed by hand."""
    s = sum(prompts)
    s2 = sum(x * x for x in prompts)
    assert rooflines[tp].prefill_time(s, s2) == pytest.approx(ref_prefill(tp, prompts), rel=1e-12)


@pytest.mark.parametrize("tp", [2, 4, 8])
@pytest.mark.parametrize("contexts", [[1], [200], [80] * 32, list(range(100, 4000, 100))])
def test_decode_matches_hand_roofline(rooflines, tp, contexts):
    """Tests that decode_time equals the roofline of MODEL.md section 3 computed by hand."""
    got = rooflines[tp].decode_time(len(contexts), sum(contexts))
    assert got == pytest.approx(ref_decode(tp, contexts), rel=1e-12)


def test_tp_speeds_up_iterations(rooflines):
    """Tests that more tensor parallelism makes a large prefill and a full decode faster."""
    p = [rooflines[tp].prefill_time(2048, 2048 * 64) for tp in (2, 4, 8)]
    d = [rooflines[tp].decode_time(32, 32 * 150) for tp in (2, 4, 8)]
    assert p[0] > p[1] > p[2]
    assert d[0] > d[1] > d[2]


@pytest.mark.parametrize("tp", [2, 4])
def test_times_positive_and_increasing(rooflines, tp):
    """Tests that iteration times are positive, exceed the fixed overhead, strictly grow
    with prompt tokens, batch size and context, and never decrease."""
    r = rooflines[tp]
    s = np.arange(1, 4097, dtype=float)
    tpre = r.prefill_time(s, s * s)
    assert (tpre > OVERHEAD).all()
    assert (np.diff(tpre) > 0).all()
    n = np.arange(1, 65, dtype=float)
    tdec_n = r.decode_time(n, n * 100)
    assert (tdec_n > OVERHEAD).all() and (np.diff(tdec_n) > 0).all()
    c = np.arange(1, 10_000, 7, dtype=float)
    tdec_c = r.decode_time(8, c)
    assert (np.diff(tdec_c) > 0).all()


def test_vectorised_equals_scalar(rooflines):
    """Tests that arrays in give the elementwise scalar results (prefill and decode)."""
    rng = np.random.default_rng(3)
    for r in rooflines.values():
        s = rng.integers(1, 3000, 50).astype(float)
        s2 = s * rng.uniform(1, 500, 50)
        n = rng.integers(1, 64, 50).astype(float)
        c = n * rng.uniform(1, 500, 50)
        vp, vd = r.prefill_time(s, s2), r.decode_time(n, c)
        assert vp.shape == vd.shape == (50,)
        np.testing.assert_array_equal(
            vp, [r.prefill_time(float(a), float(b)) for a, b in zip(s, s2, strict=True)]
        )
        np.testing.assert_array_equal(
            vd, [r.decode_time(float(a), float(b)) for a, b in zip(n, c, strict=True)]
        )


def test_linear_latency_formula_and_vectorisation():
    """Tests that LinearLatency evaluates a_p + b_p sum(s) and a_d + b_d |D| + c_d sum(c),
    for scalars and arrays."""
    lat = LinearLatency(1.0, 0.01, 0.5, 0.1, 0.001)
    assert lat.prefill_time(30, 500) == pytest.approx(1.3)
    assert lat.decode_time(2, 32) == pytest.approx(0.732)
    n, c = np.array([1.0, 2.0, 3.0]), np.array([10.0, 40.0, 90.0])
    np.testing.assert_allclose(lat.decode_time(n, c), 0.5 + 0.1 * n + 0.001 * c)
    np.testing.assert_allclose(lat.prefill_time(c, c), 1.0 + 0.01 * c)


@pytest.mark.parametrize(
    "coef",
    [
        (-1.0, 0.01, 0.5, 0.1, 0.001),
        (1.0, 0.01, 0.5, float("nan"), 0.001),
        (0.0, 0.0, 0.5, 0.1, 0.0),
        (1.0, 0.1, 0.0, 0.0, 0.01),
    ],
)
def test_linear_latency_rejects_bad_coefficients(coef):
    """Tests that negative, NaN or all-zero (zero-time iteration) coefficients raise ValueError."""
    with pytest.raises(ValueError, match="linear latency"):
        LinearLatency(*coef)


# --------------------------------------------------------------------------------------
# floors (MODEL.md section 5)
# --------------------------------------------------------------------------------------

contexts_st = st.lists(st.integers(1, 6000), min_size=1, max_size=64)


@given(tp=st.sampled_from([2, 4, 8]), contexts=contexts_st, extra=st.integers(0, 64))
def test_decode_floors_are_valid(rooflines, tp, contexts, extra):
    """Tests that for any batch of n <= B requests a decode step lasts at least the sum of
    the per-token memory floors at B and at least the sum of the compute floors."""
    r = rooflines[tp]
    n = len(contexts)
    B = n + extra
    t = float(r.decode_time(n, sum(contexts)))
    fl = r.decode_floors(np.array(contexts), B)
    assert t >= float(np.sum(fl["memory"])) * (1 - 1e-12)
    assert t >= float(np.sum(fl["compute"])) * (1 - 1e-12)


@given(
    tp=st.sampled_from([2, 4, 8]), contexts=st.lists(st.integers(1, 6000), min_size=2, max_size=64)
)
def test_memory_floor_tight_at_full_batch(rooflines, tp, contexts):
    """Tests that the memory floor at B = |D| is tight whenever the step is memory-bound
    (equality, so the floor is not needlessly weak), and that it is invalid at B < |D|
    (the slot assumption matters)."""
    r = rooflines[tp]
    n, c = len(contexts), sum(contexts)
    flops = 2 * PARAMS * n + 4 * L * D * c
    mem_bound = (WEIGHT_BYTES + KV_PER_TOKEN * c) / (tp * HBM * MBU) >= flops / (tp * PEAK * MFU)
    t = float(r.decode_time(n, c))
    full = float(np.sum(r.decode_floors(np.array(contexts), n)["memory"]))
    if mem_bound:
        assert full == pytest.approx(t, rel=1e-9)
    too_few_slots = float(np.sum(r.decode_floors(np.array(contexts), n - 1)["memory"]))
    assert too_few_slots > full


@given(
    tp=st.sampled_from([2, 4, 8]), prompts=st.lists(st.integers(1, 2048), min_size=1, max_size=32)
)
def test_prefill_floor_is_valid(rooflines, tp, prompts):
    """Tests that a prefill lasts at least phi_p * sum(s), with phi_p = 2 params / peak_eff."""
    r = rooflines[tp]
    phi_p = r.prefill_floor_per_token()
    assert phi_p == pytest.approx(2 * PARAMS / (tp * PEAK * MFU), rel=1e-12)
    s, s2 = sum(prompts), sum(x * x for x in prompts)
    assert float(r.prefill_time(s, s2)) >= phi_p * s


def test_memory_floor_formula(rooflines):
    """Tests that the memory and compute floors equal MODEL.md's formulas by hand:
    (overhead + comm(B) + weights/bw) / B + kv_bytes(c)/bw."""
    tp, B, c = 4, 32, np.array([10.0, 500.0, 3000.0])
    bw = tp * HBM * MBU
    want = (OVERHEAD + comm(tp, B) + WEIGHT_BYTES / bw) / B + KV_PER_TOKEN * c / bw
    np.testing.assert_allclose(rooflines[tp].decode_floors(c, B)["memory"], want, rtol=1e-12)
    np.testing.assert_allclose(
        rooflines[tp].decode_floors(c, B)["compute"],
        (2 * PARAMS + 4 * L * D * c) / (tp * PEAK * MFU),
        rtol=1e-12,
    )


@given(contexts=contexts_st, extra=st.integers(0, 8))
def test_linear_floors_are_valid(contexts, extra):
    """Tests that the linear model's floors are valid too (decode for n <= B, prefill)."""
    lat = LinearLatency(1.0, 0.01, 0.5, 0.1, 0.001)
    n = len(contexts)
    t = lat.decode_time(n, sum(contexts))
    fl = lat.decode_floors(np.array(contexts), n + extra)
    assert t >= float(np.sum(fl["memory"])) - 1e-12
    assert t >= float(np.sum(fl["compute"])) - 1e-12
    assert lat.prefill_time(sum(contexts)) >= lat.prefill_floor_per_token() * sum(contexts)


# --------------------------------------------------------------------------------------
# fit_linear
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tp", [2, 4])
def test_fit_linear_decode_is_close(rooflines, tp):
    """Tests that the fitted linear model reproduces roofline decode times over the fitted
    range (batch 1..32, context 32..2048 per request) to within 1e-6 relative, reports that
    error, and has non-negative coefficients and the roofline's KV capacity."""
    r = rooflines[tp]
    fit = fit_linear(r, 32)
    lin = fit.model
    for name in ("a_p", "b_p", "a_d", "b_d", "c_d"):
        assert getattr(lin, name) >= 0, name
    assert lin.kv_capacity_tokens == r.kv_capacity_tokens
    assert fit.decode_max_rel_error < 1e-6
    n = np.arange(1, 33, dtype=float)[:, None]
    c = np.linspace(32, 2048, 9)[None, :]
    want = r.decode_time(n, n * c)
    got = lin.decode_time(n, n * c)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("tp", [2, 4])
def test_fit_linear_prefill_error_is_reported_honestly(rooflines, tp):
    """Tests that the reported prefill error bounds the actual error at fitted points.

    A linear prefill cannot follow the roofline's memory-bound knee at short prompts
    (about 60-70% relative error at 16 tokens; see the report), so this checks that the
    figure is reported truthfully and that large prefills (compute-bound, 1k-2k tokens) are
    close (within 5%)."""
    r = rooflines[tp]
    fit = fit_linear(r, 32)
    lin = fit.model
    # (s=16, k=1) and (s=256, k=1) are points of the fitted grid.
    for s in (16.0, 256.0):
        rel = abs(lin.prefill_time(s) - r.prefill_time(s, s * s)) / r.prefill_time(s, s * s)
        assert rel <= fit.prefill_max_rel_error + 1e-12
    assert 0 <= fit.prefill_max_rel_error < 1
    assert fit.prefill_rmse_s > 0
    for s in (1024.0, 2048.0):
        assert lin.prefill_time(s) == pytest.approx(float(r.prefill_time(s, s * 64)), rel=0.05)
