"""Provenance of the outputs: the versions of the packages that produced them."""

from __future__ import annotations

import platform

import numpy as np
import pandas as pd

from hybridsched import __version__


def versions() -> dict:
    """Package versions for the outputs; a solver package that is missing (or cannot be
    imported) is reported as "not installed", never raised."""
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    out = {
        "hybridsched": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }
    for pkg in ("pyomo", "highspy"):
        try:
            importlib.import_module(pkg)
            out[pkg] = version(pkg)
        except (ImportError, PackageNotFoundError):
            out[pkg] = "not installed"
    return out
