"""The experiments: named policies, the single case, the 100-case study and the exact MIP.

A thin re-export of the modules that hold them, so ``from hybridsched.experiments import
...`` keeps working in notebooks, tests and scripts:

- ``policy_registry``: ``POLICIES`` (the named policies, docs/model.md section 7),
  ``PolicySpec``, ``RuleKnobs``, ``SolveSettings``, ``Serving``, ``policy_spec``,
  ``make_rule``;
- ``policy_run``: ``run_policy`` (one policy on one instance through the serving engine),
  ``RunResult``, ``offline_assignment``;
- ``solved_bounds``: ``full_lower_bound`` (``T_LB`` with its MMBPP part solved), ``bound_for``;
- ``request_tables``: ``requests_for`` (a workload, a seeded sample, predictions);
- ``single_case``: ``run_single_case``, ``SingleCaseResult``;
- ``study``: ``run_study``, ``summarize_study``, ``StudyResult``;
- ``exact``: ``solve_exact`` (the exact iteration MIP, replayed), ``ExactResult``,
  ``linear_coefficients``;
- ``provenance``: ``versions``; ``paper_numbers``: ``PAPER``.
"""

from __future__ import annotations

from hybridsched.exact import ExactResult, linear_coefficients, solve_exact
from hybridsched.paper_numbers import PAPER
from hybridsched.policy_registry import (
    POLICIES,
    PolicySpec,
    RuleKnobs,
    Serving,
    SolveSettings,
    make_rule,
    policy_spec,
)
from hybridsched.policy_run import RunResult, offline_assignment, run_policy
from hybridsched.provenance import versions
from hybridsched.request_tables import requests_for
from hybridsched.single_case import SingleCaseResult, run_single_case
from hybridsched.solved_bounds import bound_for, full_lower_bound
from hybridsched.study import StudyResult, run_study, summarize_study

__all__ = [
    "PAPER",
    "POLICIES",
    "ExactResult",
    "PolicySpec",
    "RuleKnobs",
    "RunResult",
    "Serving",
    "SingleCaseResult",
    "SolveSettings",
    "StudyResult",
    "bound_for",
    "full_lower_bound",
    "linear_coefficients",
    "make_rule",
    "offline_assignment",
    "policy_spec",
    "requests_for",
    "run_policy",
    "run_single_case",
    "run_study",
    "solve_exact",
    "summarize_study",
    "versions",
]
