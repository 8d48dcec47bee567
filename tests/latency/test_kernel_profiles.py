"""The shipped profiles of measured kernels: each loads, prices every shipped model that fits
it with positive times that grow with the batch, and reproduces aiconfigurator's own
per-iteration estimates row by row (``make bench`` scores all 130,944 rows)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from hybridsched.instance import Cluster
from hybridsched.latency.kernels import KernelLatency
from hybridsched.latency.profiles import load_hardware_profile, load_model_profile, profile_names
from hybridsched.paths import data_dir, repo_root

sys.path.insert(0, str(repo_root() / "benchmarks"))
from kernel_accuracy import PROFILES  # noqa: E402  (benchmarks/kernel_accuracy.py)

KERNEL_PROFILES = [n for n in profile_names("hardware") if load_hardware_profile(n).kernels]
SPLITWISE = ("a100-sxm-splitwise2023", "h100-sxm-splitwise2023")


def test_profiles_named_for_what_they_are():
    """Tests the shipped names (GPU and backend) and that each says what measured it."""
    for name in ("h100-sxm-vllm", "h200-sxm-vllm", "a100-sxm-vllm", "b200-vllm"):
        assert name in KERNEL_PROFILES
    for name in ("rtx-pro-6000-vllm", "l40s-vllm", "h100-sxm-sglang", "h100-sxm-trtllm"):
        assert name in KERNEL_PROFILES
    for name in KERNEL_PROFILES:
        assert "aiconfigurator" in load_hardware_profile(name).source


@pytest.mark.parametrize("hw", KERNEL_PROFILES)
def test_every_fitting_model_has_growing_decode_times(hw):
    """Tests that each shipped model that fits the GPU at some tp is priced with finite,
    positive decode steps that grow with the batch (within measurement noise)."""
    fitted = 0
    for model in profile_names("model"):
        for tp in (1, 2, 4, 8):
            try:
                (client,) = Cluster(model=model, hardware=hw, num_clients=1, tp=tp).make_clients()
            except ValueError:
                continue  # does not fit (weights, or tp against the heads)
            fitted += 1
            b = np.array([1.0, 8.0, 32.0, 128.0])
            t = client.latency.decode_time(b, b * 2048.0)
            assert np.all(np.isfinite(t)) and np.all(t > 0), (model, tp)
            # measured kernels are not exactly monotone (a batch of 8 can beat 1 by a few
            # percent on some GEMM shapes), but never by much, and 128 costs more than 1
            assert np.all(t[1:] >= 0.95 * t[:-1]) and t[-1] > t[0], (model, tp)
    assert fitted >= 3


def test_fixed_reference_rows_within_two_percent():
    """Tests 60 fixed rows of aiconfigurator's estimates (every kind, several GPUs, backends,
    models and tp) against the kernel model, each within 2%."""
    ref = pd.read_parquet(data_dir() / "latency" / "kernels" / "reference_estimates.parquet")
    rows = ref.sample(60, random_state=3)
    assert set(rows["kind"]) == {"prefill", "decode", "mixed", "chunk"}
    for r in rows.itertuples():
        hw = load_hardware_profile(PROFILES[(r.system, r.backend)])
        lat = KernelLatency(load_model_profile(r.model), hw, int(r.tp), int(r.ep))
        if r.kind == "prefill":
            t = lat.prefill_time(float(r.sum_tokens), float(r.sum_sq_tokens))
        elif r.kind == "decode":
            t = lat.decode_time(float(r.batch_size), float(r.sum_context))
        else:
            args = (r.batch_size, r.sum_context, r.chunk_tokens, r.chunk_sq_diff, r.chunk_prefix)
            t = lat.mixed_time(*(float(x) for x in args))
        t -= hw.iteration_overhead_s  # the estimates hold no host time
        assert t * 1e3 == pytest.approx(r.aic_ms, rel=0.02), r
