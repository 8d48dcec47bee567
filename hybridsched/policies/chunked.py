"""Chunked prefill: mixed iterations, a decode step plus prompt chunks within a token budget.

An extension beyond the paper: the vLLM / Sarathi-Serve way to hide prefills under the
decode step's weight read (docs/model.md section 13)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridsched.engine.schema import DECODE, Action
from hybridsched.engine.state import ClientState, Decider
from hybridsched.instance import Instance
from hybridsched.policies.queue import queue_key


@dataclass(frozen=True)
class ChunkedPrefill:
    """Chunked prefill (vLLM / Sarathi-style mixed iterations), an extension beyond the paper.

    Every iteration decodes the whole running batch and spends the rest of a token
    budget (each decode token counts one) on prompt chunks: first the partly prefilled
    requests, oldest first, then new requests from the head of the queue while slots and
    reserved memory allow (no skipping). A small budget keeps iterations near the
    memory-bound decode time, so prompts ride along with the weight read.

    Parameters
    ----------
    sort : queue order (``SORT_KEYS``).
    token_budget : tokens per iteration (decode + prompt); default the instance's
        prefill budget (2048), the budget every shipped policy shares.
    """

    sort: str = "fcfs"
    token_budget: int | None = None
    seed: int = 0
    name: str = "chunked-prefill"

    def __post_init__(self) -> None:
        if self.token_budget is not None and self.token_budget < 1:
            raise ValueError(f"token_budget must be >= 1, got {self.token_budget}")

    def queue_key(self, instance: Instance) -> np.ndarray:
        return queue_key(instance, self.sort, self.seed)

    def start(self, instance: Instance, client: int) -> Decider:
        budget = min(
            self.token_budget or instance.prefill_budget_tokens, instance.prefill_budget_tokens
        )

        def decide(st: ClientState) -> Action:
            if not st.queue and not st.prefilling:
                return DECODE  # nothing to chunk: the loops below would find no row
            left = budget - len(st.running)
            rows: list[int] = []
            toks: list[int] = []
            pre, prompt = st.prefilled, st.prompt
            kv_free = st.kv_limit - st.kv_charged
            for i in st.prefilling:
                if left <= 0:
                    break
                x = min(prompt[i] - pre[i], left)
                rows.append(i)
                toks.append(x)
                left -= x
                kv_free -= st.chunk_slots(i, x)
                st.plan(i, x)
            slots = st.free_slots
            # The watermark (on demand) applies once the client holds KV: after the first
            # admission onto an empty client (vLLM checks each admission in turn).
            empty = not st.kv_charged and not st.running and not st.prefilling
            for i in st.queue:
                if left <= 0 or slots <= 0:
                    break
                cost = st.admit_cost(i)  # its prompt's slots, less a prefix cache's hits
                if cost > kv_free:
                    break
                x = min(prompt[i] - st.cached_tokens(i), left)
                st.plan(i, x)
                rows.append(i)
                toks.append(x)
                left -= x
                slots -= 1
                kv_free -= cost
                if empty:
                    kv_free -= st.kv_watermark
                    empty = False
            if not rows:
                return DECODE
            return Action("mixed", tuple(rows), tuple(toks))

        return decide
