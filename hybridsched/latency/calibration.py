"""Calibration: fit the roofline's efficiency constants to measured iteration times.

``fit_profile(measurements, model, hardware)`` fits, by robust least squares on the
relative error (``scipy.optimize.least_squares``, Cauchy loss, scale 10%), the hardware
profile's ``mfu``, ``mbu``, ``iteration_overhead_s``, ``overhead_per_extra_gpu_s``,
``decode_per_request_s``, ``allreduce_bandwidth`` and ``allreduce_latency_s``, the
large-message share, and the prefill terms (``prefill_mbu / mbu``, ``prefill_floor_s``,
``prefill_per_request_s``) so that ``RooflineLatency`` reproduces the measured prefill and
decode times (docs/model.md 3).

Measurements are a table with one row per measured iteration kind: ``kind`` (prefill or
decode), ``tp``, ``batch``, ``prompt``, ``sum_tokens``, ``sum_sq_tokens``,
``sum_context``, ``time_s`` and ``row`` (the source row). Loaders:

- ``load_splitwise(path)``: SplitwiseSim's ``perf_model.csv``: each row gives a prefill
  (``prompt_time``: ``batch_size`` prompts of ``prompt_size`` tokens) and a decode
  (``token_time``: the mean step of ``batch_size`` requests over ``token_size`` tokens,
  so the mean context is ``prompt_size + token_size / 2``); times in ms.
- ``calibration_vidur.load_vidur(dir)``: Vidur's operator and all-reduce profiles.

Outlier rule (documented in docs/model.md 3): a row is an outlier when the first robust
fit misses it by more than 50%; at most 2% of the rows, the worst first. The fit is then
repeated without them, and errors are reported on the remaining rows.

A constant the data cannot separate from the others is kept at the base profile's value
and reported under ``fixed``: with fewer than three tensor-parallel degrees the
all-reduce latency (a per-iteration constant for every ``tp > 1``) is indistinguishable
from the two overheads; with one degree, so is ``overhead_per_extra_gpu_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from hybridsched.latency.profiles import HardwareProfile, ModelProfile
from hybridsched.latency.roofline import RooflineLatency

PARAMS = [
    "mfu",
    "mbu",
    "iteration_overhead_s",
    "overhead_per_extra_gpu_s",
    "decode_per_request_s",
    "allreduce_bandwidth",
    "allreduce_large_share",
    "allreduce_latency_s",
    "prefill_mbu_share",
    "prefill_floor_s",
    "prefill_per_request_s",
]
# The prefill terms (docs/model.md section 3), fitted only where prefills are measured.
PREFILL_PARAMS = ["prefill_mbu_share", "prefill_floor_s", "prefill_per_request_s"]
# The message size beyond which all-reduce bytes move at the large-message bandwidth:
# 2,048 tokens of d = 8192 activations in bf16 (docs/model.md section 3).
LARGE_MESSAGE_BYTES = 32 * 2**20
# Bounds and scales of each fitted constant (SI units).
_BOUNDS = {
    "mfu": (1e-3, 1.0, 0.1),
    "mbu": (1e-3, 1.0, 0.1),
    "iteration_overhead_s": (0.0, 1.0, 1e-2),
    "overhead_per_extra_gpu_s": (0.0, 1.0, 1e-3),
    "decode_per_request_s": (0.0, 1.0, 1e-4),
    "allreduce_bandwidth": (1e9, 1e13, 1e11),
    "allreduce_latency_s": (0.0, 1e-2, 1e-5),
    "allreduce_large_share": (1e-3, 1.0, 0.1),  # large-message bandwidth / bandwidth
    "prefill_mbu_share": (1e-3, 1.0, 0.1),  # prefill_mbu / mbu
    "prefill_floor_s": (0.0, 1.0, 1e-2),
    "prefill_per_request_s": (0.0, 1.0, 1e-3),
}
# Extra starting points of the first fit for the prefill memory side and floor: the max()
# of the roofline makes the objective flat where the floor is inactive, so a fit started
# at floor 0 keeps it there; the best of these starts is taken (deterministic).
STARTS = [{}, {"prefill_mbu_share": 0.6}, {"prefill_mbu_share": 0.6, "prefill_floor_s": 0.03}]
# The value at which a constant adds nothing to the roofline. A fitted constant that the data
# do not need (the fit with it at its neutral value costs no more, within SIMPLER_TOLERANCE)
# is set to it, so a term the data cannot see never depends on the optimizer's path.
NEUTRAL = {
    "prefill_floor_s": 0.0,
    "prefill_per_request_s": 0.0,
    "decode_per_request_s": 0.0,
    "allreduce_large_share": 1.0,
    "prefill_mbu_share": 1.0,
}
SIMPLER_TOLERANCE = (1e-4, 1e-9)  # relative to the cost, absolute
OUTLIER_THRESHOLD = 0.5
OUTLIER_MAX_SHARE = 0.02
LOSS, F_SCALE = "cauchy", 0.1


def predict(model: ModelProfile, hardware: HardwareProfile, m: pd.DataFrame) -> np.ndarray:
    """The roofline's time (s) of every measured iteration."""
    out = np.empty(len(m))
    for tp, idx in m.groupby("tp").indices.items():
        roof = RooflineLatency(model, hardware, int(tp))
        g = m.iloc[idx]
        pre = (g["kind"] == "prefill").to_numpy()
        out[idx] = np.where(
            pre,
            roof.prefill_time(g["sum_tokens"].to_numpy(float), g["sum_sq_tokens"].to_numpy(float)),
            roof.decode_time(g["sum_tokens"].to_numpy(float), g["sum_context"].to_numpy(float)),
        )
    return out


