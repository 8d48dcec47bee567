"""The iteration-level simulator: the ground truth every policy is judged by.

``simulate(instance, assignment, rule)`` runs each client's iterations back to back
(docs/model.md section 2). The offline assignment says which client serves each
request; the online rule, asked at every iteration boundary, says what runs next. The
simulator executes the decision, advances the clock with the client's latency model
and appends one trace row. Metrics are computed from that trace only.

The trace is a DataFrame, one row per iteration (schema: ``TRACE_COLUMNS``):

=====================  ====================================================================
``client``             client index ``j``
``iteration``          index of the iteration on its client (0, 1, ...)
``kind``               ``"prefill"`` or ``"decode"``
``start_s``/``end_s``  wall-clock interval; iterations of a client never overlap
``duration_s``         ``end_s - start_s``, from the latency model
``num_requests``       requests processed: ``|P|`` for a prefill, ``|D|`` for a decode
``num_running``        slots held during the iteration: ``|D| + |P|`` or ``|D|``
``prefill_tokens``     ``sum_{i in P} s_i`` (0 for a decode)
``context_tokens``     ``sum_{i in D} c_i`` for a decode (0 for a prefill)
``kv_reserved_tokens`` reservations ``sum (s_i + ô_i)`` of the requests holding slots
``kv_used_tokens``     KV tokens held: contexts of ``D`` plus the prompts being prefilled
``request_ids``        tuple of the ``request_id`` values processed (``P`` or ``D``)
``chunk_ids``          mixed iterations: ids whose prompt chunk is processed (else empty)
``chunk_tokens``       mixed iterations: the chunk sizes, parallel to ``chunk_ids``
=====================  ====================================================================

A ``"mixed"`` iteration (chunked prefill, docs/model.md section 8) is a decode step of
the whole running batch ``D`` (``request_ids``; possibly empty) plus prompt chunks of
waiting or partly prefilled requests (``chunk_ids``/``chunk_tokens``). A request holds
its slot and reservation from its first chunk; it emits its first token at the end of
the iteration that completes its prompt and decodes from the next decoding iteration
on. For mixed rows ``num_requests = |D| + |chunks|`` and ``prefill_tokens`` is the chunk
total. Arrivals (``arrival_s > 0``) are honoured: a request joins its client's queue only
once it has arrived.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from hybridsched.instance import Instance

TRACE_COLUMNS = [
    "client",
    "iteration",
    "kind",
    "start_s",
    "end_s",
    "duration_s",
    "num_requests",
    "num_running",
    "prefill_tokens",
    "context_tokens",
    "kv_reserved_tokens",
    "kv_used_tokens",
    "request_ids",
    "chunk_ids",
    "chunk_tokens",
]


@dataclass(frozen=True)
class Action:
    """What a client runs next.

    ``"decode"``: a decode step of the whole running batch. ``"prefill"``: whole prompts
    of ``rows``. ``"mixed"``: a decode step of the running batch (if any) plus chunks of
    ``tokens[k]`` prompt tokens of ``rows[k]`` (waiting or partly prefilled requests).
    """

    kind: str
    rows: tuple[int, ...] = ()
    tokens: tuple[int, ...] = ()


DECODE = Action("decode")


class ClientState:
    """The view an online rule gets at an iteration boundary. Read it; never mutate it.

    ``running`` maps the rows in the running batch ``D`` to their request ids, in
    admission order; ``prefilling`` maps partly prefilled rows (mixed iterations only) to
    their ids, and ``prefilled[i]`` counts the prompt tokens of row ``i`` processed so
    far; ``queue`` lists the waiting rows, head first. ``decode_count`` counts
    the client's decode iterations so far and ``predicted_finish[i]`` is the count at
    which running row ``i`` is predicted to leave, so its predicted remaining decode
    steps are ``max(1, predicted_finish[i] - decode_count)`` (``remaining``). Per-request
    lists are plain Python lists: rules run in the hot loop and index them one at a time.
    """

    __slots__ = (
        "client",
        "time_s",
        "running",
        "prefilling",
        "prefilled",
        "queue",
        "decode_count",
        "predicted_finish",
        "kv_reserved_tokens",
        "max_batch",
        "kv_capacity_tokens",
        "prefill_budget_tokens",
        "latency",
        "prompt",
        "predicted",
        "reservation",
    )

    @property
    def free_slots(self) -> int:
        return self.max_batch - len(self.running) - len(self.prefilling)

    @property
    def kv_free_tokens(self) -> int:
        return self.kv_capacity_tokens - self.kv_reserved_tokens

    def remaining(self, row: int) -> int:
        return max(1, self.predicted_finish[row] - self.decode_count)


Decider = Callable[[ClientState], Action]


class OnlineRule(Protocol):
    """The online stage: how a client's queue is ordered, and what runs at each boundary.

    ``queue_key`` gives one sort key per request (smaller first; ties by row, i.e. by
    arrival order). ``start`` is called once per client per simulation and returns the
    decision function; per-client precomputation (such as the Lagrange multiplier) goes
    there, so a rule object carries no state between runs.
    """

    name: str

    def queue_key(self, instance: Instance) -> np.ndarray: ...

    def start(self, instance: Instance, client: int) -> Decider: ...


class PolicyError(RuntimeError):
    """A rule asked for something the client cannot do: a bug in the rule, not in the input."""


class KVOverflowError(ValueError):
    """Under-predicted output lengths made the KV reservation too small (an unbuilt extension)."""


def _check_assignment(instance: Instance, assignment) -> np.ndarray:
    a = np.asarray(assignment)
    n, m = instance.num_requests, instance.num_clients
    if a.shape != (n,):
        raise ValueError(f"assignment: expected one client per request ({n}), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"assignment: client indices must be integers, got dtype {a.dtype}")
    bad = (a < 0) | (a >= m)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"assignment: request row {pos} goes to client {a[pos]}, but clients are 0..{m - 1}"
        )
    for j, c in enumerate(instance.clients):
        rows = np.flatnonzero(a == j)
        too_big = instance.reservation[rows] > c.kv_capacity_tokens
        if too_big.any():
            i = int(rows[np.flatnonzero(too_big)[0]])
            raise ValueError(
                f"assignment: request {instance.requests['request_id'].iloc[i]} reserves {instance.reservation[i]} "
                f"KV tokens, more than client {j} holds ({c.kv_capacity_tokens})"
            )
    return a.astype(np.int64)


def simulate(instance: Instance, assignment, rule: OnlineRule, check: bool = False) -> pd.DataFrame:
    """Run every client's iteration loop and return the trace (module docstring).

    Parameters
    ----------
    instance : the requests and clients.
    assignment : client index per request row (the offline stage's output).
    rule : the online stage (``OnlineRule``).
    check : also assert every invariant of docs/model.md section 9 on the result.

    Raises
    ------
    ValueError : a bad assignment (wrong length, unknown client, a request too large
        for its client's KV memory).
    PolicyError : the rule chose an infeasible iteration.
    KVOverflowError : with ``predicted_output_tokens < output_tokens`` the running batch
        outgrew the KV memory; handling that (preempt-and-recompute) is not built.
    """
    a = _check_assignment(instance, assignment)
    keys = np.asarray(rule.queue_key(instance), dtype=float)
    if keys.shape != (instance.num_requests,):
        raise PolicyError(f"rule {rule.name!r}: queue_key must give one key per request")
    order = np.lexsort((np.arange(instance.num_requests), keys))  # key, then row
    columns: dict[str, list] = {c: [] for c in TRACE_COLUMNS}
    shared = {
        "prompt": instance.prompt.tolist(),
        "predicted": instance.predicted.tolist(),
        "output": instance.output.tolist(),
        "reservation": instance.reservation.tolist(),
        "arrival": instance.arrival.tolist(),
        "ids": instance.requests["request_id"].tolist(),
        "rank": np.argsort(order).tolist(),  # queue position key for arrivals
    }
    for j in range(instance.num_clients):
        rows_j = order[a[order] == j].tolist()  # this client's requests in queue order
        _run_client(instance, j, rows_j, rule.start(instance, j), shared, columns, rule.name)
    trace = pd.DataFrame(columns)
    trace = trace.astype(
        {
            "client": np.int64,
            "iteration": np.int64,
            "num_requests": np.int64,
            "num_running": np.int64,
            "prefill_tokens": np.int64,
            "context_tokens": np.int64,
            "kv_reserved_tokens": np.int64,
            "kv_used_tokens": np.int64,
            "start_s": float,
            "end_s": float,
            "duration_s": float,
        }
    )
    trace.attrs["rule"] = rule.name
    if check:
        from hybridsched.trace import check_trace

        check_trace(trace, instance, assignment=a)
    return trace


def _run_client(
    instance: Instance,
    j: int,
    rows: list[int],
    decide: Decider,
    shared: dict,
    out: dict,
    rule_name: str,
) -> None:
    client = instance.clients[j]
    lat = client.latency
    prompt, output, reservation = shared["prompt"], shared["output"], shared["reservation"]
    arrival, ids, rank = shared["arrival"], shared["ids"], shared["rank"]
    B, M, budget = client.max_batch, client.kv_capacity_tokens, instance.prefill_budget_tokens

    # Requests not yet arrived wait in `pending` (by arrival, then queue order).
    pending = sorted(rows, key=lambda i: (arrival[i], rank[i]))
    pending.reverse()  # pop from the end
    predicted = shared["predicted"]
    predicted_finish = [0] * len(prompt)

    st = ClientState()
    st.client, st.time_s, st.running, st.queue = j, 0.0, {}, []
    st.prefilling, st.prefilled = {}, [0] * len(prompt)
    prefilling, prefilled = st.prefilling, st.prefilled
    prefilled_sum = 0  # KV tokens held by partly prefilled requests
    st.decode_count, st.predicted_finish, st.kv_reserved_tokens = 0, predicted_finish, 0
    st.max_batch, st.kv_capacity_tokens, st.prefill_budget_tokens, st.latency = B, M, budget, lat
    st.prompt, st.predicted, st.reservation = prompt, predicted, reservation
    running, queue = st.running, st.queue
    queue_rank: list[int] = []  # rank of each queued row, kept parallel to `queue` for bisect

    finish_at: dict[int, list[int]] = {}  # decode count at which rows leave
    context_sum = 0  # sum over D of s_i + generated_i: the context of D's next decode step

    def check_kv(t: float) -> None:
        if context_sum > M:
            raise KVOverflowError(
                f"client {j} at t={t:.6f}s: the running batch holds {context_sum} KV tokens, more than "
                f"M={M}; predicted_output_tokens under-predict and the reservation was too small "
                "(preempt-and-recompute is not built)"
            )

    def decode_step(n: int) -> None:
        """Every running request emits a token; those that reach o_i leave."""
        nonlocal context_sum
        st.decode_count += 1
        context_sum += n
        for i in finish_at.pop(st.decode_count, ()):
            del running[i]
            context_sum -= prompt[i] + output[i]
            st.kv_reserved_tokens -= reservation[i]

    def leave_queue(rows) -> None:
        taken = set(rows)
        keep = [x for x in range(len(queue)) if queue[x] not in taken]
        queue[:] = [queue[x] for x in keep]
        queue_rank[:] = [queue_rank[x] for x in keep]

    def first_token(i: int) -> None:
        """Row i's prompt is done: it leaves (o_i = 1) or joins the running batch."""
        nonlocal context_sum
        if output[i] == 1:
            st.kv_reserved_tokens -= reservation[i]
        else:
            running[i] = ids[i]
            context_sum += prompt[i] + 1
            finish_at.setdefault(st.decode_count + output[i] - 1, []).append(i)
            predicted_finish[i] = st.decode_count + predicted[i] - 1

    t = 0.0
    k = 0
    col = [out[c] for c in TRACE_COLUMNS]
    (
        c_client,
        c_iter,
        c_kind,
        c_start,
        c_end,
        c_dur,
        c_nreq,
        c_nrun,
        c_pt,
        c_ct,
        c_kvr,
        c_kvu,
        c_ids,
        c_cids,
        c_ctok,
    ) = col

    while True:
        while pending and arrival[pending[-1]] <= t:
            i = pending.pop()
            pos = bisect.bisect(queue_rank, rank[i])
            queue_rank.insert(pos, rank[i])
            queue.insert(pos, i)
        if not running and not queue and not prefilling:
            if not pending:
                break
            t = max(t, arrival[pending[-1]])
            continue
        st.time_s = t
        action = decide(st)

        if action.kind == "decode":
            n = len(running)
            if n == 0:
                raise PolicyError(
                    f"rule {rule_name!r} on client {j} at t={t:.6f}s: decode with an empty running batch"
                )
            check_kv(t)
            dur = float(lat.decode_time(n, context_sum))
            kv_reserved = st.kv_reserved_tokens  # held during the step, before departures
            c_kind.append("decode")
            c_nreq.append(n)
            c_nrun.append(n + len(prefilling))
            c_pt.append(0)
            c_ct.append(context_sum)
            c_kvu.append(context_sum + prefilled_sum)
            c_ids.append(tuple(running.values()))
            c_cids.append(())
            c_ctok.append(())
            decode_step(n)
        elif action.kind == "prefill":
            P = action.rows
            if not P:
                raise PolicyError(
                    f"rule {rule_name!r} on client {j} at t={t:.6f}s: prefill of no request"
                )
            if len(set(P)) != len(P):
                raise PolicyError(
                    f"rule {rule_name!r} on client {j}: prefill lists a row twice: {P}"
                )
            waiting = set(queue)
            for i in P:
                if i not in waiting:
                    raise PolicyError(
                        f"rule {rule_name!r} on client {j}: row {i} is not waiting in the queue"
                    )
            s_sum = sum(prompt[i] for i in P)
            res_sum = sum(reservation[i] for i in P)
            if len(running) + len(prefilling) + len(P) > B:
                raise PolicyError(
                    f"rule {rule_name!r} on client {j}: prefill of {len(P)} with {len(running)} running exceeds B={B}"
                )
            if st.kv_reserved_tokens + res_sum > M:
                raise PolicyError(
                    f"rule {rule_name!r} on client {j}: prefill would reserve more than M={M} KV tokens"
                )
            if s_sum > budget and len(P) > 1:
                raise PolicyError(
                    f"rule {rule_name!r} on client {j}: prefill of {s_sum} tokens exceeds the budget {budget}"
                )
            dur = float(lat.prefill_time(s_sum, sum(prompt[i] ** 2 for i in P)))
            c_kind.append("prefill")
            c_nreq.append(len(P))
            c_nrun.append(len(running) + len(prefilling) + len(P))
            c_pt.append(s_sum)
            c_ct.append(0)
            c_kvu.append(context_sum + prefilled_sum + s_sum)
            c_ids.append(tuple(ids[i] for i in P))
            c_cids.append(())
            c_ctok.append(())
            st.kv_reserved_tokens += res_sum
            kv_reserved = st.kv_reserved_tokens
            leave_queue(P)
            for i in P:
                first_token(i)
        elif action.kind == "mixed":
            C, toks = action.rows, action.tokens
            n = len(running)
            err = f"rule {rule_name!r} on client {j} at t={t:.6f}s: mixed iteration"
            if len(C) != len(toks):
                raise PolicyError(f"{err}: rows and tokens differ in length")
            if not C and n == 0:
                raise PolicyError(f"{err} with no chunk and an empty running batch")
            if len(set(C)) != len(C):
                raise PolicyError(f"{err} lists a row twice: {C}")
            waiting = set(queue)
            new = [i for i in C if i not in prefilling]
            for i in new:
                if i not in waiting:
                    raise PolicyError(f"{err}: row {i} is neither waiting nor being prefilled")
            for i, x in zip(C, toks, strict=True):
                if x < 1 or prefilled[i] + x > prompt[i]:
                    raise PolicyError(f"{err}: a chunk of {x} tokens does not fit row {i}'s prompt")
            res_new = sum(reservation[i] for i in new)
            if n + len(prefilling) + len(new) > B:
                raise PolicyError(f"{err} holds more than B={B} slots")
            if st.kv_reserved_tokens + res_new > M:
                raise PolicyError(f"{err} would reserve more than M={M} KV tokens")
            c_tok = sum(toks)
            if c_tok > budget:
                raise PolicyError(f"{err}: chunks of {c_tok} tokens exceed the budget {budget}")
            check_kv(t)
            sq = sum(
                (prefilled[i] + x) ** 2 - prefilled[i] ** 2 for i, x in zip(C, toks, strict=True)
            )
            prefix = sum(prefilled[i] for i in C)
            dur = float(lat.mixed_time(n, context_sum, c_tok, sq, prefix))
            if new:
                leave_queue(new)
                for i in new:
                    prefilling[i] = ids[i]
            st.kv_reserved_tokens += res_new
            kv_reserved = st.kv_reserved_tokens
            prefilled_sum += c_tok
            c_kind.append("mixed")
            c_nreq.append(n + len(C))
            c_nrun.append(n + len(prefilling))
            c_pt.append(c_tok)
            c_ct.append(context_sum if n else 0)
            c_kvu.append(context_sum + prefilled_sum)
            c_ids.append(tuple(running.values()))
            c_cids.append(tuple(ids[i] for i in C))
            c_ctok.append(tuple(int(x) for x in toks))
            if n:
                decode_step(n)
            for i, x in zip(C, toks, strict=True):
                prefilled[i] += x
                if prefilled[i] < prompt[i]:
                    continue
                del prefilling[i]  # prompt complete: first token at the end of this iteration
                prefilled_sum -= prompt[i]
                first_token(i)
        else:
            raise PolicyError(
                f"rule {rule_name!r} on client {j}: unknown action kind {action.kind!r}"
            )

        c_client.append(j)
        c_iter.append(k)
        c_start.append(t)
        c_end.append(t + dur)
        c_dur.append(dur)
        c_kvr.append(kv_reserved)
        t += dur
        k += 1
