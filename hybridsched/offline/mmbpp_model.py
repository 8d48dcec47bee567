"""The MMBPP's Pyomo model, MODEL.md (6), second part (built, not solved).

Binary ``x[i, j]``, ``sum_{j allowed} x[i, j] = 1`` (``assign_once``),
``initial_loads[j] + sum_i sizes[i, j] x[i, j] <= makespan`` (``client_load``), minimize
``makespan``. A pair that ``allowed`` forbids has its ``x`` fixed to 0 and left out of
both constraints. No load-ordering symmetry constraints: SOLVERS.md measured them
slowing HiGHS (stuck at the root for 60 s at n=1319, m=8). Linear expressions are built
directly so that 21k binaries take well under a second; building and handing the model
to HiGHS costs about ``BUILD_S_PER_CELL`` seconds and 1.5 kB per binary on this machine
(measured: 37-46 us per binary from 21k to 320k binaries), which is why
:func:`hybridsched.mmbpp.solve_assignment` skips the model on large instances.
"""

from __future__ import annotations

from typing import Any

from hybridsched.offline.mmbpp_problem import Problem, make_problem

__all__ = ["BUILD_S_PER_CELL", "build_assignment_model", "build_mmbpp"]

BUILD_S_PER_CELL = 4e-5  # build + translation to HiGHS, seconds per binary x[i, j]


def build_mmbpp(p: Problem) -> Any:
    """The MMBPP model of a checked problem (see :func:`build_assignment_model`)."""
    import pyomo.environ as pyo
    from pyomo.core.expr import LinearExpression

    n, num_clients = p.n, p.num_clients
    m = pyo.ConcreteModel(name="mmbpp")
    m.REQUESTS = pyo.RangeSet(0, n - 1, doc="requests i")
    m.CLIENTS = pyo.RangeSet(0, num_clients - 1, doc="clients j")
    m.x = pyo.Var(m.REQUESTS, m.CLIENTS, within=pyo.Binary, doc="MODEL.md (6): i on j")
    m.makespan = pyo.Var(within=pyo.NonNegativeReals, doc="MODEL.md (6): C")
    cols = [p.sizes.tolist()] * num_clients if p.identical else p.sizes.T.tolist()
    init = p.initial.tolist()
    mask = p.allowed
    if mask is not None:
        for i, j in zip(*(~mask).nonzero(), strict=True):
            m.x[int(i), int(j)].fix(0)

    @m.Constraint(m.REQUESTS, doc="MODEL.md (6): sum_j x_ij = 1")
    def assign_once(m, i):
        clients = range(num_clients) if mask is None else mask[i].nonzero()[0].tolist()
        return (
            LinearExpression(
                constant=0.0,
                linear_coefs=[1.0] * len(clients),
                linear_vars=[m.x[i, j] for j in clients],
            )
            == 1
        )

    @m.Constraint(m.CLIENTS, doc="MODEL.md (6): init_j + sum_i size_ij x_ij <= C")
    def client_load(m, j):
        rows = range(n) if mask is None else mask[:, j].nonzero()[0].tolist()
        coefs = cols[j] if mask is None else [cols[j][i] for i in rows]
        return (
            LinearExpression(
                constant=init[j],
                linear_coefs=coefs + [-1.0],
                linear_vars=[m.x[i, j] for i in rows] + [m.makespan],
            )
            <= 0
        )

    m.min_makespan = pyo.Objective(expr=m.makespan, sense=pyo.minimize, doc="MODEL.md (6)")
    return m


def build_assignment_model(
    sizes: Any,
    num_clients: int | None = None,
    initial_loads: Any = None,
    allowed: Any = None,
) -> Any:
    """Build the MMBPP of MODEL.md (6) without solving it.

    Parameters
    ----------
    sizes, num_clients, initial_loads, allowed
        As in :func:`hybridsched.mmbpp_problem.make_problem`.

    Returns
    -------
    pyomo.environ.ConcreteModel
        With sets ``REQUESTS``, ``CLIENTS``, binary ``x[i, j]``, ``makespan >= 0``,
        constraints ``assign_once``, ``client_load`` and objective ``min_makespan``.
    """
    return build_mmbpp(make_problem(sizes, num_clients, initial_loads, allowed))
