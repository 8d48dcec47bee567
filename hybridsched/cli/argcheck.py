"""Command-line argument checks: every bad value is refused by its flag, before any work.

The ``*_arg`` functions are argparse ``type=`` converters (argparse names the flag in
its message); the ``check_*`` functions take a parsed value and its flag and raise
``ValueError`` with a one-line message naming both. ``plain_message`` rewrites numpy reprs in
a message (``np.float64(100.5)``) as the plain value (``100.5``).
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any


def finite_float_arg(text: str) -> float:
    """A finite number (``nan`` and ``inf`` are refused)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return v


def nonnegative_float_arg(text: str) -> float:
    """A finite number >= 0."""
    v = finite_float_arg(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def _int_at_least(text: str, lo: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {text!r}") from None
    if v < lo:
        raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {text}")
    return v


def positive_int_arg(text: str) -> int:
    """An integer >= 1."""
    return _int_at_least(text, 1)


def nonnegative_int_arg(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0)


def _nearest_existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _writable_dir(d: Path) -> bool:
    """Whether a file can be created in the existing folder ``d`` (tried, then removed: the
    permission bits do not tell for root, read-only mounts or /proc)."""
    if not os.access(d, os.W_OK | os.X_OK):
        return False
    try:
        probe = tempfile.mkdtemp(prefix=".hybridsched-probe-", dir=d)
    except OSError:
        return False
    os.rmdir(probe)
    return True


def check_out_dir(value: str | os.PathLike | None, flag: str = "--out") -> Path:
    """An output folder that exists and is writable, or can be created; else ValueError.

    Refuses an empty value, an existing file (``/dev/null`` included) and a folder that
    cannot be written or created. Creates nothing.
    """
    if value is None or not str(value).strip():
        raise ValueError(f"{flag}: needs a folder name, got an empty value")
    p = Path(value).expanduser()
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {value}: exists and is not a folder")
    base = _nearest_existing(p.absolute())
    if not base.is_dir():
        raise ValueError(f"{flag} {value}: {base} is not a folder")
    if not _writable_dir(base):
        what = "is not writable" if base == p.absolute() else f"cannot be created in {base}"
        raise ValueError(f"{flag} {value}: {what}")
    return p


def check_out_file(value: str | os.PathLike | None, flag: str = "--out") -> Path:
    """An output file: not a folder, in a folder that exists and is writable or can be
    created; else ValueError. Creates nothing."""
    if value is None or not str(value).strip():
        raise ValueError(f"{flag}: needs a file name, got an empty value")
    p = Path(value).expanduser()
    if p.is_dir():
        raise ValueError(f"{flag} {value}: is a folder, not a file")
    check_out_dir(p.absolute().parent, flag)  # its message names the folder
    return p


def check_input_file(value: str | os.PathLike | None, flag: str) -> None:
    """A file to read: refuses a missing path or a folder (None: the default, accepted)."""
    if value is None:
        return
    p = Path(value).expanduser()
    if not str(value).strip():
        raise ValueError(f"{flag}: needs a file name, got an empty value")
    if p.is_dir():
        raise ValueError(f"{flag} {value}: is a folder, not a file")
    if not p.exists():
        raise ValueError(f"{flag} {value}: no such file")


def check_profile(value: str, flag: str) -> None:
    """A profile given by path (it has a folder part or a .yaml/.yml suffix) must be a file;
    a bare name must be a shipped profile (or an alias of one)."""
    p = Path(value)
    if len(p.parts) > 1 or p.suffix.lower() in (".yaml", ".yml"):
        check_input_file(value, flag)
        return
    from hybridsched.latency.profiles import load_hardware_profile, load_model_profile

    load = {"--model": load_model_profile, "--models": load_model_profile}.get(flag)
    load = load_hardware_profile if flag == "--hardware" else load
    if load is not None:
        try:
            load(value)
        except ValueError as e:
            raise ValueError(f"{flag}: {e}") from None


_NUMPY_REPR = re.compile(r"\bnp\.(?:float|int|uint|bool_|str_)\w*\((?P<v>[^()]*)\)")


def plain_message(message: str) -> str:
    """``message`` with numpy scalar reprs shown as plain values."""
    return _NUMPY_REPR.sub(lambda m: m.group("v"), message)


def parameter_arg(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` for ``render -p``: the value as a Python literal (``3``, ``0.5``,
    ``[1, 2]``, ``None``, ``True``), else as a string."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{name}: must be a finite number, got {raw}")
    return name, value


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``, exit code 2) instead of usage + message."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")
