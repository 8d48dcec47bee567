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
(``experiments.full_lower_bound`` solves it).

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

import math
from dataclasses import asdict, dataclass

import numpy as np

from hybridsched.instance import Client, Instance

ADMISSIONS = ("reservation", "on-demand")
VARIANTS = ("memory", "compute", "kv", "reserved")

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
}


@dataclass(frozen=True)
class LowerBound:
    """``T_LB`` and its parts (seconds); ``binding`` names the largest part.

    ``lower_bound_s`` is the largest of ``parts()``; ``tight_lower_bound_s`` also counts
    ``volume_tight`` (the prefill fixed-cost share), ``max(lower_bound_s, volume_tight_s)``.
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
        return {**self.parts(), "volume_tight": self.volume_tight_s}

    def to_dict(self) -> dict:
        """The figures, plus the admission rule each part assumes."""
        return {**asdict(self), "assumes": dict(ASSUMES)}


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


def _decode_floor(instance: Instance, c: Client, variant: str, ctx) -> np.ndarray:
    """Per-token decode floor of ``variant`` at context ``ctx`` on client ``c``."""
    lat = c.latency
    if variant in ("memory", "compute"):
        return lat.decode_floors(ctx, c.max_batch)[variant]
    if variant == "reserved":
        return (
            lat.decode_fixed_cost() * instance.reservation / c.kv_capacity_tokens
            + lat.decode_variable_floor(ctx)
        )
    if variant == "kv":
        return lat.decode_fixed_cost() * np.asarray(ctx, dtype=float) / c.kv_capacity_tokens + (
            lat.decode_variable_floor(ctx)
        )
    raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")


def _prefill_coefficients(c: Client, variant: str, mixed: bool, share: bool):
    """``(F, g, per_request_share)``: request ``i``'s prefill floor is ``F * share_i + g s_i``.

    ``share`` False: ``F = 0`` and ``g`` the arrival-free floors' per-token prefill floor.
    ``per_request_share`` names the share: ``slot`` (1/B), ``reservation`` or ``kv``.
    """
    lat = c.latency
    side = "compute" if variant == "compute" else "memory"
    if not share:
        g = lat.prefill_floors()[side] if mixed else lat.prefill_floor_per_token()
        return 0.0, g, "slot"
    g = lat.prefill_floors()["memory"] if mixed and side == "memory" else lat.prefill_token_floor()
    F = lat.prefill_fixed_cost()
    if mixed:  # a chunk can share a mixed iteration's fixed cost with its decode tokens
        F = min(F, lat.decode_fixed_cost())
    kind = {"memory": "slot", "compute": "slot", "kv": "kv", "reserved": "reservation"}[variant]
    return F, g, kind


def sum_min_affine(s, m, a1, b1, a2, b2) -> np.ndarray:
    """``sum_{t=1}^{m} min(a1 + b1 (s + t), a2 + b2 (s + t))`` per request, in closed form.

    ``s``, ``m`` (number of terms, >= 0) and ``a1`` may be arrays; ``b1``, ``a2``, ``b2``
    scalars. The second line's sum plus the negative part of the difference.
    """
    s = np.asarray(s, dtype=float)
    m = np.asarray(m, dtype=float)
    base = m * (a2 + b2 * s) + b2 * m * (m + 1) / 2
    e = np.asarray(a1 - a2, dtype=float) + (b1 - b2) * s  # difference at t = 0
    f = float(b1 - b2)  # its slope in t
    if f == 0.0:
        return base + m * np.minimum(e, 0.0)
    root = -e / f  # the difference changes sign at t = root
    if f > 0:  # negative for t < root: t = 1..k
        k = np.clip(np.ceil(root) - 1, 0, m)
        neg = k * e + f * k * (k + 1) / 2
    else:  # negative for t > root: t = k0..m
        k0 = np.clip(np.floor(root) + 1, 1, m + 1)
        q = m - k0 + 1
        neg = q * e + f * (m * (m + 1) - (k0 - 1) * k0) / 2
    return base + np.minimum(neg, 0.0)


def work_floors(
    instance: Instance,
    variant: str,
    mixed: bool = False,
    *,
    prefill_share: bool = False,
    on_demand: bool = False,
) -> np.ndarray:
    """``w_ij``: request ``i``'s irreducible work (seconds) on client ``j``; shape ``(n, |J|)``.

    ``variant`` is ``memory``, ``compute``, ``kv`` or ``reserved`` (module docstring).
    Sizes use the predicted lengths ``ô_i`` when the caller builds an instance with them;
    the bound itself is computed on the true lengths by ``lower_bound``. ``mixed``: floors
    valid for schedules with mixed iterations (prompt tokens at their memory-side floor).
    ``prefill_share``: the prefill floor also carries a share of the prefill's fixed cost
    (``volume_tight``). ``on_demand``: floors valid under on-demand admission with
    preemption by recompute (``reserved`` is then refused).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if on_demand and variant == "reserved":
        raise ValueError("variant 'reserved' assumes reservation admission, not on-demand")
    s = instance.prompt.astype(float)
    o = instance.output.astype(float)
    mid = s + o / 2.0  # mean context of the decode steps
    cols = []
    for c in instance.clients:
        F, g, kind = _prefill_coefficients(c, variant, mixed, prefill_share)
        B, M = c.max_batch, c.kv_capacity_tokens
        share = {"slot": 1.0 / B, "kv": s / M, "reservation": instance.reservation / M}[kind]
        pre = s * g if F == 0.0 else F * share + g * s
        if not on_demand:
            cols.append(pre + (o - 1.0) * _decode_floor(instance, c, variant, mid))
            continue
        # A recompute prefill of x tokens may replace the decode step at context x.
        ends = _decode_floor(instance, c, variant, np.array([0.0, 1.0]))
        a1, b1 = float(ends[0]), float(ends[1] - ends[0])
        a2, b2 = (F / B, g) if kind == "slot" else (0.0, g + F / M)
        cols.append(pre + sum_min_affine(s, o - 1.0, a1, b1, a2, b2))
    return np.column_stack(cols)


