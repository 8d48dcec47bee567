"""Tests for hybridsched.solver_status and for a machine without a solver."""

from __future__ import annotations

import sys

from pyomo.contrib.appsi.base import TerminationCondition as TC

from hybridsched.offline.solver_status import SolveStatus, solve_status, solver_missing


def test_solve_status_mapping():
    """Tests the single Pyomo-to-SolveStatus mapping, including the case where our own
    bound proves a time-limited incumbent within the gap."""
    assert solve_status(TC.optimal, True) is SolveStatus.OPTIMAL
    assert solve_status(TC.maxTimeLimit, True, 0.01, 1e-4) is SolveStatus.FEASIBLE
    assert solve_status(TC.maxTimeLimit, True, 0.0, 1e-4) is SolveStatus.OPTIMAL
    assert solve_status(TC.maxTimeLimit, False) is SolveStatus.FALLBACK
    assert solve_status(TC.error, False) is SolveStatus.FALLBACK


def test_solver_missing(monkeypatch):
    """Tests that the check reports nothing with highspy installed and names highspy
    when it cannot be imported."""
    assert solver_missing() is None
    monkeypatch.setitem(sys.modules, "highspy", None)
    assert "highspy not installed" in solver_missing()


def test_versions_without_highspy(monkeypatch):
    """Tests that versions() reports a missing highspy as "not installed" instead of
    raising ImportError (every CLI command records versions)."""
    from hybridsched.provenance import versions

    assert versions()["highspy"] not in ("not installed", "unknown")
    monkeypatch.setitem(sys.modules, "highspy", None)
    v = versions()
    assert v["highspy"] == "not installed" and v["numpy"]
