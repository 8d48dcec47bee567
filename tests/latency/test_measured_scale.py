"""A GPU without kernel tables (the RTX 4090): its sibling's tables rescaled to a layer
profile measured on the GPU itself reproduce that profile, and the rescaling is exact
arithmetic on every operator family."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from hybridsched.latency.kernel_ops import build_parts
from hybridsched.latency.kernel_tables import Curve, kernel_tables
from hybridsched.latency.kernels import KernelLatency
from hybridsched.latency.measured_scale import (
    MeasuredScale,
    measured_folder,
    measured_scale,
    measured_times,
    rescale,
)
from hybridsched.latency.profiles import load_hardware_profile, load_model_profile

MEASURED = "rtx4090-llama-3.1-8b"


@pytest.fixture(scope="module")
def rtx4090():
    return KernelLatency(
        load_model_profile("llama-3.1-8b"), load_hardware_profile("rtx-4090-vllm"), 1
    )


def test_decode_steps_match_the_measured_gpu(rtx4090):
    """Tests that every decode step of the measured grid (16 to 256 requests reading 512 to
    16,384 tokens each), priced by the rescaled L40S tables, is within 10% of the RTX 4090's
    measured kernel times (token-major operators, decode attention and LM head), and within
    5% at the median; the unscaled L40S tables miss the median by more than 15%."""
    path = measured_folder(MEASURED)
    xs, tok, rows, head, att = measured_times(path, 32)
    dec = att[(att.prefill_chunk == 0) & (att.n_decode >= 16) & (att.kv_decode >= 512)]
    b, c = dec.n_decode.to_numpy(float), dec.kv_decode.to_numpy(float)
    measured = np.interp(b, xs, tok) + 32 * dec.time_us.to_numpy() / 1e3 + np.interp(b, rows, head)
    ovh = rtx4090.overhead
    ours = (rtx4090.decode_time(b, b * c) - ovh) * 1e3
    err = np.abs(ours / measured - 1)
    assert np.median(err) < 0.05 and err.max() < 0.10
    sibling = KernelLatency(rtx4090.model, replace(rtx4090.hardware, kernel_scale=None), 1)
    raw = (sibling.decode_time(b, b * c) - ovh) * 1e3
    assert np.median(np.abs(raw / measured - 1)) > 0.15


def test_prompt_steps_match_the_measured_gpu(rtx4090):
    """Tests one prompt of 256 to 2,048 tokens: token-major operators and prompt attention
    (the LM head aside) within 10% of the measured kernel times."""
    path = measured_folder(MEASURED)
    xs, tok, _, _, att = measured_times(path, 32)
    pre = att[(att.n_decode == 0) & (att.kv_prefill == 0) & (att.prefill_chunk >= 256)]
    s = pre.prefill_chunk.to_numpy(float)
    measured = np.interp(s, xs, tok) + 32 * pre.time_us.to_numpy() / 1e3
    p = rtx4090._parts
    ours = p.tok(s) + p.ctx(np.ones_like(s), s)
    assert np.abs(ours / measured - 1).max() < 0.10


def test_memory_bound_faster_compute_bound_slower():
    """Tests the direction the two GPUs' specifications predict: the RTX 4090 reads memory
    faster than the L40S (1,008 against 864 GB/s) and multiplies bf16 slower (165 against
    362 TFLOPS dense), so small-batch operators scale below 1 and large prompts above."""
    s = measured_scale(MEASURED, "l40s/vllm/0.24.0")
    assert s.tokens(8.0) < 0.9 and s.generation_attention < 0.9
    assert s.tokens(2048.0) > 1.1 and s.context_attention > 1.1


def test_unit_scale_changes_nothing():
    """Tests that factors of one reproduce the sibling's operators exactly."""
    m = load_model_profile("qwen3-32b")
    parts = build_parts(kernel_tables("l40s/vllm/0.24.0"), m, 2, 1)
    one = Curve([1.0, 4096.0], [1.0, 1.0])
    out = rescale(parts, MeasuredScale("one", one, one, 1.0, 1.0))
    x = np.array([1.0, 37.0, 512.0, 3000.0, 50_000.0])
    np.testing.assert_allclose(out.tok(x), parts.tok(x), rtol=1e-12)
    np.testing.assert_allclose(out.logits(x), parts.logits(x), rtol=1e-12)
    np.testing.assert_allclose(out.gen(x, x), parts.gen(x, x), rtol=1e-12)
    np.testing.assert_allclose(out.ctx(x, x), parts.ctx(x, x), rtol=1e-12)
    assert out.mixed_logits == pytest.approx(parts.mixed_logits)


def test_unknown_measurement_is_named():
    """Tests that a profile naming a measurement that is not shipped fails with its name."""
    with pytest.raises(ValueError, match="no-such-gpu"):
        measured_folder("no-such-gpu")


UPSTREAM_BLOBS = {  # git blob hashes at upstream commit 5daddb2 (the folder's README)
    "dense.csv": "c66f9d685edc8ad1454a0a8443a111877263ceb3",
    "attention.csv": "18b12756a30a68250ae3a98a4d25b29ea09dd578",
    "per_sequence.csv": "31a431b0bb82e66c4c2e696a2369537d9bff221d",
    "meta.yaml": "257a18091415c69c12063186eb822bc0c8ecdd08",
}


def test_measurement_files_are_the_upstream_ones():
    """Tests that the shipped copies are byte for byte upstream's (by git blob hash)."""
    path = measured_folder(MEASURED)
    for name, blob in UPSTREAM_BLOBS.items():
        data = (path / name).read_bytes()
        assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == blob, name
    assert list(pd.read_csv(path / "dense.csv").columns) == ["layer", "tokens", "time_us"]
