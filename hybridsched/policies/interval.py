"""Online rules that use the predictor's interval ``[lo_i, hi_i]`` (docs/model.md section 8).

``EstimateAdmission`` wraps any online rule (``policies.PrefillFirst``, ``Lagrangian``,
``ChunkedPrefill``) and replaces the admission currency it sees: request ``i`` counts
``s_i + est_i`` KV tokens, where the *estimate* ``est_i`` starts at a quantile of its
predicted length (``reserve``: ``lo``, ``mid`` = ``ô_i``, ``hi``, or a number ``q`` in
``[0, 1]``) and is raised as its generated tokens reach it:
``est_i = max(base_i, g_i + 1)``, with ``g_i`` its tokens emitted so far (so a running
request always counts at least the KV of its next step). The wrapped rule admits while
``sum (s_i + est_i) <= M`` over the requests holding a slot and the new ones, and sees a
predicted departure free ``s_i + est_i``. ``sort`` optionally orders the queue by a
quantile instead of ``ô_i`` (in the wrapped rule's direction: ``longest`` or
``shortest`` first).

The wrapper only restricts what the wrapped rule may admit; it runs under the engine's
on-demand admission (``engine/admission.py``, with watermark 0), which counts the KV
actually held and preempts by recompute (the running request admitted last) when a
decode step would not fit. So a request whose true length exceeds its estimate never
stops the run: it keeps decoding, its estimate grows with it, and if memory runs out a
request is evicted and re-enters the queue with its raised estimate
(``s_i + g_i + 1``, at least its base). Every admission is also capped by the engine's
own test (``charge`` / ``kv_limit``), so the wrapped rule can never choose an
iteration the engine refuses.

With exact intervals (``lo_i = hi_i = o_i``) and watermark 0, the estimates are the
reservations ``s_i + o_i`` of reservation admission, the KV held never exceeds them, no
request is evicted and the schedule is the wrapped rule's under reservation admission
(tested). ``reserve="lo"`` is the ``A_min`` rule of Chen, Ye and Zhou (arXiv
2508.14544): start from the lower end, raise the estimate as tokens are generated,
evict on overflow and restart the evicted request with its raised estimate.

This module imports no solver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hybridsched.engine.schema import DECODE, Action
from hybridsched.engine.state import ClientState, Decider
from hybridsched.instance import Instance

QUANTILES = ("lo", "mid", "hi")
_COPIED = tuple(s for s in ClientState.__slots__ if s not in ("charge", "reservation"))


def interval(instance: Instance) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` of every request; ``[ô_i, ô_i]`` when the table has no interval."""
    req = instance.requests
    if "predicted_lo_tokens" in req and "predicted_hi_tokens" in req:
        lo = req["predicted_lo_tokens"].to_numpy(np.int64)
        hi = req["predicted_hi_tokens"].to_numpy(np.int64)
        return lo, hi
    return instance.predicted, instance.predicted


def check_quantile(q: str | float, what: str = "quantile") -> str | float:
    """``lo``, ``mid``, ``hi`` or a number in ``[0, 1]``; else a ``ValueError`` naming it."""
    if isinstance(q, str):
        if q in QUANTILES:
            return q
        try:
            q = float(q)
        except ValueError:
            raise ValueError(
                f"{what} must be one of {', '.join(QUANTILES)} or a number in [0, 1], got {q!r}"
            ) from None
    if isinstance(q, bool) or not (isinstance(q, (int, float)) and 0 <= q <= 1):
        raise ValueError(
            f"{what} must be one of {', '.join(QUANTILES)} or a number in [0, 1], got {q!r}"
        )
    return float(q)


