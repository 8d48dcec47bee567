"""The exact iteration MIP's Pyomo model, MODEL.md (6), first part (built, not solved).

The formulation and the sizes at which it stops being practical are described in
:mod:`hybridsched.iteration_mip`, which solves it. Constraints are added in a fixed
order (the row order HiGHS sees). Pyomo is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

from hybridsched.offline.iteration_instance import (
    IterationInstance,
    LinearCoefficients,
    check_iteration_instance,
    request_constant_s,
)

__all__ = ["build_iteration_model", "build_iteration"]


def _declare_variables(m: Any, inst: IterationInstance) -> None:
    import pyomo.environ as pyo

    m.REQUESTS = pyo.RangeSet(0, inst.prompt.size - 1, doc="requests i")
    m.CLIENTS = pyo.RangeSet(0, inst.num_clients - 1, doc="clients j")
    m.ITERATIONS = pyo.RangeSet(0, inst.num_iterations - 1, doc="iterations k of a client")
    m.x = pyo.Var(m.REQUESTS, m.CLIENTS, within=pyo.Binary, doc="MODEL.md (6): i on j")
    m.p = pyo.Var(
        m.REQUESTS,
        m.CLIENTS,
        m.ITERATIONS,
        within=pyo.Binary,
        doc="MODEL.md (6): prefill of i at k",
    )
    m.f = pyo.Var(
        m.REQUESTS,
        m.CLIENTS,
        m.ITERATIONS,
        within=pyo.Binary,
        doc="MODEL.md (6): i left by end of k",
    )
    m.a = pyo.Var(
        m.REQUESTS, m.CLIENTS, m.ITERATIONS, within=pyo.Binary, doc="MODEL.md (6): i decodes at k"
    )
    m.up = pyo.Var(m.CLIENTS, m.ITERATIONS, within=pyo.Binary, doc="MODEL.md (6): k is a prefill")
    m.ud = pyo.Var(m.CLIENTS, m.ITERATIONS, within=pyo.Binary, doc="MODEL.md (6): k is a decode")
    m.makespan = pyo.Var(within=pyo.NonNegativeReals, doc="MODEL.md (6): C")


def _started(m: Any, i: int, j: int, k: int):
    return sum(m.p[i, j, kk] for kk in range(k + 1))


def _holding(m: Any, i: int, j: int, k: int):
    """Slot and reserved memory held during iteration k (prefilled at or before k, not
    left before k)."""
    return _started(m, i, j, k) - (m.f[i, j, k - 1] if k > 0 else 0)


def _add_assignment_and_prefill_rules(m: Any, inst: IterationInstance) -> None:
    import pyomo.environ as pyo

    num_k = inst.num_iterations

    @m.Constraint(m.REQUESTS, doc="MODEL.md (6): each request on one client")
    def assign_once(m, i):
        return sum(m.x[i, j] for j in m.CLIENTS) == 1

    # Identical clients: relabel them by their lowest request index (valid symmetry cut).
    @m.Constraint(m.REQUESTS, m.CLIENTS, doc="symmetry: request i on a client j <= i")
    def client_symmetry(m, i, j):
        return m.x[i, j] == 0 if j > i else pyo.Constraint.Skip

    @m.Constraint(m.REQUESTS, m.CLIENTS, doc="MODEL.md (6): exactly one prefill")
    def prefill_once(m, i, j):
        return sum(m.p[i, j, k] for k in m.ITERATIONS) == m.x[i, j]

    @m.Constraint(m.REQUESTS, m.CLIENTS, m.ITERATIONS, doc="prefill only in a prefill iteration")
    def prefill_in_prefill(m, i, j, k):
        return m.p[i, j, k] <= m.up[j, k]

    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="a prefill iteration prefills someone")
    def prefill_nonempty(m, j, k):
        return m.up[j, k] <= sum(m.p[i, j, k] for i in m.REQUESTS)

    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="an iteration is a prefill or a decode")
    def one_kind(m, j, k):
        return m.up[j, k] + m.ud[j, k] <= 1

    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="used iterations come first")
    def used_first(m, j, k):
        if k == num_k - 1:
            return pyo.Constraint.Skip
        return m.up[j, k] + m.ud[j, k] >= m.up[j, k + 1] + m.ud[j, k + 1]

    @m.Constraint(m.REQUESTS, m.CLIENTS, m.ITERATIONS, doc="a request that left stays gone")
    def finish_monotone(m, i, j, k):
        return pyo.Constraint.Skip if k == 0 else m.f[i, j, k - 1] <= m.f[i, j, k]

    @m.Constraint(m.REQUESTS, m.CLIENTS, m.ITERATIONS, doc="leave only after the prefill")
    def finish_after_start(m, i, j, k):
        return m.f[i, j, k] <= _started(m, i, j, k)


def _add_decode_rules(m: Any, inst: IterationInstance) -> None:
    out = inst.output.tolist()

    @m.Constraint(m.REQUESTS, m.CLIENTS, m.ITERATIONS, doc="a = holding * ud (1)")
    def active_if_holding(m, i, j, k):
        return m.a[i, j, k] <= _holding(m, i, j, k)

    @m.Constraint(m.REQUESTS, m.CLIENTS, m.ITERATIONS, doc="a = holding * ud (2)")
    def active_if_decode(m, i, j, k):
        return m.a[i, j, k] <= m.ud[j, k]

    @m.Constraint(m.REQUESTS, m.CLIENTS, m.ITERATIONS, doc="a = holding * ud (3): no pausing")
    def decode_whole_batch(m, i, j, k):
        return m.a[i, j, k] >= _holding(m, i, j, k) + m.ud[j, k] - 1

    @m.Constraint(m.REQUESTS, m.CLIENTS, doc="MODEL.md (6): o_i - 1 decode iterations")
    def decode_count(m, i, j):
        return sum(m.a[i, j, k] for k in m.ITERATIONS) == (out[i] - 1) * m.x[i, j]

    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="a decode iteration decodes someone")
    def decode_nonempty(m, j, k):
        return m.ud[j, k] <= sum(m.a[i, j, k] for i in m.REQUESTS)


def _add_capacity_rules(m: Any, inst: IterationInstance) -> None:
    s = inst.prompt.tolist()
    res = inst.reservation.tolist()
    budget = inst.prefill_budget_tokens
    oversized = [i for i in range(len(s)) if s[i] > budget]

    # Valid cuts implied by batch_capacity for integer points; they lift the LP bound on
    # the number of prefill and decode iterations to n_j / B and sum_i (o_i - 1) / B.
    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="cut: a prefill holds at most B requests")
    def prefill_size(m, j, k):
        return sum(m.p[i, j, k] for i in m.REQUESTS) <= inst.max_batch * m.up[j, k]

    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="cut: a decode holds at most B requests")
    def decode_size(m, j, k):
        return sum(m.a[i, j, k] for i in m.REQUESTS) <= inst.max_batch * m.ud[j, k]

    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="MODEL.md (6): batch capacity B")
    def batch_capacity(m, j, k):
        return sum(_holding(m, i, j, k) for i in m.REQUESTS) <= inst.max_batch

    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="MODEL.md (6), (7.4): reserved KV <= M")
    def kv_capacity(m, j, k):
        return sum(res[i] * _holding(m, i, j, k) for i in m.REQUESTS) <= inst.kv_capacity_tokens

    # A prompt longer than the budget may only be prefilled alone (simulator rule): its
    # own excess raises the right-hand side to exactly s_i, leaving no room for another
    # request (s >= 1), and two such prompts exceed it together.
    @m.Constraint(m.CLIENTS, m.ITERATIONS, doc="MODEL.md (7.5): prefill token budget")
    def prefill_budget(m, j, k):
        lhs = sum(s[i] * m.p[i, j, k] for i in m.REQUESTS)
        rhs = budget + sum((s[i] - budget) * m.p[i, j, k] for i in oversized)
        return lhs <= rhs


def _add_objective(m: Any, inst: IterationInstance) -> None:
    import pyomo.environ as pyo

    const = request_constant_s(inst).tolist()
    coef = inst.coef

    @m.Expression(m.CLIENTS, doc="MODEL.md (6): C_j = sum_k duration_jk")
    def client_time(m, j):
        return sum(coef.a_p * m.up[j, k] + coef.a_d * m.ud[j, k] for k in m.ITERATIONS) + sum(
            const[i] * m.x[i, j] for i in m.REQUESTS
        )

    @m.Constraint(m.CLIENTS, doc="MODEL.md (6): C >= C_j")
    def makespan_def(m, j):
        return m.client_time[j] <= m.makespan

    m.min_makespan = pyo.Objective(expr=m.makespan, sense=pyo.minimize, doc="MODEL.md (6)")


def build_iteration(inst: IterationInstance) -> Any:
    import pyomo.environ as pyo

    m = pyo.ConcreteModel(name="iteration_mip")
    _declare_variables(m, inst)
    _add_assignment_and_prefill_rules(m, inst)
    _add_decode_rules(m, inst)
    _add_capacity_rules(m, inst)
    _add_objective(m, inst)
    return m


def build_iteration_model(
    prompt_tokens: Any,
    output_tokens: Any,
    num_clients: int,
    max_batch: int,
    kv_capacity_tokens: int,
    coef: LinearCoefficients,
    num_iterations: int | None = None,
    prefill_budget_tokens: int = 2048,
    reservation_tokens: Any = None,
) -> Any:
    """Build the exact iteration MIP of MODEL.md (6) for identical clients.

    Exact for the simulator's semantics (see the module docstring), so its optimum
    certifies heuristics and the lower bound on tiny instances.

    Parameters
    ----------
    prompt_tokens, output_tokens
        ``s_i >= 1`` and ``o_i >= 1`` per request.
    num_clients, max_batch, kv_capacity_tokens
        ``|J|``, ``B`` and ``M`` (tokens), the same on every client.
    coef
        Linear latency model.
    num_iterations
        ``K`` per client; default ``n + sum_i (o_i - 1)``, enough for any schedule.
        A smaller ``K`` may cut off the optimum or make the model infeasible.
    prefill_budget_tokens
        Prompt tokens per prefill iteration (a single longer prompt may run alone).
    reservation_tokens
        KV tokens reserved per request while it holds a slot; default ``s_i + o_i``.

    Returns
    -------
    pyomo.environ.ConcreteModel

    Raises
    ------
    ValueError
        On invalid inputs, naming the field (and request), including a request whose
        reservation exceeds ``kv_capacity_tokens``.
    """
    inst = check_iteration_instance(
        prompt_tokens,
        output_tokens,
        num_clients,
        max_batch,
        kv_capacity_tokens,
        coef,
        num_iterations,
        prefill_budget_tokens,
        reservation_tokens,
    )
    return build_iteration(inst)
