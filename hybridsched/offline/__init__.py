"""The offline stage: the MMBPP and the exact iteration MIP (the only Pyomo in the package).

- ``mmbpp_problem``, ``heuristics`` (LPT, local search), ``mmbpp_model``, ``mmbpp``:
  the assignment problem, its warm start and fallback, its Pyomo model and the solve;
- ``iteration_instance``, ``iteration_model``, ``iteration_mip``: the exact MIP;
- ``solver_status``: the one place that talks to HiGHS.

Pyomo and HiGHS are imported inside the model and solve functions only.
"""
