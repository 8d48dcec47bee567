"""``calibrate``: a hardware profile fitted to measured iteration times."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from hybridsched.jobs.staging import staged_file
from hybridsched.latency import calibration as cal
from hybridsched.latency.measurements import load_splitwise
from hybridsched.latency.profiles import load_hardware_profile, load_model_profile, parse_bytes


def cmd_calibrate(args) -> None:
    """Fit a hardware profile to measured iteration times and write it (calibration.py)."""
    command = "python -m hybridsched calibrate " + " ".join(shlex.quote(a) for a in args.argv)
    model = load_model_profile(args.model)
    base = load_hardware_profile(args.hardware)
    if args.memory_bytes is not None:
        base = replace(base, memory_bytes=parse_bytes(args.memory_bytes, "--memory-bytes"))
    out = Path(args.out)
    m, fit, meta = _fit(args, model, base, name=args.name or out.stem)
    meta = {
        "measurements": meta["measurements"],
        "format": args.format,
        "model": model.name,
        "measured_model": meta["measured_model"],
        "measured_hardware": meta["measured_hardware"],
        "rows": int(len(m)),
        "fitted_on": datetime.now(UTC).date().isoformat(),
        "command": command,
        "loss": meta["loss"],
        "outlier_rule": (
            f"first fit misses by > {cal.OUTLIER_THRESHOLD:.0%}, "
            f"at most {cal.OUTLIER_MAX_SHARE:.0%} of rows"
        ),
    }
    with staged_file(out) as staged:  # replaces --out only once it is whole
        cal.write_profile(fit, staged, meta)
    print("\n".join([*_report(fit, len(m)), str(out)]))


def _fit(args, model, base, name: str):
    """The measurements, the fit and its provenance, by ``--format``."""
    memory = f"peak and bandwidth from {base.name}, memory {base.memory_bytes:.0f} B"
    src = Path(args.measurements).name
    if args.format == "vidur":
        from hybridsched.latency.calibration_vidur import F_SCALE, fit_vidur, load_vidur

        ops, ar = load_vidur(args.measurements)
        base = replace(base, source=f"fitted to Vidur profiles in {src}; {memory}")
        fit = fit_vidur(ops, ar, model, base, name=name)
        m, labels, scale = pd.concat([ops, ar], ignore_index=True), ("vidur", "vidur"), F_SCALE
    else:
        m_label = args.measured_model or cal.MEASURED_LABELS.get(str(args.model))
        h_label = args.measured_hardware or cal.MEASURED_LABELS.get(str(args.hardware))
        m = load_splitwise(args.measurements, m_label, h_label)
        base = replace(base, source=f"fitted to {src} ({m_label} on {h_label}); {memory}")
        fit = cal.fit_profile(m, model, base, name=name)
        labels, scale = (m_label, h_label), cal.F_SCALE
    meta = {
        "measurements": src,
        "measured_model": labels[0],
        "measured_hardware": labels[1],
        "loss": f"{cal.LOSS} on relative error, scale {scale}",
    }
    return m, fit, meta


def _report(fit, rows: int) -> list[str]:
    """The fit's constants, errors and outliers, as the command prints them."""
    lines = [
        f"fitted {', '.join(f'{k}={v:.4g}' for k, v in fit.params.items())}",
        f"kept   {', '.join(f'{k}={v:.4g}' for k, v in fit.fixed.items())}",
        fit.errors.to_string(index=False, float_format=lambda v: f"{v:.3f}"),
        f"outliers ({len(fit.outliers)} of {rows} rows):",
    ]
    if len(fit.outliers):
        cols = ["row", "kind", "tp", "batch", "prompt", "time_s", "predicted_s", "rel_error"]
        lines.append(fit.outliers[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return lines


def add_calibrate(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("calibrate", help="fit a hardware profile to measured iteration times")
    p.add_argument(
        "--measurements", required=True, help="splitwise CSV of iteration times, or a Vidur folder"
    )
    p.add_argument("--format", default="splitwise", choices=["splitwise", "vidur"])
    p.add_argument("--model", required=True, help="model profile name or YAML path")
    p.add_argument("--hardware", required=True, help="base hardware profile name or YAML path")
    p.add_argument("--memory-bytes", default=None, help="override the memory size, e.g. '80 GiB'")
    p.add_argument(
        "--measured-model", default=None, help="the file's model label (default: known alias)"
    )
    p.add_argument("--measured-hardware", default=None, help="the file's hardware label")
    p.add_argument("--name", default=None, help="profile name (default: the --out file's stem)")
    p.add_argument("--out", required=True, help="profile YAML to write")
    return p
