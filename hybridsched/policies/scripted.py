"""A rule that replays fixed per-client action lists: the exact MIP's schedule in the engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridsched.engine.schema import Action
from hybridsched.engine.state import ClientState, Decider
from hybridsched.instance import Instance


@dataclass(frozen=True)
class Scripted:
    """Replays fixed per-client action lists: ``("prefill", rows)`` or ``("decode", ())``."""

    actions: dict
    name: str = "scripted"

    def queue_key(self, instance: Instance) -> np.ndarray:
        return instance.arrival.astype(float)

    def start(self, instance: Instance, client: int) -> Decider:
        it = iter(self.actions.get(client, []))

        def decide(st: ClientState) -> Action:
            kind, rows = next(it, ("decode", ()))
            return Action(kind, tuple(int(r) for r in rows))

        return decide
