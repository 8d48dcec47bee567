"""Per-request work floors ``w_ij`` and critical paths (docs/model.md section 5).

A floor charges each token a share of the iteration that processes it, chosen so that
every feasible iteration lasts at least the floors of its tokens; ``bounds`` turns them
into the makespan lower bound. Variants (decode share of the fixed cost): ``memory``
(``1 / B``), ``compute`` (none), ``kv`` (``c / M``, KV held) and ``reserved``
(``(s_i + ô_i) / M``, reservation admission). ``prefill_share=True`` adds the prefill's
own fixed-cost share (``volume_tight``); ``on_demand=True`` allows preemption by
recompute (a decode step may be replaced by a prefill of its context); ``on_demand=CACHED``
with a prefix cache too, where a recompute may find all but its last token cached (so a
decode step may be replaced by a one-token prefill). With a prefix cache the bound is taken
on the prompts less what the cache could supply (``bounds/lower_bound.py``).
"""

from __future__ import annotations

import numpy as np

from hybridsched.instance import Client, Instance

VARIANTS = ("memory", "compute", "kv", "reserved")
CACHED = "cached"  # ``on_demand`` with a prefix cache (module docstring)


def _decode_floor(instance: Instance, c: Client, variant: str, ctx, slots=None) -> np.ndarray:
    """Per-token decode floor of ``variant`` at context ``ctx`` on client ``c``.

    ``slots``: the most requests a decode step can hold (default ``B``).
    """
    lat = c.latency
    if variant in ("memory", "compute"):
        return lat.decode_floors(ctx, c.max_batch if slots is None else slots)[variant]
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
    caps: tuple[int, int] | None = None,
) -> np.ndarray:
    """``w_ij``: request ``i``'s irreducible work (seconds) on client ``j``; shape ``(n, |J|)``.

    ``variant`` is ``memory``, ``compute``, ``kv`` or ``reserved`` (module docstring).
    Sizes use the predicted lengths ``ô_i`` when the caller builds an instance with them;
    the bound itself is computed on the true lengths by ``lower_bound``. ``mixed``: floors
    valid for schedules with mixed iterations (prompt tokens at their memory-side floor).
    ``prefill_share``: the prefill floor also carries a share of the prefill's fixed cost
    (``volume_tight``). ``on_demand``: floors valid under on-demand admission with
    preemption by recompute (``reserved`` is then refused). ``caps``: with
    ``prefill_share``, the most requests a prefill and a decode step can hold besides
    ``B`` (default: the number of requests, and of those with ``o_i >= 2``).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if on_demand and variant == "reserved":
        raise ValueError("variant 'reserved' assumes reservation admission, not on-demand")
    cols, done = [], []  # equal clients share their column
    for c in instance.clients:
        col = next((x for d, x in done if d is c or d == c), None)
        if col is None:
            col = _work_floor(instance, c, variant, mixed, prefill_share, on_demand, caps)
            done.append((c, col))
        cols.append(col)
    return np.column_stack(cols)


def request_floors(lat, max_batch: int, s: np.ndarray, o: np.ndarray) -> np.ndarray:
    """The ``memory`` floors of requests with prompts ``s`` and outputs ``o`` on one client.

    ``s * phi_p + (o - 1) * phi_d(s + o / 2)``: each prompt token at the prefill's per-token
    floor and each decode step at the memory-bound decode floor at the request's mean
    context (``work_floors(..., "memory")``' column, from lengths alone: the routers' sizes).
    """
    mid = s + o / 2.0
    return (
        s * lat.prefill_floor_per_token() + (o - 1.0) * lat.decode_floors(mid, max_batch)["memory"]
    )


def _work_floor(instance, c, variant, mixed, prefill_share, on_demand, caps) -> np.ndarray:
    """``work_floors``' column of one client."""
    s = instance.prompt.astype(float)
    o = instance.output.astype(float)
    if variant == "memory" and not (mixed or prefill_share or on_demand):
        return request_floors(c.latency, c.max_batch, s, o)
    mid = s + o / 2.0  # mean context of the decode steps
    F, g, kind = _prefill_coefficients(c, variant, mixed, prefill_share)
    B, M, dec_slots = c.max_batch, c.kv_capacity_tokens, None
    if prefill_share:  # an iteration holds at most the requests there are
        kp, kd = caps or (len(s), max(1, int((o >= 2).sum())))
        # A mixed iteration holds decode tokens and chunks: one cap for both.
        B, dec_slots = min(B, kp), min(B, kp if mixed else kd)
    share = {"slot": 1.0 / B, "kv": s / M, "reservation": instance.reservation / M}[kind]
    pre = s * g if F == 0.0 else F * share + g * s
    if not on_demand:
        return pre + (o - 1.0) * _decode_floor(instance, c, variant, mid, dec_slots)
    # A recompute prefill of x tokens may replace the decode step at context x.
    ends = _decode_floor(instance, c, variant, np.array([0.0, 1.0]), dec_slots)
    a1, b1 = float(ends[0]), float(ends[1] - ends[0])
    a2, b2 = (F / B, g) if kind == "slot" else (0.0, g + F / M)
    if on_demand == CACHED:  # the recompute of one token: a constant
        a2, b2 = a2 + b2, 0.0
    return pre + sum_min_affine(s, o - 1.0, a1, b1, a2, b2)


