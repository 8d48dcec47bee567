"""The makespan lower bound ``T_LB`` (docs/model.md section 5).

Per-request work floors ``w_i = s_i phi_p + sum_{t=1}^{o_i-1} phi_d(s_i + t)`` are chosen
so that every feasible iteration lasts at least the floors of the tokens it processes;
every schedule that keeps a request on one client then has ``C_j >= sum_{i on j} w_ij``.
Three decode floors give three sizes (each valid under the admission rule it names):

=================  =========================================================  ==============
part               decode floor per token at context ``c``                    assumes
=================  =========================================================  ==============
``volume_memory``  fixed cost / ``B`` + all-reduce share + KV read of ``c``     ``|D| <= B``
``volume_compute`` FLOPs of the token at peak efficiency                        nothing
``volume_reserved`` fixed cost x ``(s_i + ô_i) / M`` + all-reduce + KV read     reservation
``critical_path``  ``t_prefill({i}) + sum_t t_decode({i} at s_i + t)``          nothing
``mmbpp``          best (dual) bound of the MMBPP with the largest sizes        as its sizes
=================  =========================================================  ==============

The volume bounds are ``sum_i min_j w_ij / |J|``. The floors are affine in the context,
so ``sum_{t=1}^{o-1} phi_d(s + t) = (o - 1) phi_d(s + o / 2)``. This module imports no
solver: the MMBPP part is passed in (``experiments.full_lower_bound`` solves it).

Mixed (chunked-prefill) iterations run prompt tokens inside a decode step, where their
compute can hide under the weight read. The memory-side parts then charge a prompt token
only its KV write and all-reduce share (``prefill_floors()["memory"]``) instead of
``phi_p``: ``lower_bound(..., mixed_iterations=True)`` is the bound for such schedules,
lower than the one for prefill/decode-only schedules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hybridsched.instance import Instance

ASSUMES = {
    "volume_memory": "batch <= B; unless mixed_iterations, no mixed (chunked-prefill) iterations",
    "volume_compute": "any schedule",
    "volume_reserved": "reservation admission: sum (s_i + predicted o_i) <= M; mixed as volume_memory",
    "critical_path": "any schedule",
    "mmbpp": "as the sizes it uses",
}


@dataclass(frozen=True)
class LowerBound:
    """``T_LB`` and its parts (seconds); ``binding`` names the largest part."""

    lower_bound_s: float
    volume_memory_s: float
    volume_compute_s: float
    volume_reserved_s: float
    critical_path_s: float
    mmbpp_s: float
    binding: str
    reservation_admission: bool
    mixed_iterations: bool = False

    def parts(self) -> dict[str, float]:
        return {
            "volume_memory": self.volume_memory_s,
            "volume_compute": self.volume_compute_s,
            "volume_reserved": self.volume_reserved_s,
            "critical_path": self.critical_path_s,
            "mmbpp": self.mmbpp_s,
        }

    def to_dict(self) -> dict:
        """The figures, plus the admission rule each part assumes."""
        return {**asdict(self), "assumes": dict(ASSUMES)}


def work_floors(instance: Instance, variant: str, mixed: bool = False) -> np.ndarray:
    """``w_ij``: request ``i``'s irreducible work (seconds) on client ``j``; shape ``(n, |J|)``.

    ``variant`` is ``memory``, ``compute`` or ``reserved`` (module docstring). Sizes use the
    predicted lengths ``ô_i`` when the caller builds an instance with them; the bound
    itself is computed on the true lengths by ``lower_bound``. ``mixed``: floors valid for
    schedules with mixed iterations (prompt tokens at their memory-side floor).
    """
    s = instance.prompt.astype(float)
    o = instance.output.astype(float)
    mid = s + o / 2.0  # mean context of the decode steps
    cols = []
    for c in instance.clients:
        lat = c.latency
        side = "compute" if variant == "compute" else "memory"
        pre = s * (lat.prefill_floors()[side] if mixed else lat.prefill_floor_per_token())
        if variant in ("memory", "compute"):
            per = lat.decode_floors(mid, c.max_batch)[variant]
        elif variant == "reserved":
            per = (
                lat.decode_fixed_cost() * instance.reservation / c.kv_capacity_tokens
                + lat.decode_variable_floor(mid)
            )
        else:
            raise ValueError(f"variant must be memory, compute or reserved, got {variant!r}")
        cols.append(pre + (o - 1.0) * per)
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


def critical_paths(instance: Instance) -> np.ndarray:
    """Each request alone on each client: its prefill plus its ``o_i - 1`` decode steps."""
    s, o = instance.prompt, instance.output
    steps = o - 1
    owner = np.repeat(np.arange(len(s)), steps)
    t = np.arange(steps.sum()) - np.repeat(np.cumsum(steps) - steps, steps) + 1  # 1..o_i-1
    ctx = s[owner] + t
    cols = []
    for c in instance.clients:
        lat = c.latency
        dec = np.bincount(
            owner,
            weights=np.broadcast_to(lat.decode_time(1.0, ctx.astype(float)), ctx.shape),
            minlength=len(s),
        )
        cols.append(
            np.asarray(lat.prefill_time(s.astype(float), s.astype(float) ** 2), dtype=float) + dec
        )
    return np.column_stack(cols)


def volume(w: np.ndarray) -> float:
    """``sum_i min_j w_ij / |J|``: the clients together cannot do the work faster."""
    return float(w.min(axis=1).sum() / w.shape[1])


def lower_bound(
    instance: Instance,
    mmbpp_bound_s: float = 0.0,
    reservation_admission: bool = True,
    mixed_iterations: bool = False,
) -> LowerBound:
    """``T_LB``: the largest valid part. Pass the MMBPP's dual bound if one was solved.

    With ``reservation_admission=False`` the reservation-share part is left out (reported
    as 0), for schedules that admit on current use instead. ``mixed_iterations=True``
    gives the bound for schedules with mixed (chunked-prefill) iterations (module
    docstring); pass an MMBPP bound solved on the matching sizes.
    """
    vm = volume(work_floors(instance, "memory", mixed_iterations))
    vc = volume(work_floors(instance, "compute", mixed_iterations))
    vr = (
        volume(work_floors(instance, "reserved", mixed_iterations))
        if reservation_admission
        else 0.0
    )
    cp = float(critical_paths(instance).min(axis=1).max())
    parts = {
        "volume_memory": vm,
        "volume_compute": vc,
        "volume_reserved": vr,
        "critical_path": cp,
        "mmbpp": float(mmbpp_bound_s),
    }
    best = max(parts.values())
    # Name the first part that reaches the maximum up to solver tolerance, so that the
    # MMBPP's bound (equal to the volume bound up to rounding) does not claim to bind.
    binding = next(k for k, v in parts.items() if v >= best * (1 - 1e-9))
    return LowerBound(
        best, vm, vc, vr, cp, float(mmbpp_bound_s), binding, reservation_admission, mixed_iterations
    )
