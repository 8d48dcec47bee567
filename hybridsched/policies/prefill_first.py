"""``prefill-first``: the vLLM-style baseline's online rule (docs/model.md section 7).

Whenever a slot is free and a request waits, prefill the longest head of the queue that
fits; otherwise decode."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridsched.engine.schema import DECODE, Action
from hybridsched.engine.state import ClientState, Decider
from hybridsched.instance import Instance
from hybridsched.policies.queue import QueueHead, queue_key


@dataclass(frozen=True)
class PrefillFirst:
    """The baseline's online rule: prefill whenever a slot is free and the head fits."""

    sort: str = "fcfs"
    seed: int = 0
    name: str = "prefill-first"

    def queue_key(self, instance: Instance) -> np.ndarray:
        return queue_key(instance, self.sort, self.seed)

    def start(self, instance: Instance, client: int) -> Decider:
        def decide(st: ClientState) -> Action:
            e = st.max_batch - len(st.running)
            if st.queue and e > 0:
                k = QueueHead(st, e).size(e, st.kv_limit - st.kv_charged)
                if k > 0:
                    return Action("prefill", tuple(st.queue[:k]))
            return DECODE

        return decide
