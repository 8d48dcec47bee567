"""One client's iteration machinery: execute an action, account KV memory, write trace rows.

``ClientEngine.step(t)`` runs one iteration at an iteration boundary (docs/model.md
sections 2 and 11): it takes in the requests the router dispatched since the last
boundary (in the rule's queue order), asks the online rule what to run, checks the
decision against the slots, the admission rule and the token budget
(``engine/checks.py``), preempts under on-demand admission when the running requests'
next step would not fit (``preemption.py``; on-demand KV is kept in whole blocks by
``kv.py``), advances the client's clock by the latency model and appends one entry to its
trace buffer (``trace_buffer.py``). The global clock (``loop.py``) calls it in time order
across clients.

Per-request lists are shared by all clients (``engine/request_state.py``; a request lives on one
client), indexed by row. This is the simulator's hot loop: each action writes its trace
entry in one call, and iteration times come from the latency model's scalar form
(``latency/scalar.py``: the same arithmetic, bit for bit).
"""

from __future__ import annotations

import bisect

from hybridsched.engine import checks
from hybridsched.engine.kv import BlockLedger
from hybridsched.engine.preemption import make_room
from hybridsched.engine.prefix_cache import PrefixKV
from hybridsched.engine.request_state import DONE, PREFILLING, QUEUED, RUNNING, Shared
from hybridsched.engine.schema import PolicyError
from hybridsched.engine.state import ClientState, Decider
from hybridsched.engine.trace_buffer import DECODE, MIXED, PREFILL, TraceBuffer
from hybridsched.latency.scalar import scalar_decode_time, scalar_mixed_time, scalar_prefill_time


