"""Tests for hybridsched.calibration: loading measurements, the fit, outliers and the shipped profiles."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from hybridsched.cli import main
from hybridsched.latency import calibration as cal
from hybridsched.latency import holdout
from hybridsched.latency.measurements import MEASUREMENT_COLUMNS, load_splitwise
from hybridsched.latency.profiles import load_hardware_profile, load_model_profile
from hybridsched.paths import data_dir

CSV = data_dir() / "latency" / "splitwise" / "perf_model_measured.csv"


def synthetic(hw, model, tps=(2, 8)):
    """Measurements made by the roofline itself, on the splitwise grid."""
    rows = []
    for tp in tps:
        for b, s in [(1, 128), (1, 512), (1, 2048), (1, 8192), (4, 512), (16, 512), (64, 512)]:
            rows.append(("prefill", tp, b, s, b * s, b * s * s, 0.0))
            rows.append(("decode", tp, b, s, b, 0.0, b * (s + 64)))
    m = pd.DataFrame(
        rows,
        columns=["kind", "tp", "batch", "prompt", "sum_tokens", "sum_sq_tokens", "sum_context"],
    )
    m["row"] = np.arange(len(m))
    m["time_s"] = cal.predict(model, hw, m.assign(time_s=1.0))
    return m[MEASUREMENT_COLUMNS]


def test_fit_recovers_known_constants():
    """Tests that measurements made by a known profile are fitted back to it (exactly, no outliers)."""
    model = load_model_profile("llama-2-70b")
    base = load_hardware_profile("h100-80gb-sxm")
    truth = cal.calibration_base(
        base,
        mfu=0.6,
        mbu=0.8,
        iteration_overhead_s=5e-3,
        overhead_per_extra_gpu_s=1e-3,
        decode_per_request_s=2e-4,
        allreduce_bandwidth=150e9,
    )
    truth = replace(
        truth,
        allreduce_large_bandwidth=60e9,
        prefill_mbu=0.4,
        prefill_floor_s=0.02,
        prefill_per_request_s=3e-3,
    )
    fit = cal.fit_profile(synthetic(truth, model), model, base)
    for k in (
        "mfu",
        "mbu",
        "iteration_overhead_s",
        "overhead_per_extra_gpu_s",
        "decode_per_request_s",
        "allreduce_bandwidth",
        "prefill_floor_s",
        "prefill_per_request_s",
    ):
        assert fit.params[k] == pytest.approx(getattr(truth, k), rel=1e-3), k
    assert fit.params["allreduce_large_share"] == pytest.approx(0.4, rel=1e-3)
    assert fit.params["prefill_mbu_share"] == pytest.approx(0.5, rel=1e-3)
    assert fit.hardware.allreduce_ring and fit.hardware.allreduce_large_message_bytes == 32 * 2**20
    assert fit.errors["max"].max() < 1e-6
    assert fit.outliers.empty
    assert "allreduce_latency_s" in fit.fixed  # two tp values cannot separate it


def test_terms_the_data_do_not_need_are_fitted_to_their_neutral_values():
    """Tests that a floor or per-request cost no measurement activates comes out at its
    neutral value, whatever path the optimizer took (the fit must not depend on it)."""
    model = load_model_profile("llama-2-70b")
    base = load_hardware_profile("h100-80gb-sxm")
    truth = cal.calibration_base(base, overhead_per_extra_gpu_s=2e-3, iteration_overhead_s=5e-3)
    fit = cal.fit_profile(synthetic(truth, model), model, base)
    for name, neutral in cal.NEUTRAL.items():
        assert fit.params[name] == neutral, name
    assert fit.errors["max"].max() < 1e-5


def test_outliers_are_capped_and_reported():
    """Tests that a wildly wrong row is flagged, that at most 2% of rows are, and that the
    errors are reported without it."""
    model = load_model_profile("llama-2-70b")
    base = load_hardware_profile("h100-80gb-sxm")
    m = synthetic(cal.calibration_base(base), model)
    m = pd.concat([m] * 4, ignore_index=True).assign(row=lambda d: np.arange(len(d)))
    m.loc[3, "time_s"] *= 10
    fit = cal.fit_profile(m, model, base)
    assert list(fit.outliers["row"]) == [3]
    assert len(fit.outliers) <= cal.OUTLIER_MAX_SHARE * len(m)
    assert fit.errors["max"].max() < 1e-3  # the refit starts from the perturbed first fit


@pytest.mark.slow
def test_leave_one_tp_out_both_ways():
    """Tests that with two tp values a fit on one cannot predict the other when a tp-dependent
    term is at work (the per-GPU overhead is not identifiable from one tp), that holding the
    tp terms at the all-data fit recovers it exactly, and that a bad mode is refused."""
    model = load_model_profile("llama-2-70b")
    base = load_hardware_profile("h100-80gb-sxm")
    truth = cal.calibration_base(base, overhead_per_extra_gpu_s=2e-3, iteration_overhead_s=5e-3)
    m = synthetic(truth, model)
    refit = holdout.leave_one_tp_out(m, model, base).set_index(["held_out_tp", "kind"])
    held = holdout.leave_one_tp_out(m, model, base, tp_terms="all-data")
    assert set(held["held_out_tp"]) == {2, 8} and set(held["tp_terms"]) == {"all-data"}
    assert held["max"].max() < 1e-3
    assert refit.loc[(8, "decode"), "median"] > 0.05
    with pytest.raises(ValueError, match="tp_terms must be"):
        holdout.leave_one_tp_out(m, model, base, tp_terms="both")


def test_load_splitwise_rows_and_bad_input(tmp_path):
    """Tests that each splitwise row gives a prefill and a decode measurement in seconds, and
    that a bad value is named with its row."""
    m = load_splitwise(CSV, "llama2-70b", "a100-80gb")
    assert len(m) == 2 * 210 and set(m["tp"]) == {2, 8}
    first = m.iloc[0]
    assert first["kind"] == "prefill" and first["time_s"] == pytest.approx(0.1962532191537321)
    dec = m[m["kind"] == "decode"].iloc[0]
    assert dec["sum_context"] == 512 + 128 / 2
    raw = pd.read_csv(CSV).head(3)
    raw.loc[1, "token_time"] = -1
    bad = tmp_path / "bad.csv"
    raw.to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"row 1\): token_time"):
        load_splitwise(bad)
    with pytest.raises(ValueError, match="no rows with hardware 'tpu'"):
        load_splitwise(CSV, hardware="tpu")


@pytest.mark.slow
@pytest.mark.parametrize(
    "hw, label, name",
    [
        ("a100-80gb-sxm", "a100-80gb", "a100-sxm-splitwise2023"),
        ("h100-80gb-sxm", "h100-80gb", "h100-sxm-splitwise2023"),
    ],
)
def test_shipped_calibrated_profiles_match_a_fresh_fit(hw, label, name):
    """Tests that the shipped *-splitwise2023 profiles are what a fresh fit of the shipped data
    gives, that the decode and the medians meet the targets, and that the stored errors are
    the fit's."""
    model = load_model_profile("llama-2-70b")
    shipped = load_hardware_profile(name)
    base = replace(load_hardware_profile(hw), memory_bytes=80 * 2**30)
    fit = cal.fit_profile(load_splitwise(CSV, "llama2-70b", label), model, base)
    for k, v in fit.params.items():
        assert cal.param_value(shipped, k) == pytest.approx(v, rel=1e-6, abs=1e-12), k
    for k in cal.PREFILL_PARAMS:
        assert k in fit.params, k  # the prefill terms are fitted, not kept
    err = fit.errors.set_index(["kind", "tp"])
    stored = pd.DataFrame(shipped.calibration["errors"]).set_index(["kind", "tp"])
    for kind in ("prefill", "decode"):
        assert err.loc[(kind, "all"), "median"] <= 0.05, kind
        assert err.loc[(kind, "all"), "p90"] <= 0.10, kind
        for stat in ("median", "p90", "max"):
            assert stored.loc[(kind, "all"), stat] == pytest.approx(
                err.loc[(kind, "all"), stat], abs=1e-4
            )
    assert len(fit.outliers) <= 0.02 * 420
    assert set(fit.outliers["batch"]) == {64} and set(fit.outliers["tp"]) == {2}


