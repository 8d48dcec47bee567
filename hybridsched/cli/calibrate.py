"""``calibrate``: a hardware profile fitted to measured iteration times."""

from __future__ import annotations

import argparse


def cmd_calibrate(args) -> None:
    """Fit a hardware profile to measured iteration times and write it (calibration.py)."""
    import shlex

    from hybridsched.calibration import calibrate

    command = "python -m hybridsched calibrate " + " ".join(shlex.quote(a) for a in args.argv)
    report_text = calibrate(
        args.measurements,
        args.format,
        args.model,
        args.hardware,
        args.out,
        command,
        memory_bytes=args.memory_bytes,
        measured_model=args.measured_model,
        measured_hardware=args.measured_hardware,
        name=args.name,
    )
    print(report_text)


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