class ClientEngine:
    """Client ``j``: its queue, running batch, KV accounting and trace rows."""

    def __init__(self, j: int, client, instance, sh: Shared, decide: Decider, admission, rule):
        self.j, self.sh, self.decide, self.rule_name = j, sh, decide, rule
        self.lat, self.M = client.latency, client.kv_capacity_tokens
        self._decode_time = scalar_decode_time(client.latency)
        self._prefill_time = scalar_prefill_time(client.latency)
        self._mixed_time = scalar_mixed_time(client.latency)
        self.on_demand = admission.on_demand
        self.cap = admission.capacity(self.M)  # whole blocks, on demand
        self.kv_limit = admission.kv_limit(self.M)
        self.async_scheduling = admission.on_demand and admission.async_scheduling
        self.seq = 0  # admissions so far: the preemption victim is the latest
        st = self.st = ClientState()
        st.client, st.time_s, st.running, st.queue, st.prefilling = j, 0.0, {}, [], {}
        if self.on_demand and sh.keys is not None:
            b = admission.block_size
            self.kv = PrefixKV(b, self.cap // b, sh, self.async_scheduling, st.running)
        else:
            self.kv = BlockLedger(admission.block_size if admission.on_demand else 1, sh)
        self.hits: list[tuple] = []  # (client, iteration, request id, prompt tokens cached)
        st.lingering, st.block_size = self.kv.lingering, self.kv.b if self.on_demand else 0
        st.kv_watermark = admission.watermark_slots(self.M)
        st.kv = self.kv
        st.prefilled, st.predicted_finish = sh.prefilled, sh.predicted_finish
        st.decode_count, st.kv_reserved_tokens, st.kv_used_tokens, st.kv_charged = 0, 0, 0, 0
        st.kv_limit, st.charge, st.admission = admission.kv_limit(self.M), sh.charge, admission.name
        st.max_batch, st.kv_capacity_tokens = client.max_batch, client.kv_capacity_tokens
        st.prefill_budget_tokens, st.latency = instance.prefill_budget_tokens, client.latency
        st.prompt, st.predicted, st.reservation = sh.prompt, sh.predicted, sh.reservation
        st.outstanding_tokens, st.idle = 0, True
        self.queue_rank: list[int] = []
        self.inbox: list[int] = []
        self.finish_at: dict[int, list[int]] = {}
        self.pfin_at: dict[int, list[int]] = {}
        self.context_sum = 0  # sum over D of s_i + g_i: the context of D's next decode step
        self.prefilled_sum = 0  # KV tokens held by partly prefilled requests
        self.decoding_predicted = 0  # running rows not yet past their predicted length
        self.t, self.k = 0.0, 0
        self.buf = TraceBuffer(j)  # one entry per iteration
        self._add = self.buf.add
        self.evictions: list[tuple] = []
        self.inflight_preempted: list[tuple] = []  # (client, iteration, request id)

    # --- the router's side ----------------------------------------------------------------

    def receive(self, i: int) -> None:
        """Row ``i`` is dispatched here; it joins the queue at the next boundary."""
        sh = self.sh
        self.inbox.append(i)
        self.st.outstanding_tokens += sh.prompt[i] + max(0, sh.predicted[i] - sh.gen[i])

    def _take_inbox(self) -> None:
        queue, qr, rank, where = self.st.queue, self.queue_rank, self.sh.rank, self.sh.where
        for i in self.inbox:
            pos = bisect.bisect(qr, rank[i])
            qr.insert(pos, rank[i])
            queue.insert(pos, i)
            where[i] = QUEUED
        self.inbox.clear()

    # --- one iteration --------------------------------------------------------------------

    def step(self, now: float) -> float | None:
        """Run one iteration at ``max(own clock, now)``; its end time, or ``None`` when idle."""
        st = self.st
        if st.idle:
            self.t = max(self.t, now)
        if self.inbox:
            self._take_inbox()
        lingering = list(st.lingering)  # they hold slot and KV through this iteration
        while True:
            if st.lingering and not st.running and not st.prefilling:
                self.kv.release(list(st.lingering))  # nothing to overlap with: they return now
            if not st.running and not st.queue and not st.prefilling:
                st.idle = True
                return None
            st.idle = False
            st.time_s = self.t
            st.kv_used_tokens = self.context_sum + self.prefilled_sum
            if self.on_demand:
                held = self.kv.held
                st.kv_charged = held + self.kv.decode_need(len(st.running), st.decode_count)
                # The watermark keeps headroom for running requests; it never blocks an
                # empty client (else a recomputed request could wait forever).
                st.kv_limit = self.kv_limit if held else self.cap
                self.kv.begin_decision(st.running, st.decode_count)
            else:
                st.kv_charged = st.kv_reserved_tokens
            action = self.decide(st)
            kind = action.kind
            if kind == "decode":
                end = self._decode()
            elif kind == "prefill":
                end = self._prefill(action.rows)
            elif kind == "mixed":
                end = self._mixed(action.rows, action.tokens)
            else:
                raise PolicyError(self.err(f"unknown action kind {kind!r}"))
            if end is not None:
                break  # else: preemption emptied the batch; ask the rule again
        if lingering:
            self.kv.release(lingering)
        self.t = end
        self.k += 1
        return end

    def err(self, what: str) -> str:
        return f"rule {self.rule_name!r} on client {self.j} at t={self.t:.6f}s: {what}"

    def _held_column(self) -> int:
        """``kv_reserved_tokens`` of the row: reservations, or (on demand) the KV slots held."""
        if self.on_demand:
            return self.kv.held
        return self.st.kv_reserved_tokens

    def step_need(self, chunks=()) -> int:
        """On demand: the slots the running requests' next step takes (their decode, and the
        chunks ``(row, tokens)`` of partly prefilled rows still held)."""
        st = self.st
        need = self.kv.decode_need(len(st.running), st.decode_count)
        for i, x in chunks:
            if i in st.prefilling:
                need += st.chunk_slots(i, x)
        return need

    def _decode(self):
        st = self.st
        running = st.running
        n = len(running)
        cs, ps = self.context_sum, self.prefilled_sum
        if self.on_demand:
            if self.kv.held + self.step_need() > self.cap:
                make_room(self)  # evicts the latest admitted until the step fits
                if not running:
                    return None
                n, cs, ps = len(running), self.context_sum, self.prefilled_sum
            kv_reserved = self.kv.held + self.step_need()  # held during the step
            self.kv.step_running(())
        else:
            if n and cs + ps > self.M:
                checks.check_reserved_kv(self, 0)
            kv_reserved = st.kv_reserved_tokens
        if n == 0:
            raise PolicyError(self.err("decode with an empty running batch"))
        dur = self._decode_time(n, cs)
        t = self.t
        self._add(DECODE, t, dur, n, n + len(st.prefilling), 0, cs, kv_reserved, cs + ps,
                  tuple(running.values()), (), ())  # fmt: skip
        self._decode_step(n)
        return t + dur

    def _decode_step(self, n: int) -> None:
        """Every running request emits a token; those that reach o_i leave."""
        st = self.st
        st.decode_count += 1
        dc = st.decode_count
        self.context_sum += n
        if self.on_demand:
            self.kv.decode(dc, n)
        st.outstanding_tokens -= self.decoding_predicted
        due = self.pfin_at.pop(dc, None)
        if due:
            sh = self.sh
            pf, where = sh.predicted_finish, sh.where
            for i in due:
                if pf[i] == dc and where[i] == RUNNING:
                    self.decoding_predicted -= 1
        done = self.finish_at.pop(dc, None)
        if done:
            sh, running = self.sh, st.running
            for i in done:
                del running[i]
                self._leave(i, sh.prompt0[i] + sh.output[i])

    def _leave(self, i: int, context: int) -> None:
        """Row ``i`` emitted its last token: free its slot and memory."""
        st, sh = self.st, self.sh
        self.context_sum -= context
        sh.gen[i] = sh.output[i]
        sh.where[i] = DONE
        left = sh.predicted_finish[i] - st.decode_count
        if left > 0:
            self.decoding_predicted -= 1
            st.outstanding_tokens -= left
        if self.on_demand:  # asynchronous scheduling: its blocks return an iteration later
            self.kv.finish(i, sh.ids[i], self.kv.stop_running(i), self.async_scheduling)
        else:
            st.kv_reserved_tokens -= sh.reservation[i]

    def _first_token(self, i: int) -> None:
        """Row ``i``'s prompt is done: it emits a token, then leaves or joins the running batch."""
        st, sh = self.st, self.sh
        g = sh.gen[i]
        if g < sh.predicted[i]:
            st.outstanding_tokens -= 1
        g += 1
        sh.gen[i] = g
        dc = st.decode_count
        if g == sh.output[i]:  # o_i = 1 (or the last token, after an eviction): it leaves
            sh.where[i] = DONE
            st.outstanding_tokens -= max(0, sh.predicted[i] - g)
            if self.on_demand:
                self.kv.finish(i, sh.ids[i], self.kv.slots(sh.prompt[i]), self.async_scheduling)
            else:
                st.kv_reserved_tokens -= sh.reservation[i]
            return
        st.running[i] = sh.ids[i]
        sh.where[i] = RUNNING
        self.context_sum += sh.prompt[i] + 1
        if self.on_demand:
            self.kv.join(i, dc)
        fin = dc + sh.output[i] - g
        sh.fin_step[i] = fin
        self.finish_at.setdefault(fin, []).append(i)
        pf = dc + sh.predicted[i] - g
        sh.predicted_finish[i] = pf
        if pf > dc:
            self.decoding_predicted += 1
            self.pfin_at.setdefault(pf, []).append(i)

    def _leave_queue(self, rows) -> None:
        queue, qr = self.st.queue, self.queue_rank
        k = len(rows)
        if tuple(queue[:k]) == tuple(rows):  # the rules take the head: O(1) per row
            del queue[:k]
            del qr[:k]
            return
        taken = set(rows)
        keep = [x for x in range(len(queue)) if queue[x] not in taken]
        queue[:] = [queue[x] for x in keep]
        qr[:] = [qr[x] for x in keep]

    def _prefill(self, P):
        st, sh = self.st, self.sh
        s_sum = checks.check_prefill(self, P)
        prompt = sh.prompt
        nrun = len(st.running) + len(st.prefilling) + len(P)
        kvu = self.context_sum + s_sum + self.prefilled_sum
        computed = s_sum
        if self.kv.prefix:
            hit = self._admit_cached(P, [prompt[i] for i in P], 0)
            dur = self._cached_prefill_time(P, hit)
            computed -= hit
            for i in P:
                sh.prefilled[i] = 0
        else:
            dur = self._prefill_time(s_sum, sum(prompt[i] ** 2 for i in P))
        if self.on_demand:
            self._admit(P)
            for i in P:
                self.kv.chunk(i, 0, prompt[i])
        else:
            st.kv_reserved_tokens += sum(sh.reservation[i] for i in P)
        kv_reserved = self._held_column()
        t, ids = self.t, sh.ids
        self._add(PREFILL, t, dur, len(P), nrun, computed, 0, kv_reserved, kvu,
                  tuple(ids[i] for i in P), (), ())  # fmt: skip
        self._leave_queue(P)
        st.outstanding_tokens -= s_sum
        for i in P:
            self._first_token(i)
        return t + dur

    def _mixed(self, C, toks):
        st, sh = self.st, self.sh
        checks.check_mixed_shape(self, C, toks)
        if self.on_demand:
            C, toks = self._fit_running(C, toks)
        c_tok = sum(toks)
        n = len(st.running)
        if not C and n == 0:
            if self.on_demand:
                return None
            raise PolicyError(self.err("mixed iteration with no chunk and an empty running batch"))
        prefilling, prefilled, prompt = st.prefilling, sh.prefilled, sh.prompt
        new = [i for i in C if i not in prefilling]
        if self.kv.prefix:  # vLLM's order: the running step, then each admission in turn
            self.kv.step_running([(i, x) for i, x in zip(C, toks, strict=True) if i in prefilling])
            hit = self._admit_cached(
                new, [x for i, x in zip(C, toks, strict=True) if i not in prefilling], 1
            )
            self.prefilled_sum += hit
            st.outstanding_tokens -= hit
        checks.check_mixed(self, C, toks, new, c_tok)
        sq = sum((prefilled[i] + x) ** 2 - prefilled[i] ** 2 for i, x in zip(C, toks, strict=True))
        prefix = sum(prefilled[i] for i in C)
        dur = self._mixed_time(n, self.context_sum, c_tok, sq, prefix)
        if new:
            self._leave_queue(new)
            if self.on_demand:
                self._admit(new)
            for i in new:
                prefilling[i] = sh.ids[i]
                sh.where[i] = PREFILLING
                if not self.on_demand:
                    st.kv_reserved_tokens += sh.reservation[i]
        if self.on_demand:
            for i, x in zip(C, toks, strict=True):
                self.kv.chunk(i, prefilled[i], x)
        self.prefilled_sum += c_tok
        cs, t = self.context_sum, self.t
        self._add(MIXED, t, dur, n + len(C), n + len(prefilling), c_tok, cs if n else 0,
                  self._held_column(), cs + self.prefilled_sum, tuple(st.running.values()),
                  tuple(sh.ids[i] for i in C), tuple(int(x) for x in toks))  # fmt: skip
        st.outstanding_tokens -= c_tok
        if n:
            self._decode_step(n)
        for i, x in zip(C, toks, strict=True):
            prefilled[i] += x
            if prefilled[i] < prompt[i]:
                continue
            del prefilling[i]  # prompt complete: first token at the end of this iteration
            self.prefilled_sum -= prompt[i]
            prefilled[i] = 0
            self._first_token(i)
        return t + dur

    def _admit_cached(self, rows, toks, mixed: int) -> int:
        """Prefix cache: ``rows`` leave the queue in order, each taking its cached blocks
        (``prefilled`` starts there) and then its first ``toks``; the cached tokens."""
        sh, kv, total = self.sh, self.kv, 0
        for i, x in zip(rows, toks, strict=True):
            hit = kv.admit(i, self.st.kv_limit)
            if hit < 0:
                raise PolicyError(self.err(f"row {i}'s prompt does not fit the free KV blocks"))
            if hit:
                self.hits.append((self.j, self.k, sh.ids[i], hit))
            sh.prefilled[i] = hit
            kv.chunk(i, hit, x if mixed else x - hit)
            total += hit
        return total

    def _cached_prefill_time(self, P, hit: int) -> float:
        """A prefill whose rows' cached tokens are not computed: a mixed step without decodes."""
        sh = self.sh
        pre, prompt = sh.prefilled, sh.prompt
        c_tok = sum(prompt[i] - pre[i] for i in P)
        sq = sum(prompt[i] ** 2 - pre[i] ** 2 for i in P)
        if not hit:
            return self._prefill_time(c_tok, sq)
        return self._mixed_time(0, 0, c_tok, sq, hit)

    def _admit(self, rows) -> None:
        """On demand: ``rows`` start now, in this order (the latest is the first victim)."""
        seq = self.sh.seq
        for i in rows:
            self.seq += 1
            seq[i] = self.seq

    def _fit_running(self, C, toks):
        """On demand, before a mixed iteration: preempt until the running requests' step
        fits (the decode and the chunks of rows already being prefilled); a step that
        preempted admits nobody (vLLM), so the new rows' chunks are then dropped."""
        st = self.st
        pairs = list(zip(C, toks, strict=True))
        if self.kv.held + self.step_need(pairs) <= self.cap:
            return C, toks
        make_room(self, pairs)
        kept = [(i, x) for i, x in pairs if i in st.prefilling]
        return tuple(i for i, _ in kept), tuple(x for _, x in kept)
