"""Portfolio planning: the paper's method made robust (docs/model.md section 12).

The paper's hybrid plans with work alone: its MMBPP sizes and its sorted queue ignore the
KV reservations, so two requests whose reservations exceed ``M`` together can end up on
one client and run one after the other, and on some instances it loses to the
baseline. ``plan`` builds several candidate schedules (an offline assignment, a queue
order and an online rule each), runs every candidate through the simulator on the
*planning instance* (the requests with their predicted lengths in place of the true
ones: planners see only predictions), and keeps the one with the smallest predicted
makespan. The candidates include the paper's hybrid (first, so it wins ties) and the
baseline, so with exact predictions the result is never worse than either.

Assignments: round-robin, and the MMBPP on three sizes: the binding floor (the paper's),
the reservation-share floor (memory-aware: a request's share of the fixed cost of the
iterations it holds memory in) and the memory-side floor. Queue orders: longest
predicted output first, FCFS, largest reservation first. Rules: the Lagrangian rule and
prefill-first. On small instances, seeded random candidates (assignment, queue order,
rule and its knobs) widen the search. The MMBPP solver is passed in (``assign``), so
this module imports none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hybridsched.bounds.floors import planning_sizes, work_floors
from hybridsched.instance import Instance
from hybridsched.policies.lagrangian import Lagrangian
from hybridsched.policies.prefill_first import PrefillFirst
from hybridsched.policies.static import fit_mask, round_robin, simulate

ASSIGNMENTS = ("mmbpp", "round-robin", "mmbpp-reserved", "mmbpp-memory")
SORTS = ("longest", "fcfs", "reservation")
RULES = ("lagrangian", "prefill-first")


@dataclass(frozen=True)
class Choice:
    """The chosen candidate and what every candidate predicted."""

    assignment: np.ndarray
    rule: object
    name: str
    predicted_makespan_s: float
    candidates: dict


def _planning_instance(instance: Instance) -> Instance:
    req = instance.requests.assign(output_tokens=instance.requests["predicted_output_tokens"])
    return instance.replace(requests=req)


def _sizes(planned: Instance, kind: str) -> np.ndarray:
    if kind == "mmbpp":
        return planning_sizes(planned)
    return work_floors(planned, "reserved" if kind == "mmbpp-reserved" else "memory")


def _rule(name: str, sort: str):
    if sort == "reservation":
        return _SortedBy(Lagrangian() if name == "lagrangian" else PrefillFirst())
    return Lagrangian(sort=sort) if name == "lagrangian" else PrefillFirst(sort=sort)


@dataclass(frozen=True)
class _SortedBy:
    """An online rule with the queue ordered by reservation, largest first."""

    inner: object

    @property
    def name(self) -> str:
        return f"{self.inner.name}-by-reservation"

    def queue_key(self, instance: Instance) -> np.ndarray:
        return -instance.reservation.astype(float)

    def start(self, instance: Instance, client: int):
        return self.inner.start(instance, client)


@dataclass(frozen=True)
class _Ordered:
    """An online rule with a fixed queue order (``keys``, smaller first)."""

    inner: object
    keys: np.ndarray

    @property
    def name(self) -> str:
        return f"{self.inner.name}-ordered"

    def queue_key(self, instance: Instance) -> np.ndarray:
        return self.keys

    def start(self, instance: Instance, client: int):
        return self.inner.start(instance, client)


def _random_candidates(planned: Instance, count: int, seed: int, block_size: int = 1):
    """Seeded random candidates: an assignment, a queue order and a rule with its knobs."""
    rng = np.random.default_rng(seed)
    n = planned.num_requests
    fits = fit_mask(planned, block_size)
    if fits is None:
        fits = np.ones((n, planned.num_clients), dtype=bool)
    for k in range(count):
        a = np.array([rng.choice(np.flatnonzero(fits[i])) for i in range(n)], dtype=np.int64)
        keys = rng.permutation(n).astype(float)
        B = max(c.max_batch for c in planned.clients)
        if rng.random() < 0.5:
            inner = PrefillFirst()
        else:
            inner = Lagrangian(
                lambda_multiplier=float(rng.choice([0.0, 0.5, 1.0, 2.0, 4.0])),
                min_prefill=int(rng.integers(1, B + 1)),
            )
        yield f"random-{k}", a, _Ordered(inner, keys)


def _extra(n: int) -> int:
    """How many random candidates: many for tiny instances, a few for large ones."""
    return int(min(256, 4096 // max(1, n)))


def plan(
    instance: Instance,
    assign: Callable[[np.ndarray], np.ndarray],
    extra: int | None = None,
    seed: int = 0,
    block_size: int = 1,
) -> Choice:
    """The best candidate on the predicted lengths (module docstring).

    ``assign(sizes)`` returns an MMBPP assignment for an (n, J) size array. Besides the
    structured candidates, ``extra`` seeded random ones (default: 256 for tiny
    instances, falling with ``n`` to none at 4,097 requests) widen the search where the
    simulator is cheap. ``block_size``: on-demand KV's block, so that every candidate places
    each request only on a client that holds it alone in whole blocks.
    """
    planned = _planning_instance(instance)
    plans: dict[str, np.ndarray] = {}
    for kind in ASSIGNMENTS:
        plans[kind] = (
            round_robin(planned, block_size)
            if kind == "round-robin"
            else assign(_sizes(planned, kind))
        )
    seen: dict[bytes, str] = {}
    results: dict[str, float] = {}
    best = None
    for kind in ASSIGNMENTS:
        key = plans[kind].tobytes()
        if key in seen:  # the same assignment under another size: same schedules
            continue
        seen[key] = kind
        for sort in SORTS:
            for rule_name in RULES:
                rule = _rule(rule_name, sort)
                name = f"{kind}/{sort}/{rule_name}"
                t = float(simulate(planned, plans[kind], rule)["end_s"].max())
                results[name] = t
                if best is None or t < best[0] * (1 - 1e-12):
                    best = (t, name, plans[kind], rule)
    n_extra = _extra(instance.num_requests) if extra is None else extra
    for name, a, rule in _random_candidates(planned, n_extra, seed, block_size):
        t = float(simulate(planned, a, rule)["end_s"].max())
        results[name] = t
        if t < best[0] * (1 - 1e-12):
            best = (t, name, a, rule)
    t, name, a, rule = best
    return Choice(a, rule, name, t, results)


__all__ = ["ASSIGNMENTS", "RULES", "SORTS", "Choice", "plan"]
