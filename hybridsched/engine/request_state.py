"""Per-request state every client reads and updates: a request lives on one client at a time.

The lists are plain Python lists indexed by instance row (the engine's hot loop reads
them one at a time): ``gen[i]`` tokens emitted so far, ``where[i]`` the request's state
(``NEW``, ``QUEUED``, ``PREFILLING``, ``RUNNING``, ``DONE``), ``prompt[i]`` the tokens
its next prefill processes (``s_i``, or ``s_i + g_i`` after an eviction),
``charge[i]`` what admitting it costs (docs/model.md section 11), and on demand
``held[i]`` the KV token slots it holds (whole blocks) and ``seq[i]`` when it was admitted
(the preemption victim is the latest admitted); ``keys`` the block ids of a prefix cache.
"""

from __future__ import annotations

from hybridsched.engine.admission import Admission
from hybridsched.workloads.prefixes import BlockKeys, prompt_segments

# Request states (``Shared.where``).
NEW, QUEUED, PREFILLING, RUNNING, DONE = 0, 1, 2, 3, 4


class Shared:
    """Per-request lists every client reads and updates (module docstring)."""

    def __init__(self, instance, rank: list[int], admission: Admission):
        self.prompt0 = instance.prompt.tolist()
        self.prompt = list(self.prompt0)  # tokens the next prefill processes
        self.output = instance.output.tolist()
        self.predicted = instance.predicted.tolist()
        self.reservation = instance.reservation.tolist()
        self.charge = (
            [admission.slots(p) for p in self.prompt0]
            if admission.on_demand
            else list(self.reservation)
        )
        self.ids = instance.requests["request_id"].tolist()
        self.rank = rank
        n = len(self.prompt0)
        self.gen = [0] * n
        self.where = [NEW] * n
        self.fin_step = [0] * n
        self.predicted_finish = [0] * n
        self.prefilled = [0] * n
        self.held = [0] * n
        self.seq = [0] * n
        self.keys = None  # block ids for a prefix cache (``workloads/prefixes.py``)
        if admission.on_demand and admission.prefix_caching:
            segments = prompt_segments(instance.requests)
            if segments is not None:
                self.keys = BlockKeys(segments, self.ids, self.output, admission.block_size)
