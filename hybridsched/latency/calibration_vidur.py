"""Calibration from Vidur's operator profiles (``calibrate --format vidur``).

Vidur profiles kernels, not iterations: a folder with

- ``*mlp*.csv``: per-layer times (ms; median of repetitions) of the linear operators of
  one transformer layer (norms, QKV and output projections, rotary, MLP up, activation,
  down, residual add) against ``num_tokens`` and ``num_tensor_parallel_workers``; no
  attention kernels;
- ``*all_reduce*.csv``: NCCL all-reduce times (ms) against ``size`` (fp16 elements, so
  ``2 * size`` bytes) and ``num_workers``; only single-node rows
  (``devices_per_node == num_workers``) are used.

``fit_vidur`` fits, with the same robust least squares as ``calibration.fit_profile``,
the layer's ``max(2 P_layer n / (tp peak mfu), W_layer / (tp bw mbu)) + o_layer``
(``P_layer`` the active parameters of one layer, ``W_layer`` its weight bytes) and the
all-reduce's ``allreduce_latency_s + 2 (tp - 1) / tp * bytes / allreduce_bandwidth``.
The profile it returns carries ``mfu``, ``mbu``, the all-reduce constants (ring factor
on) and ``iteration_overhead_s = L * o_layer``; the per-GPU and per-request terms, which
only whole iterations show, stay at the base profile's values.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from hybridsched.latency.calibration import LOSS, Fit, error_table
from hybridsched.latency.profiles import HardwareProfile, ModelProfile

# The kernel fit keeps the Cauchy scale it was made with (5%); the iteration fit uses 10%.
F_SCALE = 0.05

_OPS = [
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
]


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise ValueError(f"measurements {folder}: expected one {pattern} file, found {len(found)}")
    return found[0]


def _read(path: Path, needed: list[str]) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"measurements: {path} is not a readable CSV ({str(e).strip()})") from None
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        raise ValueError(f"measurements {path}: missing column(s) {', '.join(missing)}")
    for c in needed:
        v = pd.to_numeric(raw[c], errors="coerce")
        bad = ~np.isfinite(v) | (v < 0)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"measurements {path} (row {i}): {c} must be a number >= 0, got {raw[c].iloc[i]!r}"
            )
    return raw


def load_vidur(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The operator table (``kind = linear``) and the all-reduce table of a Vidur folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"measurements: {folder} is not a folder of Vidur profiles")
    mlp_path, ar_path = _one(folder, "*mlp*.csv"), _one(folder, "*all_reduce*.csv")
    cols = [f"time_stats.{op}.median" for op in _OPS]
    mlp = _read(mlp_path, cols + ["num_tokens", "num_tensor_parallel_workers"])
    ops = pd.DataFrame(
        {
            "kind": "linear",
            "tp": mlp["num_tensor_parallel_workers"].astype(int),
            "tokens": mlp["num_tokens"].astype(float),
            "time_s": mlp[cols].sum(axis=1) / 1e3,
            "row": mlp.index,
        }
    )
    ar = _read(ar_path, ["time_stats.all_reduce.median", "size", "num_workers", "devices_per_node"])
    ar = ar[ar["devices_per_node"] == ar["num_workers"]]
    allreduce = pd.DataFrame(
        {
            "kind": "all_reduce",
            "tp": ar["num_workers"].astype(int),
            "bytes": 2.0 * ar["size"].astype(float),
            "time_s": ar["time_stats.all_reduce.median"].astype(float) / 1e3,
            "row": ar.index,
        }
    )
    return ops[ops["time_s"] > 0].reset_index(drop=True), allreduce[
        allreduce["time_s"] > 0
    ].reset_index(drop=True)


def _layer(model: ModelProfile) -> tuple[float, float]:
    """Active parameters and weight bytes of one layer (embeddings and head excluded)."""
    heads = 1 if model.tie_word_embeddings else 2
    outer = heads * model.vocab_size * model.hidden_size + model.hidden_size
    active = (model.active_params - outer) / model.num_layers
    weights = (model.num_params - outer) / model.num_layers * model.bytes_per_param
    return active, weights


def _linear_time(x, ops, model, hw) -> np.ndarray:
    mfu, mbu, o_layer = x
    active, weights = _layer(model)
    tp, n = ops["tp"].to_numpy(float), ops["tokens"].to_numpy(float)
    return o_layer + np.maximum(
        2 * active * n / (tp * hw.peak_flops * mfu), weights / (tp * hw.memory_bandwidth * mbu)
    )


def _allreduce_time(x, ar) -> np.ndarray:
    lat, bw = x
    tp = ar["tp"].to_numpy(float)
    return lat + 2 * (tp - 1) / tp * ar["bytes"].to_numpy(float) / bw


def _robust(f, x0, lo, hi, scale, y):
    sol = least_squares(
        lambda x: f(x) / y - 1.0, x0, bounds=(lo, hi), loss=LOSS, f_scale=F_SCALE, x_scale=scale
    )
    return sol.x


def fit_vidur(
    ops: pd.DataFrame,
    ar: pd.DataFrame,
    model: ModelProfile,
    base: HardwareProfile,
    name: str | None = None,
) -> Fit:
    """Fit ``base`` to Vidur operator and all-reduce profiles (module docstring)."""
    if len(ops) < 3 or len(ar) < 2:
        raise ValueError(
            f"measurements: need operator and all-reduce rows, got {len(ops)} and {len(ar)}"
        )
    xl = _robust(
        lambda x: _linear_time(x, ops, model, base),
        [0.5, 0.75, 1e-4],
        [1e-3, 1e-3, 0.0],
        [1.0, 1.0, 1.0],
        [0.1, 0.1, 1e-4],
        ops["time_s"].to_numpy(),
    )
    xa = _robust(
        lambda x: _allreduce_time(x, ar),
        [1e-5, 1e11],
        [0.0, 1e9],
        [1e-2, 1e13],
        [1e-5, 1e11],
        ar["time_s"].to_numpy(),
    )
    hw = replace(
        base,
        name=name or base.name,
        mfu=float(xl[0]),
        mbu=float(xl[1]),
        iteration_overhead_s=float(xl[2] * model.num_layers),
        allreduce_ring=True,
        allreduce_latency_s=float(xa[0]),
        allreduce_bandwidth=float(xa[1]),
        allreduce_large_message_bytes=None,
        allreduce_large_bandwidth=None,
    )
    cols = ["kind", "tp", "time_s", "row"]
    pred = pd.concat(
        [
            ops[cols].assign(predicted_s=_linear_time(xl, ops, model, base)),
            ar[cols].assign(predicted_s=_allreduce_time(xa, ar)),
        ],
        ignore_index=True,
    )
    pred["rel_error"] = pred["predicted_s"] / pred["time_s"] - 1.0
    pred["outlier"] = False
    params = {
        "mfu": hw.mfu,
        "mbu": hw.mbu,
        "iteration_overhead_s": hw.iteration_overhead_s,
        "allreduce_latency_s": hw.allreduce_latency_s,
        "allreduce_bandwidth": hw.allreduce_bandwidth,
    }
    fixed = {
        "overhead_per_extra_gpu_s": hw.overhead_per_extra_gpu_s,
        "decode_per_request_s": hw.decode_per_request_s,
    }
    outliers = pred.iloc[0:0].assign(batch=0.0, prompt=0.0)
    return Fit(hw, params, fixed, error_table(pred, pred["rel_error"].to_numpy()), outliers, pred)
