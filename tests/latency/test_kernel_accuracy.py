"""The measured-kernel latency model against aiconfigurator's own estimates, its fast scalar
path, its floors, and the renamed profiles' former names."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from hybridsched.latency.kernels import KernelLatency
from hybridsched.latency.profiles import (
    ALIASES,
    load_hardware_profile,
    load_model_profile,
    profile_names,
)
from hybridsched.latency.scalar import scalar_decode_time, scalar_mixed_time, scalar_prefill_time
from hybridsched.paths import data_dir, repo_root

sys.path.insert(0, str(repo_root() / "benchmarks"))
from kernel_accuracy import PROFILES, kernel_errors  # noqa: E402  (benchmarks/kernel_accuracy.py)

# Fixed reference rows: every step kind and backend, dense, MHA (llama-65b) and MoE (ep 1 and
# ep = tp) models, QK-norm (qwen3), PCIe all-reduce (L40S, RTX PRO 6000), 1 to 256 requests.
# (system, backend, model, tp, ep, kind, row fields that pick the row)
ROWS = [
    ("h100_sxm", "vllm", "llama-3.1-8b", 1, 1, "prefill", {"num_prompts": 4, "prompt_tokens": 2048}),
    ("h100_sxm", "vllm", "llama-3.1-70b", 4, 1, "decode", {"batch": 64, "context_tokens": 4097}),
    ("a100_sxm", "vllm", "llama-65b", 8, 1, "decode", {"batch": 24, "context_tokens": 1025}),
    ("l40s", "vllm", "qwen3-32b", 4, 1, "mixed", {"batch": 16, "num_prompts": 2, "prompt_tokens": 1024}),
    ("rtx_pro_6000_server", "vllm", "mixtral-8x7b", 4, 4, "chunk", {"prompt_tokens": 7168, "prefix_tokens": 6144}),
    ("b200_sxm", "vllm", "llama-3.1-405b", 8, 1, "prefill", {"num_prompts": 2, "prompt_tokens": 8192}),
    ("h200_sxm", "vllm", "qwen3-30b-a3b", 8, 8, "mixed", {"batch": 256, "num_prompts": 1, "prompt_tokens": 4096}),
    ("h100_sxm", "sglang", "llama-2-70b", 8, 1, "decode", {"batch": 256, "context_tokens": 8193}),
    ("h200_sxm", "sglang", "mixtral-8x7b", 2, 1, "prefill", {"num_prompts": 16, "prompt_tokens": 512}),
    ("b200_sxm", "sglang", "qwen3-32b", 1, 1, "chunk", {"prompt_tokens": 2560, "prefix_tokens": 2048}),
    ("h100_sxm", "trtllm", "qwen3-30b-a3b", 1, 1, "decode", {"batch": 3, "context_tokens": 129}),
    ("h200_sxm", "trtllm", "llama-65b", 1, 1, "mixed", {"batch": 4, "num_prompts": 1, "prompt_tokens": 8192}),
    ("b200_sxm", "trtllm", "llama-3.1-70b", 2, 1, "prefill", {"num_prompts": 1, "prompt_tokens": 128}),
    ("a100_sxm", "vllm", "qwen3-30b-a3b", 4, 4, "prefill", {"num_prompts": 8, "prompt_tokens": 1536}),
]  # fmt: skip


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return pd.read_parquet(data_dir() / "latency" / "kernels" / "reference_estimates.parquet")


def _latency(system, backend, model, tp, ep, overhead=0.0) -> KernelLatency:
    hw = replace(load_hardware_profile(PROFILES[(system, backend)]), iteration_overhead_s=overhead)
    return KernelLatency(load_model_profile(model), hw, tp, ep)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r[0]}-{r[1]}-{r[2]}-tp{r[3]}ep{r[4]}-{r[5]}")
def test_fixed_reference_rows_within_two_percent(reference, row):
    """Tests that a fixed reference iteration, priced from the sums the engine passes (Python
    ints, as the engine does), is aiconfigurator's estimate within 2%, with the profile's host
    overhead added on top of it (the estimates hold none)."""
    system, backend, model, tp, ep, kind, pick = row
    q = reference
    for col, v in dict(
        system=system, backend=backend, model=model, tp=tp, ep=ep, kind=kind
    ).items():
        q = q[q[col] == v]
    for col, v in pick.items():
        q = q[q[col] == v]
    assert len(q) == 1
    r = q.iloc[0]
    lat = _latency(system, backend, model, tp, ep, overhead=0.004)
    if kind == "prefill":
        t = lat.prefill_time(int(r.sum_tokens), int(r.sum_sq_tokens))
    elif kind == "decode":
        t = lat.decode_time(int(r.batch_size), int(r.sum_context))
    else:
        cols = ("batch_size", "sum_context", "chunk_tokens", "chunk_sq_diff", "chunk_prefix")
        t = lat.mixed_time(*(int(r[c]) for c in cols))
    assert type(t) is float
    assert (t - 0.004) * 1e3 == pytest.approx(r.aic_ms, rel=0.02)


def test_every_reference_row_close():
    """Tests all 130,944 reference iterations (benchmarks/kernel_accuracy.py): median and p90
    of |error| under 0.05%, none over 2% (aiconfigurator's own interpolation, reproduced)."""
    df = kernel_errors()
    assert len(df) == 130_944 and np.isfinite(df["rel"]).all()
    err = df["rel"].abs()
    for kind, e in err.groupby(df["kind"].astype(str)):
        assert e.median() < 5e-4 and e.quantile(0.9) < 5e-4, kind
    assert err.max() < 0.02


def test_moe_context_pass_has_no_lm_head_and_mixed_steps_one_row():
    """Tests aiconfigurator 0.12's LM head: a dense prefill pays one row per prompt, a mixed
    step one row, a mixture of experts neither (its context operator list has none)."""
    dense = _latency("h100_sxm", "vllm", "llama-3.1-8b", 1, 1)
    moe = _latency("h100_sxm", "vllm", "mixtral-8x7b", 2, 1)
    for lat, has in ((dense, True), (moe, False)):
        p = lat._parts
        no_head = p.tok(4096.0) + p.ctx(4.0, 1024.0) + p.ctx_extra
        head = p.logits(4.0) if has else 0.0
        assert lat.prefill_time(4096.0, 4 * 1024.0**2) * 1e3 == pytest.approx(no_head + head)
        mixed = lat.mixed_time(0, 0, 1024, 1024**2, 0) * 1e3
        assert mixed == pytest.approx(
            p.tok(1024.0) + p.ctx(1.0, 1024.0) + p.ctx_extra + (p.logits(1.0) if has else 0.0)
        )


def test_scalar_path_matches_arrays_and_is_the_engines():
    """Tests that the engine's scalar functions are the methods' scalar path (ints or floats
    alike) and agree with the numpy path to 1e-12."""
    rng = np.random.default_rng(0)
    for args in (
        ("h100_sxm", "vllm", "llama-3.1-70b", 4, 1),
        ("l40s", "vllm", "qwen3-30b-a3b", 2, 2),
    ):
        lat = _latency(*args, overhead=0.001)
        d, p, m = scalar_decode_time(lat), scalar_prefill_time(lat), scalar_mixed_time(lat)
        assert (d, p, m) == lat.scalar
        n = rng.integers(1, 300, 50)
        c = n * rng.integers(1, 9000, 50)
        s = rng.integers(1, 9000, 50)
        ct, pre = rng.integers(1, 2048, 50), rng.integers(0, 6000, 50)
        sq = (pre + ct) ** 2 - pre**2
        dec, pf, mx = (
            lat.decode_time(n, c),
            lat.prefill_time(s, s * s),
            lat.mixed_time(n, c, ct, sq, pre),
        )
        for k in range(50):
            a = [int(v[k]) for v in (n, c, s, ct, sq, pre)]
            assert d(a[0], a[1]) == d(float(a[0]), float(a[1])) == lat.decode_time(a[0], a[1])
            assert d(a[0], a[1]) == pytest.approx(dec[k], rel=1e-12)
            assert p(a[2], a[2] ** 2) == pytest.approx(pf[k], rel=1e-12)
            assert m(a[0], a[1], a[3], a[4], a[5]) == pytest.approx(mx[k], rel=1e-12)
            assert m(0, 0, a[3], a[4], a[5]) == pytest.approx(
                lat.mixed_time(np.zeros(1), np.zeros(1), a[3], a[4], a[5])[0], rel=1e-12
            )
        assert m(a[0], a[1], 0, 0, 0) == d(a[0], a[1])  # no chunk: a decode step


@pytest.mark.parametrize(
    "hw, model, tp, ep",
    [("h100-sxm-vllm", "llama-3.1-8b", 1, 1), ("l40s-vllm", "qwen3-32b", 4, 1),
     ("b200-trtllm", "mixtral-8x7b", 4, 4), ("a100-sxm-vllm", "llama-65b", 8, 1)],
)  # fmt: skip
def test_floors_are_lower_bounds(hw, model, tp, ep):
    """Tests that the floors bound every iteration from below: a decode step of b requests
    lasts at least b memory floors (b <= max_batch), a mixed step that plus its chunk tokens
    at the memory-side prefill floor, a prefill its tokens at the per-token floor."""
    lat = KernelLatency(load_model_profile(model), load_hardware_profile(hw), tp, ep)
    rng = np.random.default_rng(1)
    B = 256
    per_req = lat.decode_floors(0.0, B)["memory"]
    g_mem, g_tok = lat.prefill_floors()["memory"], lat.prefill_floor_per_token()
    fixed = lat.decode_fixed_cost()
    for _ in range(300):
        b = int(rng.integers(1, B + 1))
        c = b * int(rng.integers(1, 8000))
        ct, pre = int(rng.integers(1, 4096)), int(rng.integers(0, 8000))
        s = int(rng.integers(1, 16384))
        assert lat.decode_time(b, c) >= b * per_req >= 0
        assert lat.decode_time(b, c) >= fixed
        assert lat.mixed_time(b, c, ct, (pre + ct) ** 2 - pre**2, pre) >= b * per_req + ct * g_mem
        assert lat.prefill_time(s, s * s) >= s * g_tok


def test_former_profile_names_load_the_renamed_profiles():
    """Tests that the SplitwiseSim-fitted profiles load under their former names, as the
    renamed profile, and that the listing shows the current names only."""
    names = profile_names("hardware")
    for old, new in ALIASES["hardware"].items():
        assert old not in names and new in names
        assert load_hardware_profile(old) == load_hardware_profile(new)
        assert load_hardware_profile(old).name == new
    assert ALIASES["hardware"]["h100-80gb-sxm-measured"] == "h100-sxm-splitwise2023"
    assert ALIASES["hardware"]["a100-80gb-sxm-measured"] == "a100-sxm-splitwise2023"
    with pytest.raises(ValueError, match="unknown hardware profile"):
        load_hardware_profile("h100-80gb-sxm-measured2")


def test_kernel_profiles_say_what_measured_them():
    """Tests that each profile of measured kernels names its tables, whose meta.json agrees
    with its source line and peak figures (aiconfigurator's SILICON database, backend,
    version, GPU), and states the async scheduling of its backend."""
    import json

    for (system, backend), name in PROFILES.items():
        hw = load_hardware_profile(name)
        meta = json.loads(
            (data_dir() / "latency" / "kernels" / hw.kernels / "meta.json").read_text()
        )
        assert hw.kernels.startswith(f"{system}/{backend}/")
        assert meta["database_mode"].startswith("SILICON")
        for needle in (
            "aiconfigurator-core 0.12.0",
            "SILICON",
            meta["device"],
            meta["backend_version"],
        ):
            assert needle in hw.source, (name, needle)
        gpu = meta["system_spec"]["gpu"]
        assert hw.peak_flops == gpu["bfloat16_tc_flops"]
        assert hw.memory_bandwidth == gpu["mem_bw"]
        assert hw.memory_bytes == gpu["mem_capacity"]
        assert hw.async_scheduling is True
