"""The makespan lower bound ``T_LB`` (docs/model.md section 5; with arrivals, section 11).

Per-request work floors ``w_i = s_i phi_p + sum_{t=1}^{o_i-1} phi_d(s_i + t)`` are chosen
so that every feasible iteration lasts at least the floors of the tokens it processes;
every schedule that keeps a request on one client then has ``C_j >= sum_{i on j} w_ij``.
Four decode floors give four sizes (each valid under the admission rule it names):

=================== ======================================================== ===============
part                decode floor per token at context ``c``                  assumes
=================== ======================================================== ===============
``volume_memory``   fixed cost / ``B`` + all-reduce share + KV read of ``c``  ``|D| <= B``
``volume_compute``  FLOPs of the token at peak efficiency                     nothing
``volume_kv``       fixed cost x ``c / M`` + all-reduce + KV read              KV held <= M
``volume_reserved`` fixed cost x ``(s_i + ô_i) / M`` + all-reduce + KV read    reservation
``critical_path``   ``t_prefill({i}) + sum_t t_decode({i} at s_i + t)``       nothing
``mmbpp``           best (dual) bound of the MMBPP with the largest sizes     as its sizes
``volume_tight``    the volume parts with each prefill's fixed cost shared    as each part
=================== ======================================================== ===============

Arrivals: a request's iterations start at or after ``r_i``, so for every threshold
``tau`` among the arrivals ``T >= tau + sum_{r_i >= tau} w_i / |J|`` (``arrival_volume``
sweeps every ``tau`` in O(n log n)) and ``T >= max_i (r_i + cp_i)``. With all arrivals at
0 the parts are the arrival-free ones, bit for bit. Heterogeneous clients: for any client
weights ``v_j > 0``, ``T - tau >= sum_i min_j (v_j w_ij) / sum_j v_j``; the parts take the
better of ``v = 1`` (``sum_i min_j w_ij / |J|``) and ``v_j`` proportional to client speed
(``1 / sum_i w_ij``).

Admission (``admission=``): ``reservation`` (the paper's) or ``on-demand`` (section 11).
Under ``on-demand`` the reservation-share part does not hold (reported as 0) and a
preempted request's recompute prefill emits a token in place of one decode step, so
each decode step's floor is the smaller of the step's floor and the part's prefill floor
of a prompt of that context (``sum_min_affine``); the critical path likewise.

The floors are affine in the context, so ``sum_{t=1}^{o-1} phi_d(s + t) = (o - 1)
phi_d(s + o / 2)``. This module imports no solver: the MMBPP part is passed in
(``studies.bounds.full_lower_bound`` solves it).

Mixed (chunked-prefill) iterations run prompt tokens inside a decode step, where their
compute can hide under the weight read. The memory-side parts then charge a prompt token
only its KV write and all-reduce share (``prefill_floors()["memory"]``) instead of
``phi_p``: ``lower_bound(..., mixed_iterations=True)`` is the bound for such schedules.

``volume_tight`` (``prefill_share=True`` floors) adds to each request's prefill floor a
share of its prefill iteration's fixed cost ``F_p`` (``prefill_fixed_cost()``: overhead
and ``comm(0)``, the part outside the roofline's max) and the all-reduce slope: ``F_p / B``
(slots), ``F_p (s_i + ô_i) / M`` (reservation) or ``F_p s_i / M`` (KV held), matching the
decode share of the part. It is reported beside ``T_LB`` as ``tight_lower_bound_s`` and
leaves ``lower_bound_s`` (the paper's reported figure) unchanged.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np

from hybridsched.bounds.floors import CACHED, VARIANTS, critical_paths, work_floors
from hybridsched.instance import ADMISSIONS, Instance
from hybridsched.workloads.prefixes import PREFIX_COLUMNS

ASSUMES = {
    "volume_memory": "batch <= B; unless mixed_iterations, no mixed (chunked-prefill) iterations",
    "volume_compute": "any schedule",
    "volume_kv": "KV held <= M (both admission modes); mixed as volume_memory",
    "volume_reserved": (
        "reservation admission: sum (s_i + predicted o_i) <= M; mixed as volume_memory; "
        "not applicable under on-demand admission (reported as 0)"
    ),
    "critical_path": "any schedule",
    "mmbpp": "as the sizes it uses",
    "volume_tight": (
        "the volume parts with the prefill's fixed cost shared as each part shares the decode's; "
        "each as its part (reservation share only under reservation admission); "
        "reported as tight_lower_bound_s, not in lower_bound_s"
    ),
    "small_packing": (
        "as volume_tight, client by client (an iteration holds at most its client's requests), "
        "exact over all assignments; only when |J|^n <= 64 (else 0); in tight_lower_bound_s"
    ),
}


@dataclass(frozen=True)
class LowerBound:
    """``T_LB`` and its parts (seconds); ``binding`` names the largest part.

    ``lower_bound_s`` is the largest of ``parts()``; ``tight_lower_bound_s`` the largest of
    ``all_parts()``, which adds ``volume_tight`` (the prefill fixed-cost share) and
    ``small_packing`` (tiny instances).
    """

    lower_bound_s: float
    volume_memory_s: float
    volume_compute_s: float
    volume_reserved_s: float
    critical_path_s: float
    mmbpp_s: float
    binding: str
    reservation_admission: bool
    mixed_iterations: bool = False
    volume_kv_s: float = 0.0
    volume_tight_s: float = 0.0
    small_packing_s: float = 0.0
    tight_lower_bound_s: float = math.nan
    admission: str = "reservation"

    def parts(self) -> dict[str, float]:
        """The parts of ``lower_bound_s``."""
        return {
            "volume_memory": self.volume_memory_s,
            "volume_compute": self.volume_compute_s,
            "volume_reserved": self.volume_reserved_s,
            "volume_kv": self.volume_kv_s,
            "critical_path": self.critical_path_s,
            "mmbpp": self.mmbpp_s,
        }

    def all_parts(self) -> dict[str, float]:
        """``parts()`` and ``volume_tight`` (the parts of ``tight_lower_bound_s``)."""
        return {
            **self.parts(),
            "volume_tight": self.volume_tight_s,
            "small_packing": self.small_packing_s,
        }

    def to_dict(self) -> dict:
        """The figures, plus the admission rule each part assumes."""
        return {**asdict(self), "assumes": dict(ASSUMES)}


def without_cached(instance: Instance, cached: np.ndarray) -> Instance:
    """The instance with each prompt less the tokens a prefix cache could supply (and no
    prefix identity left: the bound reads lengths only)."""
    req = instance.requests.drop(columns=list(PREFIX_COLUMNS), errors="ignore")
    return instance.replace(requests=req.assign(prompt_tokens=req["prompt_tokens"] - cached))


def _check_admission(admission: str | None, reservation_admission: bool | None) -> str:
    """``admission``, or its value from the ``reservation_admission`` alias (both: must agree)."""
    if reservation_admission is not None:
        alias = "reservation" if reservation_admission else "on-demand"
        if admission is not None and admission != alias:
            raise ValueError(
                f"admission={admission!r} contradicts reservation_admission={reservation_admission!r}"
            )
        admission = alias
    admission = "reservation" if admission is None else admission
    if admission not in ADMISSIONS:
        raise ValueError(f"admission must be one of {', '.join(ADMISSIONS)}, got {admission!r}")
    return admission


def volume(w: np.ndarray) -> float:
    """``sum_i min_j w_ij / |J|``: the clients together cannot do the work faster."""
    return float(w.min(axis=1).sum() / w.shape[1])


def tau_sweep(
    u: np.ndarray, arrival: np.ndarray, scale: float = 1.0, order: np.ndarray | None = None
) -> float:
    """``max over tau in arrival of tau + sum_{i: r_i >= tau} u_i / scale``, in O(n log n).

    Sorts by arrival (stable; ``order`` may pass that sort) and takes suffix sums at the
    first request of each distinct arrival time; with all arrivals equal this is
    ``r + sum(u) / scale`` exactly.
    """
    u = np.asarray(u, dtype=float)
    arrival = np.asarray(arrival, dtype=float)
    if len(u) == 0:
        return 0.0
    if order is None:
        order = np.argsort(arrival, kind="stable")
    r, x = arrival[order], u[order]
    suffix = np.cumsum(x[::-1])[::-1]
    suffix[0] = x.sum()  # the same summation as the arrival-free volume
    first = np.empty(len(r), dtype=bool)
    first[0] = True
    np.not_equal(r[1:], r[:-1], out=first[1:])
    return float(np.max(r[first] + suffix[first] / scale))


def arrival_volume(w: np.ndarray, arrival: np.ndarray | None = None) -> float:
    """The volume bound with arrivals: ``max_tau tau + sum_{r_i >= tau} min_j v_j w_ij / sum v``.

    Valid for any client weights ``v > 0``; takes the better of ``v = 1`` and speed weights
    ``v_j = min_k S_k / S_j`` (``S_j = sum_i w_ij``), which coincide for identical clients.
    """
    r = np.zeros(w.shape[0]) if arrival is None else np.asarray(arrival, dtype=float)
    order = np.argsort(r, kind="stable")
    best = tau_sweep(_row_min(w), r, float(w.shape[1]), order)
    total = np.array([w[:, j].sum() for j in range(w.shape[1])])
    if total.min() > 0 and not np.all(total == total[0]):
        v = total.min() / total
        best = max(best, tau_sweep(_row_min(w, v), r, float(v.sum()), order))
    return best


def _row_min(w: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
    """``min_j v_j w_ij`` per row, column by column (faster than a row-wise reduction)."""
    cols = range(w.shape[1])
    scaled = (w[:, j] if v is None else w[:, j] * v[j] for j in cols)
    out = np.array(next(scaled), dtype=float)
    for col in scaled:
        np.minimum(out, col, out=out)
    return out


PACKING_LIMIT = 64  # the most assignments (|J|^n) small_packing enumerates


def small_packing(
    instance: Instance,
    mixed: bool = False,
    on_demand: bool = False,
    limit: int = PACKING_LIMIT,
) -> float:
    """``min over assignments of max_j L_j(S_j)``, exact; 0.0 when ``|J|^n > limit``.

    ``L_j(S)``, client ``j``'s own bound for the requests ``S`` it serves: the largest of
    ``max_{i in S} (r_i + cp_ij)`` and the tau sweep of each ``volume_tight`` floor with at
    most ``|S|`` requests per prefill and ``|S ∩ {o_i >= 2}|`` per decode step.
    """
    n, J = instance.num_requests, instance.num_clients
    if J**n > limit:
        return 0.0
    r, o = instance.arrival, instance.output
    variants = ("memory", "compute", "kv") if on_demand else VARIANTS
    cp = critical_paths(instance, on_demand=on_demand, mixed=mixed) + r[:, None]
    floors: dict = {}
    loads: dict = {}

    def load(j: int, members: tuple) -> float:
        key = (instance.clients[j], members)  # identical clients share their loads
        if key not in loads:
            S = np.array(members)
            caps = (len(S), max(1, int((o[S] >= 2).sum())))
            if caps not in floors:
                floors[caps] = [
                    work_floors(
                        instance, v, mixed, prefill_share=True, on_demand=on_demand, caps=caps
                    )
                    for v in variants
                ]
            loads[key] = max(
                float(cp[S, j].max()), *(tau_sweep(w[S, j], r[S]) for w in floors[caps])
            )
        return loads[key]

    best = math.inf
    for a in itertools.product(range(J), repeat=n):
        sets = [tuple(i for i in range(n) if a[i] == j) for j in range(J)]
        best = min(best, max(load(j, S) for j, S in enumerate(sets) if S))
    return best


def lower_bound(
    instance: Instance,
    mmbpp_bound_s: float = 0.0,
    reservation_admission: bool | None = None,
    mixed_iterations: bool = False,
    admission: str | None = None,
    cached: np.ndarray | None = None,
) -> LowerBound:
    """``T_LB``: the largest valid part. Pass the MMBPP's dual bound if one was solved.

    ``admission``: ``"reservation"`` (default) or ``"on-demand"``; under on-demand the
    reservation-share part is left out (reported as 0) and the floors allow preemption by
    recompute. ``reservation_admission=True/False`` is an alias for the two.
    ``mixed_iterations=True`` gives the bound for schedules with mixed (chunked-prefill)
    iterations (module docstring); pass an MMBPP bound solved on the matching sizes.
    Arrival times are taken into account (module docstring). ``cached`` (on demand, with a
    prefix cache): per request, the most prompt tokens the cache could supply
    (``workloads.prefixes.cacheable_tokens``); the bound is then taken on the prompts less
    those, with recomputes that may find all but one token cached (``floors.CACHED``).
    """
    admission = _check_admission(admission, reservation_admission)
    od = admission == "on-demand"
    if od and cached is not None:
        instance, od = without_cached(instance, cached), CACHED
    r = instance.arrival

    def part(variant: str, share: bool = False) -> float:
        w = work_floors(instance, variant, mixed_iterations, prefill_share=share, on_demand=od)
        return arrival_volume(w, r)

    variants = ("memory", "compute", "kv") if od else VARIANTS
    vol = {v: part(v) for v in variants}
    tight = max(part(v, share=True) for v in variants)
    packing = small_packing(instance, mixed_iterations, od)
    cp = float(
        (critical_paths(instance, on_demand=od, mixed=mixed_iterations).min(axis=1) + r).max()
    )
    parts = {
        "volume_memory": vol["memory"],
        "volume_compute": vol["compute"],
        "volume_reserved": vol.get("reserved", 0.0),
        "volume_kv": vol["kv"],
        "critical_path": cp,
        "mmbpp": float(mmbpp_bound_s),
    }
    best = max(parts.values())
    # Name the first part that reaches the maximum up to solver tolerance, so that the
    # MMBPP's bound (equal to the volume bound up to rounding) does not claim to bind.
    binding = next(k for k, v in parts.items() if v >= best * (1 - 1e-9))
    return LowerBound(
        lower_bound_s=best,
        volume_memory_s=parts["volume_memory"],
        volume_compute_s=parts["volume_compute"],
        volume_reserved_s=parts["volume_reserved"],
        critical_path_s=cp,
        mmbpp_s=float(mmbpp_bound_s),
        binding=binding,
        reservation_admission=not od,
        mixed_iterations=mixed_iterations,
        volume_kv_s=parts["volume_kv"],
        volume_tight_s=tight,
        small_packing_s=packing,
        tight_lower_bound_s=max(best, tight, packing),
        admission=admission,
    )
