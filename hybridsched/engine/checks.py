"""Checks of an online rule's decision against a client's slots, memory and token budget.

A rule that asks for something the client cannot do gets a ``PolicyError`` naming the
rule, the client, the time and what is wrong (docs/model.md sections 2, 7 and 11). The
checks read the client's state (``ClientEngine``) and never change it.
"""

from __future__ import annotations

from hybridsched.engine.request_state import QUEUED
from hybridsched.engine.schema import KVOverflowError, PolicyError


def check_admit(eng, new, what: str, chunks=()) -> None:
    """``new`` rows may start: each waits in the queue once, slots and the KV limit allow."""
    st, sh = eng.st, eng.sh
    n = len(sh.where)
    for i in new:
        if not (isinstance(i, int) and 0 <= i < n) or sh.where[i] != QUEUED:
            raise PolicyError(eng.err(f"{what}: row {i} is not waiting in the queue"))
    if len(set(new)) != len(new):
        raise PolicyError(eng.err(f"{what} lists a row twice: {tuple(new)}"))
    if len(st.running) + len(st.prefilling) + len(new) > st.max_batch:
        raise PolicyError(
            eng.err(
                f"{what} of {len(new)} with {len(st.running)} running exceeds B={st.max_batch} slots"
            )
        )
    kv = sum(sh.charge[i] for i in new)
    # On demand: the slots held, what the running requests' step takes (their decode and
    # the chunks of rows being prefilled), then the new rows' whole prompts (vLLM's gate).
    charged = eng.kv.held + eng.step_need(chunks) if eng.on_demand else st.kv_reserved_tokens
    # Only admissions are held to the limit: decode growth of the running batch can pass
    # the watermark (preemption keeps it under M), and then a chunk of a request already
    # being prefilled still goes ahead.
    # A prefix cache checks each admission in turn against the free blocks (``client.py``).
    if new and not eng.kv.prefix and charged + kv > st.kv_limit:
        raise PolicyError(
            eng.err(
                f"{what} would take more than M={st.kv_limit} KV tokens"
                if not eng.on_demand
                else f"{what} would take more than M - watermark = {st.kv_limit} KV tokens"
            )
        )


def check_prefill(eng, P) -> int:
    """A prefill of rows ``P``: admissible and within the budget; its prompt tokens."""
    if not P:
        raise PolicyError(eng.err("prefill of no request"))
    check_admit(eng, P, "prefill")
    prompt = eng.sh.prompt
    s_sum = sum(prompt[i] for i in P)
    budget = eng.st.prefill_budget_tokens
    if s_sum > budget and len(P) > 1:
        raise PolicyError(eng.err(f"prefill of {s_sum} tokens exceeds the budget {budget}"))
    if not eng.on_demand:
        check_reserved_kv(eng, s_sum)
    return s_sum


def check_mixed_shape(eng, C, toks) -> None:
    if len(C) != len(toks):
        raise PolicyError(eng.err("mixed iteration: rows and tokens differ in length"))
    if len(set(C)) != len(C):
        raise PolicyError(eng.err(f"mixed iteration lists a row twice: {C}"))


def check_mixed(eng, C, toks, new, c_tok: int) -> None:
    """Chunks ``toks`` of rows ``C`` (``new`` of them start now): admissible and within budget."""
    st, sh = eng.st, eng.sh
    prefilling, prefilled, prompt = st.prefilling, sh.prefilled, sh.prompt
    check_admit(eng, new, "mixed iteration", zip(C, toks, strict=True))
    if any(i not in prefilling and sh.where[i] != QUEUED for i in C):
        raise PolicyError(eng.err("mixed iteration: a row is neither waiting nor being prefilled"))
    for i, x in zip(C, toks, strict=True):
        if x < 1 or prefilled[i] + x > prompt[i]:
            raise PolicyError(eng.err(f"a chunk of {x} tokens does not fit row {i}'s prompt"))
    if c_tok > st.prefill_budget_tokens:
        raise PolicyError(
            eng.err(f"chunks of {c_tok} tokens exceed the budget {st.prefill_budget_tokens}")
        )
    if not eng.on_demand:
        check_reserved_kv(eng, c_tok)


def check_reserved_kv(eng, extra: int) -> None:
    """Reservation admission: the KV the requests hold (plus ``extra``) stays within ``M``."""
    held = eng.context_sum + eng.prefilled_sum + extra
    if held > eng.M:
        raise KVOverflowError(
            f"client {eng.j} at t={eng.t:.6f}s: the requests hold {held} KV tokens, more "
            f"than M={eng.M}; predicted_output_tokens under-predict and the reservation was "
            "too small (use on-demand admission, which preempts)"
        )
