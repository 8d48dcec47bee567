"""On-demand KV memory of one client, in whole blocks counted as token slots (vLLM's).

A request holding ``c`` computed tokens holds ``ceil(c / b)`` blocks of ``b`` tokens
(``b`` = the block size; ``engine/admission.py``), i.e. ``b * ceil(c / b)`` token slots.
A running request with ``g`` tokens emitted holds the KV of ``s_i + g - 1`` tokens (its
last token's KV is computed by its next decode step), so it takes a new block in the decode
step where that count is a multiple of ``b``: every ``b`` steps, at steps fixed when it
joins the running batch. The ledger keeps those steps (``grow``), the slots held by the
client's requests (``held``), and the rows that emitted their last token but keep their slot
and blocks one more iteration under asynchronous scheduling (``lingering``).
"""

from __future__ import annotations


class BlockLedger:
    """The slots one client's requests hold and what its next decode step takes (module docstring)."""

    __slots__ = ("b", "held", "grow", "grow_at", "prompt0", "gen", "lingering", "linger_slots")
    prefix = False  # no prefix cache (``prefix_cache.PrefixKV`` has one)

    def __init__(self, block_size: int, sh):
        self.b = block_size
        self.held = 0  # slots held by running, prefilling and lingering rows
        self.grow: dict[int, list[int]] = {}  # decode count -> rows taking a block in it
        self.grow_at = {}  # row -> its entry in ``grow``
        self.prompt0, self.gen = sh.prompt0, sh.gen
        self.lingering: dict[int, int] = {}  # row -> request id (the rule's view)
        self.linger_slots: dict[int, int] = {}  # row -> slots it still holds

    def slots(self, tokens: int) -> int:
        b = self.b
        return -(-tokens // b) * b

    def decode_need(self, n_running: int, dc: int) -> int:
        """Slots the next decode step (decode count ``dc + 1``) takes for the running batch."""
        if self.b == 1:
            return n_running
        rows = self.grow.get(dc + 1)
        return self.b * len(rows) if rows else 0

    def join(self, i: int, dc: int) -> None:
        """Row ``i`` joins the running batch at decode count ``dc`` (its prompt's KV held)."""
        if self.b > 1:
            kv = self.prompt0[i] + self.gen[i] - 1
            at = dc + 1 + (-kv) % self.b
            self.grow.setdefault(at, []).append(i)
            self.grow_at[i] = at

    def decode(self, dc: int, n_running: int) -> None:
        """The decode step that made the decode count ``dc``: its rows take their blocks."""
        if self.b == 1:
            self.held += n_running
            return
        rows = self.grow.pop(dc, None)
        if rows:
            b, at = self.b, dc + self.b
            self.held += b * len(rows)
            nxt = self.grow.setdefault(at, [])
            nxt.extend(rows)
            for i in rows:
                self.grow_at[i] = at

    def running_slots(self, i: int) -> int:
        """Slots running row ``i`` holds now."""
        return self.slots(self.prompt0[i] + self.gen[i] - 1)

    def stop_running(self, i: int) -> int:
        """Row ``i`` leaves the running batch: it takes no more blocks; the slots it holds."""
        if self.b > 1:
            self.grow[self.grow_at.pop(i)].remove(i)
        return self.running_slots(i)

    def chunk_slots(self, i: int, done: int, tokens: int) -> int:
        """Slots ``tokens`` more prompt tokens of row ``i`` (``done`` so far) take."""
        return self.slots(done + tokens) - self.slots(done)

    def chunk(self, i: int, done: int, tokens: int) -> None:
        """Row ``i`` computes ``tokens`` more prompt tokens (a chunk, or a whole prompt)."""
        self.held += self.chunk_slots(i, done, tokens)

    def finish(self, i: int, rid: int, slots: int, linger: bool) -> None:
        """Row ``i`` emitted its last token holding ``slots``: free now, or one iteration later."""
        if linger:
            self.lingering[i] = rid
            self.linger_slots[i] = slots
        else:
            self.held -= slots

    def evict_running(self, i: int) -> None:
        """Running row ``i`` (``gen`` already its tokens) gives back its blocks."""
        self.held -= self.stop_running(i)

    def evict_partial(self, i: int, done: int) -> None:
        """Row ``i``, ``done`` prompt tokens into its (re)prefill, gives back its blocks."""
        self.held -= self.slots(done)

    def release(self, rows) -> None:
        """Lingering ``rows`` give back their slot and blocks (those still lingering)."""
        for i in rows:
            if self.lingering.pop(i, None) is not None:
                self.held -= self.linger_slots.pop(i)

    # A prefix cache (``prefix_cache.py``) plans admissions against cached blocks; without
    # one a request is charged its whole prompt and hits nothing.
    def begin_decision(self, running, dc: int) -> None:
        pass

    def admit_cost(self, i: int, tokens: int) -> int:
        return self.slots(tokens)

    def hit_tokens(self, i: int) -> int:
        return 0

    def plan(self, i: int, done: int, tokens: int) -> None:
        pass

    def admit(self, i: int, limit: int) -> int:
        return 0

    def step_running(self, chunks) -> None:
        pass  # blocks are taken in ``decode`` and ``chunk``
