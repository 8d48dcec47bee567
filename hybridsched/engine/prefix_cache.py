"""vLLM's automatic prefix cache on one client: blocks shared by hash, kept until evicted.

As vLLM 0.33 (``docs/vllm_scheduler.md`` section 6): every full block of a request's tokens
(prompt, then output) has a hash chained from its first token, so two requests' blocks are
the same exactly when their tokens agree up to that block's end (``block_keys``: chain ids
from ``workloads/prefixes.py``'s segments). A block is registered under its hash as soon as
the tokens that fill it are scheduled. A request admitted from the queue reuses the longest
run of registered blocks its prompt starts with, at most ``(T - 1) // b`` of them (its last
token is always computed), and computes only the rest. Freed blocks keep their hash: they go
to the tail of the free queue (least recently used first out) and stay reusable until a new
allocation takes them from the head; blocks without a hash go to the head. Admission needs
the whole prompt's blocks free, less the hits, plus the hits that sit in the free queue.

``PrefixKV`` keeps one client's pool with the interface of ``kv.BlockLedger`` (what the
engine calls) plus the planning a rule does before the engine executes its decision: the
blocks this step's running requests will register, and those of the requests a rule admits
before the next one in the same decision (vLLM registers at scheduling time).
"""

from __future__ import annotations

from collections import OrderedDict


class Block:
    __slots__ = ("id", "ref", "hash")

    def __init__(self, i: int) -> None:
        self.id, self.ref, self.hash = i, 0, None


class BlockPool:
    """vLLM's ``BlockPool``: a free queue (head: next to reuse) and hash -> blocks."""

    def __init__(self, num_blocks: int) -> None:
        self.free_q: OrderedDict[int, Block] = OrderedDict((i, Block(i)) for i in range(num_blocks))
        self.cached: dict[int, OrderedDict[int, Block]] = {}

    def num_free(self) -> int:
        return len(self.free_q)

    def lookup(self, h: int) -> Block | None:
        d = self.cached.get(h)
        return next(iter(d.values())) if d else None

    def get_new_blocks(self, n: int) -> list[Block]:
        out = []
        for _ in range(n):
            _, b = self.free_q.popitem(last=False)
            if b.hash is not None:  # reused: its cached content is gone
                d = self.cached[b.hash]
                del d[b.id]
                if not d:
                    del self.cached[b.hash]
                b.hash = None
            b.ref = 1
            out.append(b)
        return out

    def touch(self, blocks: list[Block]) -> None:
        for b in blocks:
            if b.ref == 0:
                del self.free_q[b.id]
            b.ref += 1

    def free_blocks(self, ordered: list[Block]) -> None:
        first, last = [], []
        for b in ordered:
            b.ref -= 1
            if b.ref == 0:
                (first if b.hash is None else last).append(b)
        for b in reversed(first):  # without a hash: to the head, in order
            self.free_q[b.id] = b
            self.free_q.move_to_end(b.id, last=False)
        for b in last:  # with a hash: to the tail (least recently used first out)
            self.free_q[b.id] = b

    def insert(self, h: int, b: Block) -> None:
        if b.hash == h or b.id in self.cached.get(h, ()):
            return
        b.hash = h
        self.cached.setdefault(h, OrderedDict())[b.id] = b


