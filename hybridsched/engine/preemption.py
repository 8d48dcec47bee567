"""Preemption by recompute: which request gives up its KV memory, and what that undoes.

Under on-demand admission a client's running requests take KV blocks as they decode and as
their prompts are chunked in; when their next step would not fit in the client's blocks,
the engine preempts until it does (docs/model.md section 11). The victim is vLLM's under
FCFS scheduling: the most recently admitted request holding KV, the tail of vLLM's running
list (``vllm/v1/core/sched/scheduler.py``: ``self.running.pop()``), which may be a request
still being prefilled or (asynchronous scheduling) one whose last token is in flight. A
preempted request returns to the head of its client's queue and later recomputes its prompt
and the tokens it had generated (``s_i + g_i``) like a new prompt; one whose last token was
in flight is simply done (vLLM finishes it from that token).

``make_room`` is the mechanism; ``VICTIMS`` names the choices (one today).
"""

from __future__ import annotations

from collections.abc import Callable

from hybridsched.engine.request_state import QUEUED
from hybridsched.engine.schema import KVOverflowError


def latest_admitted(eng) -> tuple[str, int]:
    """vLLM's FCFS victim: ``(where, row)`` of the latest admitted request holding KV."""
    seq = eng.sh.seq
    best = None
    for where, rows in (
        ("running", eng.st.running),
        ("prefilling", eng.st.prefilling),
        ("lingering", eng.st.lingering),
    ):
        for i in reversed(rows) if where != "lingering" else rows:
            if best is None or seq[i] > seq[best[1]]:
                best = (where, i)
            if where != "lingering":
                break  # admission order: the last is the latest
    return best


VICTIMS: dict[str, Callable] = {"latest-admitted": latest_admitted}


def make_room(eng, chunks=(), victim: Callable = latest_admitted) -> None:
    """Preempt on client ``eng`` until its running requests' next step fits its blocks.

    The step takes the running batch's decode and the ``chunks`` ``(row, tokens)`` of rows
    being prefilled (``ClientEngine.step_need``).
    """
    st = eng.st
    while (st.running or st.prefilling or st.lingering) and (
        eng.kv.held + eng.step_need(chunks) > eng.cap
    ):
        where, i = victim(eng)
        if where == "running":
            evict(eng, i)
        elif where == "prefilling":
            evict_prefilling(eng, i)
        else:  # its last token is in flight: vLLM preempts it, and that token finishes it
            eng.inflight_preempted.append((eng.j, eng.k, eng.sh.ids[i]))
            eng.kv.release([i])


def evict(eng, i: int) -> None:
    """Running row ``i`` leaves client ``eng``'s batch for the head of its queue."""
    st, sh = eng.st, eng.sh
    if eng.kv.slots(sh.prompt0[i] + sh.output[i] - 1) > eng.cap:
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
    eng.kv.evict_running(i)
    sh.prompt[i] = sh.prompt0[i] + g
    sh.charge[i] = eng.kv.slots(sh.prompt[i])
    if sh.predicted_finish[i] > dc:
        eng.decoding_predicted -= 1
        # Drop its pending predicted-finish mark too: a stale one would count it
        # again if its recompute lands it on the same decode count.
        eng.pfin_at[sh.predicted_finish[i]].remove(i)
    sh.predicted_finish[i] = -1
    st.outstanding_tokens += sh.prompt[i]
    _requeue(eng, i, g, 0)


def evict_prefilling(eng, i: int) -> None:
    """Row ``i``, partly prefilled, gives back its blocks and waits at the head of the queue."""
    st, sh = eng.st, eng.sh
    done = sh.prefilled[i]
    del st.prefilling[i]
    eng.kv.evict_partial(i, done)
    eng.prefilled_sum -= done
    sh.prefilled[i] = 0
    st.outstanding_tokens += done
    _requeue(eng, i, sh.gen[i], done)


def _requeue(eng, i: int, generated: int, prefilled: int) -> None:
    st = eng.st
    eng.sh.where[i] = QUEUED
    st.queue.insert(0, i)
    eng.queue_rank.insert(0, -1)
    eng.evictions.append((eng.j, eng.k, eng.t, eng.sh.ids[i], generated, prefilled))
