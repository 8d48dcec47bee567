"""What a rule asks of the engine (actions) and the errors the engine raises.

The trace the engine writes has the columns of ``trace/schema.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


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


class PolicyError(RuntimeError):
    """A rule or router asked for something the cluster cannot do: a bug in it, not in the input."""


class KVOverflowError(ValueError):
    """Reservation admission with under-predicted lengths: a request outgrew its reservation.

    Also raised under on-demand admission when one request alone outgrows a client's KV
    memory (only possible when a router sent it there on a too-short prediction).
    """