_CHUNK_TOKENS = 1 << 21  # decode steps per block: bounds the memory of a million requests


def _critical_path(lat, s: np.ndarray, o: np.ndarray, on_demand: bool, mixed: bool) -> np.ndarray:
    """``critical_paths`` on one latency model, in blocks of whole requests."""
    steps = o - 1
    dec = np.zeros(len(s))
    ends = np.cumsum(steps)
    a = 0
    while a < len(s):
        b = max(a + 1, int(np.searchsorted(ends, ends[a] - steps[a] + _CHUNK_TOKENS, "right")))
        st = steps[a:b]
        owner = np.repeat(np.arange(b - a), st)
        t = np.arange(st.sum()) - np.repeat(np.cumsum(st) - st, st) + 1  # 1..o_i-1
        ctx = (s[a:b][owner] + t).astype(float)
        step = np.broadcast_to(lat.decode_time(1.0, ctx), ctx.shape)
        x = np.ones_like(ctx) if on_demand == CACHED else ctx  # tokens a recompute computes
        if mixed and on_demand:
            step = np.minimum(step, x * lat.prefill_floors()["memory"])
        elif on_demand:
            step = np.minimum(step, lat.prefill_time(x, x**2))
        dec[a:b] = np.bincount(owner, weights=step, minlength=b - a)
        a = b
    if mixed:
        pre = s.astype(float) * lat.prefill_floors()["memory"]
    else:
        pre = np.asarray(lat.prefill_time(s.astype(float), s.astype(float) ** 2), dtype=float)
    return pre + dec


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


def critical_paths(instance: Instance, on_demand: bool = False, mixed: bool = False) -> np.ndarray:
    """Each request alone on each client: its prefill plus its ``o_i - 1`` decode steps.

    ``on_demand``: a decode step at context ``x`` may be replaced by the recompute prefill
    of ``x`` tokens after a preemption, so each step counts the smaller of the two.
    ``mixed``: prompts may ride in mixed iterations, so a prompt counts only its
    memory-side floor per token (``prefill_floors()["memory"]``), not a prefill iteration.
    """
    s, o = instance.prompt, instance.output
    cols, done = [], []  # clients with equal latency models share their column
    for c in instance.clients:
        col = next((x for lat, x in done if lat is c.latency or lat == c.latency), None)
        if col is None:
            col = _critical_path(c.latency, s, o, on_demand, mixed)
            done.append((c.latency, col))
        cols.append(col)
    return np.column_stack(cols)