def error_table(m: pd.DataFrame, rel_error: np.ndarray) -> pd.DataFrame:
    """Median, p90 and max absolute relative error per kind, per tp and per kind and tp."""
    e = m.assign(abs_rel_error=np.abs(rel_error))
    parts = []
    for keys in (["kind"], ["tp"], ["kind", "tp"]):
        g = e.groupby(keys)["abs_rel_error"]
        t = pd.DataFrame(
            {"median": g.median(), "p90": g.quantile(0.9), "max": g.max(), "rows": g.size()}
        )
        t = t.reset_index()
        for k in ("kind", "tp"):
            if k not in t.columns:
                t[k] = "all"
        parts.append(t)
    out = pd.concat(parts, ignore_index=True)
    out["tp"] = out["tp"].astype(str)
    return out[["kind", "tp", "median", "p90", "max", "rows"]]


@dataclass
class Fit:
    """A fitted hardware profile and how well it reproduces the measurements."""

    hardware: HardwareProfile
    params: dict
    fixed: dict
    errors: pd.DataFrame
    outliers: pd.DataFrame
    predictions: pd.DataFrame = field(repr=False)

    def summary(self) -> dict:
        return {
            "params": self.params,
            "fixed": self.fixed,
            "errors": self.errors.round(4).to_dict(orient="records"),
            "outliers": self.outliers[
                ["kind", "tp", "batch", "prompt", "row", "time_s", "rel_error"]
            ]
            .round(4)
            .to_dict(orient="records"),
        }


def free_params(m: pd.DataFrame) -> list[str]:
    """The constants these measurements can identify (module docstring)."""
    tps = sorted(set(m["tp"]))
    names = list(PARAMS)
    if len(tps) < 3:
        names.remove("allreduce_latency_s")
    if len(tps) < 2:
        names.remove("overhead_per_extra_gpu_s")
    if not (m["kind"] == "decode").any():
        names.remove("decode_per_request_s")
    if max(tps) == 1:
        names = [n for n in names if not n.startswith("allreduce")]
    pre = m[m["kind"] == "prefill"]
    if pre.empty:
        names = [n for n in names if n not in PREFILL_PARAMS]
    elif not ((pre["batch"] > 1).any() and (pre["batch"] == 1).any()):
        names.remove("prefill_per_request_s")  # one count of prompts: another overhead
    return names


def param_value(hw: HardwareProfile, name: str) -> float:
    """A fitted constant of a profile (``allreduce_large_share`` is large / base bandwidth)."""
    if name == "allreduce_large_share":
        if hw.allreduce_large_bandwidth is None:
            return 1.0
        return hw.allreduce_large_bandwidth / hw.allreduce_bandwidth
    if name == "prefill_mbu_share":
        return 1.0 if hw.prefill_mbu is None else hw.prefill_mbu / hw.mbu
    return float(getattr(hw, name))


