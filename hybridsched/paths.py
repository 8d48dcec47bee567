"""Where the project's files are: one helper, so no notebook or module hard-codes a path."""

from __future__ import annotations

from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]


def repo_root() -> Path:
    """The checkout's top folder (the package is installed in editable mode)."""
    return _ROOT


def data_dir() -> Path:
    return _ROOT / "data"


def reports_dir() -> Path:
    return _ROOT / "reports"