def test_calibrate_cli_writes_a_loadable_profile(tmp_path, capsys):
    """Tests that `calibrate` on synthetic splitwise-format rows writes a profile that loads
    and records how it was made."""
    model = load_model_profile("llama-2-70b")
    truth = cal.calibration_base(load_hardware_profile("h100-80gb-sxm"), mfu=0.55)
    m = synthetic(truth, model)
    pre, dec = (
        m[m["kind"] == "prefill"].reset_index(drop=True),
        m[m["kind"] == "decode"].reset_index(drop=True),
    )
    csv = pd.DataFrame(
        {
            "model": "m",
            "hardware": "h",
            "prompt_size": pre["prompt"],
            "batch_size": pre["batch"],
            "token_size": 128,
            "prompt_time": pre["time_s"] * 1e3,
            "token_time": dec["time_s"] * 1e3,
            "tensor_parallel": pre["tp"],
        }
    )
    path = tmp_path / "m.csv"
    csv.to_csv(path, index=False)
    out = tmp_path / "fitted.yaml"
    assert (
        main(
            [
                "calibrate",
                "--measurements",
                str(path),
                "--model",
                "llama-2-70b",
                "--hardware",
                "h100-80gb-sxm",
                "--measured-model",
                "m",
                "--measured-hardware",
                "h",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    hw = load_hardware_profile(out)
    assert hw.name == "fitted" and hw.mfu == pytest.approx(0.55, rel=1e-3)
    assert hw.calibration["command"].startswith("python -m hybridsched calibrate")
    assert "median" in capsys.readouterr().out


def test_calibrate_cli_bad_input_exits_2(tmp_path, capsys):
    """Tests that a missing measurements file is one line on stderr, exit 2, nothing written."""
    out = tmp_path / "x.yaml"
    code = main(
        [
            "calibrate",
            "--measurements",
            str(tmp_path / "nope.csv"),
            "--model",
            "llama-2-70b",
            "--hardware",
            "h100-80gb-sxm",
            "--out",
            str(out),
        ]
    )
    assert code == 2 and not out.exists()
    assert "no such file" in capsys.readouterr().err


def test_vidur_fit_kernels_and_allreduce():
    """Tests that the Vidur operator and all-reduce profiles fit the layer roofline with a
    median error under 5% and an mfu close to what whole iterations give (0.6-0.75 on A100),
    and that a folder without the files is refused naming what is missing."""
    from hybridsched.latency.calibration_vidur import fit_vidur, load_vidur

    ops, ar = load_vidur(data_dir() / "latency" / "vidur" / "a100")
    assert set(ops["tp"]) == {1, 2, 4, 8} and set(ar["tp"]) == {2, 4, 8}
    fit = fit_vidur(
        ops, ar, load_model_profile("llama-2-70b"), load_hardware_profile("a100-80gb-sxm")
    )
    err = fit.errors.set_index(["kind", "tp"])
    assert err.loc[("linear", "all"), "median"] < 0.05
    assert err.loc[("all_reduce", "all"), "median"] < 0.10
    assert 0.6 < fit.hardware.mfu < 0.75 and fit.hardware.allreduce_ring
    with pytest.raises(ValueError, match=r"expected one \*mlp\*.csv"):
        load_vidur(data_dir() / "latency" / "splitwise")
