"""A client's iteration state as the online rule sees it, and the rule protocol.

The engine owns one ``ClientState`` per client and updates it in place; a rule reads it
at each iteration boundary and never mutates it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from hybridsched.engine.schema import Action

if TYPE_CHECKING:
    from hybridsched.instance import Instance


class ClientState:
    """The view an online rule gets at an iteration boundary. Read it; never mutate it.

    ``running`` maps the rows in the running batch ``D`` to their request ids, in
    admission order; ``prefilling`` maps partly prefilled rows (mixed iterations only) to
    their ids, and ``prefilled[i]`` counts the prompt tokens of row ``i`` processed so
    far; ``queue`` lists the waiting rows, head first (evicted requests at the head).
    ``decode_count`` counts the client's decode iterations so far and
    ``predicted_finish[i]`` is the count at which running row ``i`` is predicted to
    leave, so its predicted remaining decode steps are
    ``max(1, predicted_finish[i] - decode_count)`` (``remaining``).

    Admission (``admission``: ``"reservation"`` or ``"on-demand"``) is priced in one
    currency: a request ``i`` costs ``charge[i]`` KV tokens to admit, ``kv_charged``
    tokens are taken, and ``kv_limit`` may be taken. Under reservation admission
    ``charge[i] = s_i + ô_i``, ``kv_charged`` is the reserved total and ``kv_limit = M``
    (the paper's rule); under on-demand admission (vLLM's, in whole blocks counted as
    token slots: ``engine/admission.py``) ``charge[i]`` is the slots of its whole prompt,
    ``kv_charged`` the slots held plus those the running requests' next decode takes, and
    ``kv_limit = M`` on an empty client, ``M - watermark`` otherwise; ``chunk_slots(i, x)``
    is what a chunk of ``x`` tokens of a partly prefilled row takes now (0 under
    reservations). ``lingering`` maps rows that emitted their last token but keep their
    slot and KV one more iteration (asynchronous scheduling) to their ids.
    ``prompt[i]`` is the number of tokens row ``i``'s (next) prefill processes: ``s_i``,
    or ``s_i + g_i`` after an eviction.
    ``reservation[i] = s_i + ô_i`` is what a predicted departure frees in either mode.
    Per-request lists are plain Python lists: rules run in the hot loop and index them
    one at a time.
    """

    __slots__ = (
        "client",
        "time_s",
        "running",
        "prefilling",
        "prefilled",
        "lingering",
        "block_size",
        "kv_watermark",
        "kv",
        "queue",
        "decode_count",
        "predicted_finish",
        "kv_reserved_tokens",
        "kv_used_tokens",
        "kv_charged",
        "kv_limit",
        "charge",
        "admission",
        "max_batch",
        "kv_capacity_tokens",
        "prefill_budget_tokens",
        "latency",
        "prompt",
        "predicted",
        "reservation",
        "outstanding_tokens",
        "idle",
    )

    @property
    def free_slots(self) -> int:
        return self.max_batch - len(self.running) - len(self.prefilling) - len(self.lingering)

    def chunk_slots(self, row: int, tokens: int) -> int:
        """KV token slots a chunk of ``tokens`` of partly prefilled ``row`` takes now."""
        if self.block_size == 0:  # reservation admission: reserved at admission
            return 0
        return self.kv.chunk_slots(row, self.prefilled[row], tokens)

    def admit_cost(self, row: int) -> int:
        """What admitting queued ``row`` takes now: ``charge[row]``, less what a prefix cache
        already holds of its prompt (on demand)."""
        if self.block_size == 0:
            return self.charge[row]
        return self.kv.admit_cost(row, self.prompt[row])

    def cached_tokens(self, row: int) -> int:
        """Prompt tokens of queued ``row`` a prefix cache holds (0 without one)."""
        return self.kv.hit_tokens(row) if self.block_size else 0

    def plan(self, row: int, tokens: int) -> None:
        """A rule that chunks ``tokens`` more of ``row``'s prompt in this decision says so,
        so that a prefix cache shows the requests after it what this one will hold."""
        if self.block_size:
            self.kv.plan(row, self.prefilled[row], tokens)

    @property
    def kv_free_tokens(self) -> int:
        """KV tokens the admission rule still allows to take."""
        return self.kv_limit - self.kv_charged

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