def planning_sizes(instance: Instance) -> np.ndarray:
    """Sizes for the offline assignment: the floors computed with the predicted lengths ``ô_i``.

    Takes the floor variant that is largest in total, i.e. the resource that binds.
    """
    planned = instance.replace(
        requests=instance.requests.assign(
            output_tokens=instance.requests["predicted_output_tokens"]
        )
    )
    best = None
    for v in ("memory", "compute", "reserved"):
        w = work_floors(planned, v)
        if best is None or w.sum() > best.sum():
            best = w
    return best


def critical_paths(instance: Instance, on_demand: bool = False) -> np.ndarray:
    """Each request alone on each client: its prefill plus its ``o_i - 1`` decode steps.

    ``on_demand``: a decode step at context ``x`` may be replaced by the recompute prefill
    of ``x`` tokens after a preemption, so each step counts the smaller of the two.
    """
    s, o = instance.prompt, instance.output
    steps = o - 1
    owner = np.repeat(np.arange(len(s)), steps)
    t = np.arange(steps.sum()) - np.repeat(np.cumsum(steps) - steps, steps) + 1  # 1..o_i-1
    ctx = (s[owner] + t).astype(float)
    cols = []
    for c in instance.clients:
        lat = c.latency
        step = np.broadcast_to(lat.decode_time(1.0, ctx), ctx.shape)
        if on_demand:
            step = np.minimum(step, lat.prefill_time(ctx, ctx**2))
        dec = np.bincount(owner, weights=step, minlength=len(s))
        cols.append(
            np.asarray(lat.prefill_time(s.astype(float), s.astype(float) ** 2), dtype=float) + dec
        )
    return np.column_stack(cols)


def volume(w: np.ndarray) -> float:
    """``sum_i min_j w_ij / |J|``: the clients together cannot do the work faster."""
    return float(w.min(axis=1).sum() / w.shape[1])


def tau_sweep(u: np.ndarray, arrival: np.ndarray, scale: float = 1.0) -> float:
    """``max over tau in arrival of tau + sum_{i: r_i >= tau} u_i / scale``, in O(n log n).

    Sorts by arrival (stable) and takes suffix sums at the first request of each distinct
    arrival time; with all arrivals equal this is ``r + sum(u) / scale`` exactly.
    """
    u = np.asarray(u, dtype=float)
    arrival = np.asarray(arrival, dtype=float)
    if len(u) == 0:
        return 0.0
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
    candidates = [np.ones(w.shape[1])]
    total = w.sum(axis=0)
    if total.min() > 0 and not np.all(total == total[0]):
        candidates.append(total.min() / total)
    return max(tau_sweep((w * v).min(axis=1), r, float(v.sum())) for v in candidates)


def lower_bound(
    instance: Instance,
    mmbpp_bound_s: float = 0.0,
    reservation_admission: bool | None = None,
    mixed_iterations: bool = False,
    admission: str | None = None,
) -> LowerBound:
    """``T_LB``: the largest valid part. Pass the MMBPP's dual bound if one was solved.

    ``admission``: ``"reservation"`` (default) or ``"on-demand"``; under on-demand the
    reservation-share part is left out (reported as 0) and the floors allow preemption by
    recompute. ``reservation_admission=True/False`` is an alias for the two.
    ``mixed_iterations=True`` gives the bound for schedules with mixed (chunked-prefill)
    iterations (module docstring); pass an MMBPP bound solved on the matching sizes.
    Arrival times are taken into account (module docstring).
    """
    admission = _check_admission(admission, reservation_admission)
    od = admission == "on-demand"
    r = instance.arrival

    def part(variant: str, share: bool = False) -> float:
        w = work_floors(instance, variant, mixed_iterations, prefill_share=share, on_demand=od)
        return arrival_volume(w, r)

    variants = ("memory", "compute", "kv") if od else VARIANTS
    vol = {v: part(v) for v in variants}
    tight = max(part(v, share=True) for v in variants)
    cp = float((critical_paths(instance, on_demand=od).min(axis=1) + r).max())
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
        tight_lower_bound_s=max(best, tight),
        admission=admission,
    )