def quantile_lengths(instance: Instance, q: str | float) -> np.ndarray:
    """A length per request at position ``q`` of its interval: ``lo`` = 0, ``mid`` (``ô_i``)
    = 0.5, ``hi`` = 1, linear in between on each side of ``ô_i``, rounded up, ``>= 1``.

    The shipped intervals are nominal 80% intervals (``noisy``, ``trained``: 10% and 90%
    quantiles) or a bucket, so ``q`` is a position in the interval, not a probability.
    """
    q = check_quantile(q)
    lo, hi = interval(instance)
    mid = instance.predicted
    if q == "lo":
        return lo.copy()
    if q == "hi":
        return hi.copy()
    if q == "mid":
        return mid.copy()
    if q <= 0.5:
        x = lo + (mid - lo) * (q / 0.5)
    else:
        x = mid + (hi - mid) * ((q - 0.5) / 0.5)
    return np.maximum(1, np.ceil(x - 1e-9)).astype(np.int64)


@dataclass(frozen=True)
class EstimateAdmission:
    """Admission by growing length estimates around a wrapped rule (module docstring).

    Parameters
    ----------
    inner : the online rule that decides (its sort, its prefill-or-decode logic).
    reserve : the estimate's start: a quantile of the interval (``quantile_lengths``).
    sort : order the queue by this quantile instead of ``ô_i`` (None: the inner rule's key).
    """

    inner: Any
    reserve: str | float = "hi"
    sort: str | float | None = None
    name: str = "estimate-admission"

    def __post_init__(self) -> None:
        check_quantile(self.reserve, "reserve")
        if self.sort is not None:
            check_quantile(self.sort, "sort quantile")
            if getattr(self.inner, "sort", None) not in ("longest", "shortest"):
                raise ValueError(
                    "a sort quantile needs an inner rule that sorts by length "
                    f"('longest' or 'shortest'), got {getattr(self.inner, 'sort', None)!r}"
                )

    def queue_key(self, instance: Instance) -> np.ndarray:
        if self.sort is None:
            return self.inner.queue_key(instance)
        x = quantile_lengths(instance, self.sort).astype(float)
        return -x if self.inner.sort == "longest" else x

    def start(self, instance: Instance, client: int) -> Decider:
        inner = self.inner.start(instance, client)
        M = int(instance.clients[client].kv_capacity_tokens)
        s0 = instance.prompt.tolist()
        # A request never counts more than the whole memory (so it can always run alone).
        base = np.minimum(instance.prompt + quantile_lengths(instance, self.reserve), M)
        base = base.tolist()
        charge = list(base)  # s_i + est_i of waiting rows (refreshed at the queue's head)
        freed = list(base)  # s_i + est_i of rows holding a slot
        view = ClientState()

        def decide(st: ClientState) -> Action:
            prompt, pf, dc, pred = st.prompt, st.predicted_finish, st.decode_count, st.predicted
            held = 0
            for i in st.running:
                # tokens emitted so far: predicted_finish = decode count + ô_i - g_i
                x = s0[i] + pred[i] - pf[i] + dc + 1
                if x < base[i]:
                    x = base[i]
                freed[i] = x
                held += x
            for i in st.prefilling:
                x = max(base[i], prompt[i] + 1)
                freed[i] = x
                held += x
            queue = st.queue
            for i in queue[: st.max_batch]:
                x = prompt[i] + 1  # an evicted row restarts with its raised estimate
                charge[i] = x if x > base[i] else base[i]
            for a in _COPIED:
                setattr(view, a, getattr(st, a))
            view.charge, view.reservation = charge, freed
            view.kv_charged, view.kv_limit = held, M
            return _cap(inner(view), st)

        return decide


def _cap(action: Action, st: ClientState) -> Action:
    """``action`` with its new rows cut to what the engine's own admission allows."""
    if action.kind == "decode":
        return action
    free, ch, pre = st.kv_limit - st.kv_charged, st.charge, st.prefilling
    rows, toks, cut = [], [], False
    for k, i in enumerate(action.rows):
        if i not in pre:
            if cut or ch[i] > free:
                cut = True
                continue
            free -= ch[i]
        rows.append(i)
        if action.kind == "mixed":
            toks.append(action.tokens[k])
    if not cut:
        return action
    if not rows:
        return DECODE
    if action.kind == "prefill":
        return Action("prefill", tuple(rows))
    return Action("mixed", tuple(rows), tuple(toks))
