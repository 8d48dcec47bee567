"""Studies: the one place that wires solver, policy and engine; the notebooks' one import.

- ``run``: one named policy on one instance (``run_policy``; the offline stage's solver is
  handed to the policies here);
- ``bounds``: ``T_LB`` with its MMBPP part solved, and the bound that applies to a policy;
- ``single_case``, ``study``, ``exact``: the paper's experiments and the exact MIP;
- ``cells`` and ``grid``: one simulation from CLI-named options, and sweeps of them;
- ``sensitivity``, ``serving``, ``uncertainty``, ``capacity``, ``deployment``: the
  notebooks' studies; ``paper``: the paper's reported numbers.

The names below load their module on first use, so importing one study does not import
them all.
"""

from __future__ import annotations

import importlib

_API = {
    "run_policy": "run",
    "offline_assignment": "run",
    "RunResult": "run",
    "full_lower_bound": "bounds",
    "bound_for": "bounds",
    "run_single_case": "single_case",
    "SingleCaseResult": "single_case",
    "run_study": "study",
    "summarize_study": "study",
    "StudyResult": "study",
    "solve_exact": "exact",
    "linear_coefficients": "exact",
    "ExactResult": "exact",
    "exact_claim": "exact",
    "sweep": "sensitivity",
    "ablation_deltas": "sensitivity",
    "load_sweep": "serving",
    "saturation": "serving",
    "ttft_by_output": "serving",
    "ttft_cdf": "serving",
    "plan_capacity": "capacity",
    "frontier": "capacity",
    "gpus_needed": "capacity",
    "PAPER": "paper",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
