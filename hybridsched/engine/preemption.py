"""Preemption by recompute: which running request gives up its KV memory, and what that undoes.

Under on-demand admission a client's KV grows by one token per running request and
decode step; when the next step would not fit in ``M``, the engine evicts running
requests until it does (docs/model.md section 11). The victim is vLLM's (FCFS scheduling):
the most recently admitted running request, the tail of the running batch
(``vllm/v1/core/sched/scheduler.py``: ``self.running.pop()``). An evicted request
returns to the head of its client's queue and later recomputes its prompt and the tokens
it had generated (``s_i + g_i``) in one prefill.

``make_room`` is the mechanism; ``VICTIMS`` names the choices (one today).
"""

from __future__ import annotations

from collections.abc import Callable

from hybridsched.engine.request_state import QUEUED
from hybridsched.engine.schema import KVOverflowError


def last_admitted(running: dict[int, int]) -> int:
    """The most recently admitted running row (vLLM's FCFS victim)."""
    return next(reversed(running))


VICTIMS: dict[str, Callable[[dict[int, int]], int]] = {"last-admitted": last_admitted}


def make_room(eng, extra: int, victim: Callable[[dict[int, int]], int] = last_admitted) -> None:
    """Evict running requests of client ``eng`` until its next step fits in ``M``.

    The step needs the KV held plus one token per running request plus ``extra`` (the
    prompt chunks it processes).
    """
    st = eng.st
    while st.running and eng.context_sum + eng.prefilled_sum + len(st.running) + extra > eng.M:
        evict(eng, victim(st.running))


def evict(eng, i: int) -> None:
    """Row ``i`` leaves client ``eng``'s running batch for the head of its queue."""
    st, sh = eng.st, eng.sh
    if sh.prompt0[i] + sh.output[i] > eng.M:
        raise KVOverflowError(
            f"client {eng.j} at t={eng.t:.6f}s: request {sh.ids[i]} alone needs more "
            f"than M={eng.M} KV tokens (prompt {sh.prompt0[i]} + output "
            f"{sh.output[i]}): it can never finish there; the router sent it on a "
            "too-short prediction"
        )
    del st.running[i]
    dc = st.decode_count
    g = sh.output[i] - (sh.fin_step[i] - dc)
    eng.finish_at[sh.fin_step[i]].remove(i)
    eng.context_sum -= sh.prompt0[i] + g
    sh.gen[i] = g
    sh.prompt[i] = sh.prompt0[i] + g
    sh.charge[i] = sh.prompt[i] + 1
    if sh.predicted_finish[i] > dc:
        eng.decoding_predicted -= 1
        # Drop its pending predicted-finish mark too: a stale one would count it
        # again if its recompute lands it on the same decode count.
        eng.pfin_at[sh.predicted_finish[i]].remove(i)
    sh.predicted_finish[i] = -1
    st.outstanding_tokens += sh.prompt[i]
    sh.where[i] = QUEUED
    st.queue.insert(0, i)
    eng.queue_rank.insert(0, -1)
    eng.evictions.append((eng.j, eng.k, eng.t, sh.ids[i], g))
