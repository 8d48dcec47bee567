"""Leave-one-tp-out: how well a calibration fitted without one tp predicts it (calibration.py).

``leave_one_tp_out(m, model, base, tp_terms)`` fits without each tensor-parallel degree in
turn and reports the errors on the held-out one, either refitting everything
(``"refit"``) or holding the tp-dependent constants (``TP_TERMS``) at the fit on all the
measurements (``"all-data"``); ``make bench`` prints both (docs/model.md section 3).
"""

from __future__ import annotations

import pandas as pd

from hybridsched.latency.calibration import error_table, fit_profile, predict
from hybridsched.latency.profiles import HardwareProfile, ModelProfile

# The constants that say how the iteration time changes with tp, beyond the 1/tp of the
# roofline's compute and memory sides: the fixed cost (whose split from the 1/tp part one
# tp cannot see) and the all-reduces. leave_one_tp_out can hold them at the all-data fit.
TP_TERMS = (
    "iteration_overhead_s",
    "overhead_per_extra_gpu_s",
    "allreduce_bandwidth",
    "allreduce_large_share",
    "allreduce_latency_s",
)


def leave_one_tp_out(
    m: pd.DataFrame, model: ModelProfile, base: HardwareProfile, tp_terms: str = "refit"
) -> pd.DataFrame:
    """Fit without each tp in turn and predict it: the errors per kind on the held-out tp.

    ``tp_terms="refit"``: everything is fitted on the other tp values only. With one tp
    left to fit on, the per-GPU overhead is not identifiable (kept at the base value) and
    the all-reduce terms are seen at one ring factor only, so this says how far one tp
    predicts another, not how good the model is. ``tp_terms="all-data"``: the constants in
    ``TP_TERMS`` are held at the fit on all of ``m`` (so they have seen the held-out tp)
    and only the efficiencies and per-request costs are refitted on the other tp values:
    whether what one GPU achieves transfers across tp, not a clean hold-out. The rows the fit on all of ``m`` treats
    as outliers are left out of both sides.
    """
    if tp_terms not in ("refit", "all-data"):
        raise ValueError(f"tp_terms must be 'refit' or 'all-data', got {tp_terms!r}")
    full = fit_profile(m, model, base)
    out = full.outliers
    flagged = set(zip(out["kind"], out["row"].astype(int), strict=True))
    m = m[[k not in flagged for k in zip(m["kind"], m["row"].astype(int), strict=True)]]
    start, keep = (base, ()) if tp_terms == "refit" else (full.hardware, TP_TERMS)
    rows = []
    for tp in sorted(set(m["tp"])):
        train, test = m[m["tp"] != tp], m[m["tp"] == tp].reset_index(drop=True)
        if train.empty:
            continue
        f = fit_profile(train.reset_index(drop=True), model, start, keep=keep)
        rel = predict(model, f.hardware, test) / test["time_s"].to_numpy(float) - 1.0
        t = error_table(test, rel)
        t = t[t["tp"] != "all"].assign(held_out_tp=tp, tp_terms=tp_terms)
        rows.append(t)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