class PrefixKV:
    """One client's prefix-cached KV, in token slots of whole blocks (module docstring)."""

    prefix = True

    def __init__(self, block_size: int, num_blocks: int, sh, async_scheduling: bool, running):
        self.b, self.N, self.sh, self.keys = block_size, num_blocks, sh, sh.keys
        self.async_, self.running = async_scheduling, running
        self.pool = BlockPool(num_blocks)
        self.blocks: dict[int, list[Block]] = {}
        self.computed: dict[int, int] = {}  # KV tokens computed per row holding blocks
        self.ncached: dict[int, int] = {}  # blocks of a row registered so far
        self.lingering: dict[int, int] = {}
        self.linger_slots: dict[int, int] = {}  # the interface of kv.BlockLedger
        self.planned: set[int] = set()
        self.hits: dict[int, int] = {}  # this decision's hit tokens per queued row
        self._dc, self._planned_for = 0, None

    # --- what the engine reads ----------------------------------------------------------
    @property
    def held(self) -> int:
        return (self.N - self.pool.num_free()) * self.b

    def slots(self, tokens: int) -> int:
        b = self.b
        return -(-tokens // b) * b

    def decode_need(self, n_running: int, dc: int) -> int:
        """Slots the running rows' next decode takes: one block each whose KV fills its last."""
        return self.b * sum(1 for i in self.running if self.computed[i] % self.b == 0)

    def chunk_slots(self, i: int, done: int, tokens: int) -> int:
        have = len(self.blocks.get(i, ()))
        return max(0, -(-(done + tokens) // self.b) - have) * self.b

    # --- what the engine does -----------------------------------------------------------
    def step_running(self, chunks) -> None:
        """Before admissions: the running rows' decode and the continuing chunks take their
        blocks and register what they fill (vLLM's order)."""
        b, comp, ncached, blocks = self.b, self.computed, self.ncached, self.blocks
        known_add = 0 if self.async_ else 1  # as prompt_known
        for i in self.running:  # each decodes one token: the hot path of _grow
            c = comp[i]
            comp[i] = c + 1
            if c % b == 0:  # its KV fills its last block: it takes one more
                blocks[i] += self.pool.get_new_blocks(1)
            if (c + known_add) // b > ncached.get(i, 0):
                self._register(i, c + known_add)
        for i, x in chunks:
            self._grow(i, self.computed[i] + x, self.sh.prompt[i])

    def chunk(self, i: int, done: int, tokens: int) -> None:
        if self.computed.get(i, 0) < done + tokens:
            self._grow(i, done + tokens, self.sh.prompt[i])

    def admit(self, i: int, limit: int) -> int:
        """Row ``i`` leaves the queue: it takes its cached blocks; the prompt tokens they hold,
        or -1 when its prompt's blocks (less the hits) would pass ``limit`` slots (vLLM's gate)."""
        hit = self._hit_blocks(i, real=True)
        evictable = sum(1 for b in hit if b.ref == 0)
        if self.held + (-(-self.sh.prompt[i] // self.b) - len(hit) + evictable) * self.b > limit:
            return -1
        self.pool.touch(hit)
        self.blocks[i], self.ncached[i] = list(hit), len(hit)
        self.computed[i] = len(hit) * self.b
        return len(hit) * self.b

    def join(self, i: int, dc: int) -> None:
        pass  # a row keeps its blocks and counts from prefill to decode

    def decode(self, dc: int, n_running: int) -> None:
        pass  # done in step_running, before admissions

    def stop_running(self, i: int) -> int:
        return self.slots(self.computed.get(i, 0))

    def finish(self, i: int, rid: int, slots: int, linger: bool) -> None:
        if linger:
            self.lingering[i] = rid
            self.linger_slots[i] = slots
        else:
            self._free(i)

    def evict_running(self, i: int) -> None:
        self._free(i)

    def evict_partial(self, i: int, done: int) -> None:
        self._free(i)

    def release(self, rows) -> None:
        for i in rows:
            if self.lingering.pop(i, None) is not None:
                self.linger_slots.pop(i)
                self._register(i, self.computed[i])  # its last token's output is back
                self._free(i)

    # --- what a rule plans ----------------------------------------------------------------
    # vLLM looks a request's prefix up after the step's earlier requests took their blocks:
    # a cached free block that one of them takes from the free queue's head is gone.
    def begin_decision(self, running, dc: int) -> None:
        """A new decision: its planning starts when a rule first asks (``_planning``)."""
        self._dc, self._planned_for = dc, None

    def _planning(self) -> None:
        """This decision's plan, made once on the rule's first question: the blocks the
        running rows' decode will take and register (their registered ones are in the pool)."""
        if self._planned_for is not None:
            return
        self._planned_for = self._dc
        self.planned.clear()
        self.hits.clear()
        self.hit_list: dict[int, list] = {}
        self.touched: set[int] = set()
        self.taking = self.decode_need(0, self._dc) // self.b
        self._doomed, self._doomed_n = set(), 0
        for i in self.running:
            self._plan_keys(i, self.computed[i] + 1, self.prompt_known(i), self.ncached.get(i, 0))

    def admit_cost(self, i: int, tokens: int) -> int:
        self._planning()
        hit = self._hit_blocks(i, real=False)
        self.hits[i], self.hit_list[i] = len(hit) * self.b, hit
        evictable = sum(1 for b in hit if b is not None and b.ref == 0)
        return (-(-tokens // self.b) - len(hit) + evictable) * self.b

    def hit_tokens(self, i: int) -> int:
        self._planning()
        if i not in self.hits:
            self.admit_cost(i, self.sh.prompt[i])
        return self.hits[i]

    def plan(self, i: int, done: int, tokens: int) -> None:
        self._planning()
        b = self.b
        if i in self.blocks:  # a chunk of a row being prefilled
            upto = max(done, self.computed[i]) + tokens
            self.taking += max(0, -(-upto // b) - len(self.blocks[i]))
            start = self.ncached.get(i, 0)
        else:  # an admission: its hits leave the free queue, its chunk takes new blocks
            hit = self.hit_list.get(i) or []
            upto = len(hit) * b + tokens
            self.taking += -(-upto // b) - len(hit)
            self.touched.update(x.id for x in hit if x is not None and x.ref == 0)
            start = len(hit)
        self._plan_keys(i, upto, self.sh.prompt[i], start)

    def _doomed_ids(self) -> set[int]:
        """Ids of the free blocks this step's earlier allocations take (the queue's head)."""
        if self._doomed_n != self.taking:
            out, n, touched = set(), self.taking, self.touched
            for bid in self.pool.free_q:
                if len(out) >= n:
                    break
                if bid not in touched:
                    out.add(bid)
            self._doomed, self._doomed_n = out, self.taking
        return self._doomed

    # --- internals --------------------------------------------------------------------------
    def prompt_known(self, i: int) -> int:
        """Tokens of row ``i`` whose identity is known now: its prompt and output so far (one
        less under asynchronous scheduling, whose last sampled token is still in flight)."""
        return self.computed[i] + (0 if self.async_ else 1)

    def _grow(self, i: int, upto: int, known: int) -> None:
        blocks = self.blocks.setdefault(i, [])
        need = -(-upto // self.b) - len(blocks)
        if need > 0:
            blocks += self.pool.get_new_blocks(need)
        self.computed[i] = upto
        self._register(i, min(upto, known))

    def _register(self, i: int, tokens: int) -> None:
        keys, blocks = self.keys(i), self.blocks[i]
        n_full = min(tokens // self.b, len(keys), len(blocks))
        for k in range(self.ncached.get(i, 0), n_full):
            self.pool.insert(keys[k], blocks[k])
        self.ncached[i] = max(self.ncached.get(i, 0), n_full)

    def _plan_keys(self, i: int, upto: int, known: int, start: int) -> None:
        """The blocks ``start`` on of row ``i`` that this step fills (earlier ones are found
        in the pool: registered, or hits)."""
        n_full = min(upto, known) // self.b
        if n_full > start:
            keys = self.keys(i)
            self.planned.update(keys[start : min(n_full, len(keys))])

    def _hit_blocks(self, i: int, real: bool) -> list:
        T = self.sh.prompt[i]
        out = []
        doomed = () if real or not self.taking else self._doomed_ids()
        for h in self.keys(i)[: (T - 1) // self.b]:
            b = self.pool.lookup(h)
            if b is not None and b.ref == 0 and b.id in doomed:
                b = None
            if b is None and (real or h not in self.planned):
                break
            out.append(b)
        return out

    def _free(self, i: int) -> None:
        self.pool.free_blocks(list(reversed(self.blocks.pop(i, []))))
        self.computed.pop(i, None)
        self.ncached.pop(i, None)