def _with(hw: HardwareProfile, values: dict) -> HardwareProfile:
    values = dict(values)
    share = values.pop("allreduce_large_share", param_value(hw, "allreduce_large_share"))
    pshare = values.pop("prefill_mbu_share", param_value(hw, "prefill_mbu_share"))
    hw = replace(
        hw,
        allreduce_large_message_bytes=None,
        allreduce_large_bandwidth=None,
        prefill_mbu=None,
        **values,
    )
    if pshare != 1.0:
        hw = replace(hw, prefill_mbu=float(pshare) * hw.mbu)
    return replace(
        hw,
        allreduce_large_message_bytes=float(LARGE_MESSAGE_BYTES),
        allreduce_large_bandwidth=float(share) * hw.allreduce_bandwidth,
    )


def calibration_base(hw: HardwareProfile, **changes) -> HardwareProfile:
    """The starting point of a fit: ``hw`` with the ring factor and the large-message term on."""
    return _with(replace(hw, allreduce_ring=True, **changes), {})


def _solve(
    model, base: HardwareProfile, m: pd.DataFrame, names: list[str], starts=({},)
) -> HardwareProfile:
    """The robust fit of ``names`` from ``base`` (and each of ``starts`` over it), simplified.

    The best start wins; then each constant in ``NEUTRAL`` that the data do not need is set
    to its neutral value (:func:`_simplify`).
    """
    best = None
    for start in starts:
        if best is not None and not set(start) & set(names):
            continue
        sol = _least_squares(model, base, m, names, start)
        if best is None or sol.cost < best.cost:
            best = sol
    hw = _with(base, dict(zip(names, map(float, best.x), strict=True)))
    return _simplify(model, hw, m, names, best.cost)


def _least_squares(model, base: HardwareProfile, m: pd.DataFrame, names: list[str], start: dict):
    """One robust least-squares fit of ``names``, started at ``base`` with ``start`` over it."""
    lo = np.array([_BOUNDS[n][0] for n in names])
    hi = np.array([_BOUNDS[n][1] for n in names])
    scale = np.array([_BOUNDS[n][2] for n in names])
    y = m["time_s"].to_numpy(float)

    def residuals(x):
        hw = _with(base, dict(zip(names, map(float, x), strict=True)))
        return predict(model, hw, m) / y - 1.0

    x0 = np.clip([start.get(n, param_value(base, n)) for n in names], lo + 1e-12, hi)
    return least_squares(residuals, x0, bounds=(lo, hi), loss=LOSS, f_scale=F_SCALE, x_scale=scale)


def _simplify(model, hw: HardwareProfile, m: pd.DataFrame, names: list[str], cost: float):
    """``hw`` with every constant the data do not need at its neutral value (``NEUTRAL``).

    In ``NEUTRAL``'s order, each fitted constant away from its neutral value is pinned there
    and the others refitted; the pin stays when the cost rises by no more than
    ``SIMPLER_TOLERANCE``. A floor or a per-request cost that no measurement activates is
    otherwise left wherever the optimizer's path put it, and it would move predictions at
    settings the data do not cover (another tp, say).
    """
    rel, absolute = SIMPLER_TOLERANCE
    names = list(names)
    for name, neutral in NEUTRAL.items():
        if name not in names:
            continue
        rest = [n for n in names if n != name]  # a pinned constant stays pinned
        pinned = _with(hw, {name: neutral})
        sol = _least_squares(model, pinned, m, rest, {}) if rest else None
        trial = _with(pinned, dict(zip(rest, map(float, sol.x), strict=True))) if rest else pinned
        trial_cost = sol.cost if rest else _cost(model, trial, m)
        if trial_cost <= cost * (1 + rel) + absolute:
            hw, cost, names = trial, trial_cost, rest
    return hw


def _cost(model, hw: HardwareProfile, m: pd.DataFrame) -> float:
    """The robust loss of ``hw`` on ``m`` (as ``least_squares`` reports it)."""
    r = predict(model, hw, m) / m["time_s"].to_numpy(float) - 1.0
    z = (r / F_SCALE) ** 2
    return float(0.5 * F_SCALE**2 * np.sum(np.log1p(z)))


def fit_profile(
    m: pd.DataFrame,
    model: ModelProfile,
    base: HardwareProfile,
    name: str | None = None,
    keep: tuple[str, ...] = (),
) -> Fit:
    """Fit ``base``'s efficiency constants to measurements ``m`` (module docstring).

    ``keep`` names constants to hold at ``base``'s values instead of fitting them.
    """
    if len(m) < 8:
        raise ValueError(f"measurements: need at least 8 rows to fit, got {len(m)}")
    base = calibration_base(base)
    for tp in sorted(set(m["tp"])):
        RooflineLatency(model, base, int(tp))  # raises if the model cannot run at this tp
    names = [n for n in free_params(m) if n not in keep]
    first = _solve(model, base, m, names, STARTS)
    err = predict(model, first, m) / m["time_s"].to_numpy(float) - 1.0
    cap = int(np.floor(OUTLIER_MAX_SHARE * len(m)))
    worst = np.argsort(-np.abs(err))[:cap]
    out_idx = np.sort(worst[np.abs(err[worst]) > OUTLIER_THRESHOLD])
    keep = np.setdiff1d(np.arange(len(m)), out_idx)
    inl = m.iloc[keep].reset_index(drop=True)
    hw = _solve(model, first, inl, names) if len(out_idx) else first
    hw = replace(hw, name=name or base.name)
    pred = predict(model, hw, m)
    rel = pred / m["time_s"].to_numpy(float) - 1.0
    predictions = m.assign(predicted_s=pred, rel_error=rel, outlier=False)
    predictions.loc[out_idx, "outlier"] = True
    errors = error_table(inl, rel[keep])
    params = {n: param_value(hw, n) for n in names}
    fixed = {n: param_value(hw, n) for n in PARAMS if n not in names}
    fixed["allreduce_large_message_bytes"] = float(LARGE_MESSAGE_BYTES)
    return Fit(hw, params, fixed, errors, predictions.iloc[out_idx], predictions)


def write_profile(fit: Fit, path: str | Path, calibration: dict) -> None:
    """Write the fitted profile as YAML: every constant, the fit and how it was made."""
    import yaml

    hw = fit.hardware
    body = {
        "name": hw.name,
        "peak_flops": hw.peak_flops,
        "memory_bandwidth": hw.memory_bandwidth,
        "memory_bytes": hw.memory_bytes,
        "usable_memory_fraction": hw.usable_memory_fraction,
        "allreduce_bandwidth": hw.allreduce_bandwidth,
        "allreduce_latency_s": hw.allreduce_latency_s,
        "mfu": hw.mfu,
        "mbu": hw.mbu,
        "iteration_overhead_s": hw.iteration_overhead_s,
        "overhead_per_extra_gpu_s": hw.overhead_per_extra_gpu_s,
        "decode_per_request_s": hw.decode_per_request_s,
        "allreduce_ring": hw.allreduce_ring,
        "allreduce_large_message_bytes": hw.allreduce_large_message_bytes,
        "allreduce_large_bandwidth": hw.allreduce_large_bandwidth,
        "prefill_mbu": hw.prefill_mbu,
        "prefill_floor_s": hw.prefill_floor_s,
        "prefill_per_request_s": hw.prefill_per_request_s,
    }
    if hw.nvlink_bandwidth is not None:
        body["nvlink_bandwidth"] = hw.nvlink_bandwidth
    body["source"] = hw.source
    body["calibration"] = {**calibration, **fit.summary()}
    text = yaml.safe_dump(body, sort_keys=False, width=100)
    header = "# Fitted by `python -m hybridsched calibrate`; see `calibration` below.\n"
    Path(path).write_text(header + text)


def constants_table(profiles: dict[str, HardwareProfile]) -> pd.DataFrame:
    """The fitted constants of several profiles side by side (rows: constants)."""
    return pd.DataFrame(
        {label: {n: param_value(hw, n) for n in PARAMS} for label, hw in profiles.items()}
    )


# Labels of the shipped measurement files, by profile name (calibrate's defaults).
MEASURED_LABELS = {
    "llama-2-70b": "llama2-70b",
    "a100-80gb-sxm": "a100-80gb",
    "h100-80gb-sxm": "h100-80gb",
}
