"""Record vLLM's real v1 scheduler, step by step, as JSON test fixtures.

This is a stand-alone maintenance script. It is NOT part of the hybridsched
package, it is not imported by the package or by the tests, and vLLM is not a
test dependency: the tests only read the JSON files this script writes to
``tests/fixtures/vllm/`` (schema: ``tests/fixtures/vllm/README.md``; the
algorithm being recorded: ``docs/vllm_scheduler.md``).

It drives vLLM's real ``Scheduler`` (sync) and ``AsyncScheduler`` (async) with
a faked model output: no GPU, no weights, nothing downloaded. The model config
is a tiny dummy Llama ``config.json`` written to a temp dir; the KV cache is a
``KVCacheConfig(num_blocks=N + 1)`` with one ``FullAttentionSpec`` group of
block size 16 (the +1 is vLLM's null block, block 0, which the block pool takes
out of the free list at start; the script asserts that exactly N blocks are
free afterwards).

Build the throwaway venv (outside the repo; CPU-only machine, Python 3.11)::

    python3 -m venv /tmp/vllm-venv
    /tmp/vllm-venv/bin/pip install torch==2.13.0      # the CPU build kept on disk;
                                                       # never let pip pick a CUDA torch
    cd /tmp && /tmp/vllm-venv/bin/pip download --no-deps vllm==0.33.0
    /tmp/vllm-venv/bin/pip install --no-deps /tmp/vllm-0.33.0-*.whl
    /tmp/vllm-venv/bin/pip install numpy msgspec "pydantic>=2.12" cloudpickle \
        psutil pyzmq cachetools regex "transformers<5.21.0,>=5.16.1" pyyaml \
        prometheus_client requests tqdm blake3 py-cpuinfo cbor2 pybase64 einops \
        aiohttp openai-harmony openai pillow uvloop xgrammar fastapi \
        partial-json-parser llguidance

(pip then warns that vllm wants torch==2.14.0 and a few pinned versions; that is
expected and harmless for the scheduler. "No module named vllm._C" is printed
on import and is harmless too. The fixtures were recorded with torch 2.13.0+cpu,
transformers 5.20.2, pydantic 2.14.4, msgspec 0.23.0, numpy 2.4.6, Python 3.11.7.)

Record all fixtures (about 30 s on 2 cores, after ~10 s of importing vLLM)::

    cd <checkout>
    /tmp/vllm-venv/bin/python scripts/record_vllm_schedules.py --out tests/fixtures/vllm

or a subset: ``--only tight --modes async``. ``tests/engine/test_vllm_fixtures.py`` replays
every fixture through hybridsched's ``vllm`` policy and requires the same schedule. The output is deterministic: the
requests come from fixed seeds, the fake model's tokens from a fixed function,
and vLLM's scheduler has no randomness; re-running writes identical files.

The driving loops reproduce vLLM 0.33.0's engine core (vllm/v1/engine/core.py):

* sync  = ``EngineCore.step``: if ``scheduler.has_requests()``:
  ``schedule()``; execute; ``update_from_output()`` of that same step.
* async = ``EngineCore.step_with_batch_queue`` with ``batch_queue_size =
  VllmConfig.max_concurrent_batches = 2`` (async scheduling, PP=1): each call
  first schedules a new batch if the scheduler has requests and appends it to
  the queue; it returns without processing any output while the queue holds
  fewer than 2 batches (and the new batch executed tokens or the scheduler
  still has requests); otherwise it pops the OLDEST batch and applies its output
  with ``update_from_output()``. In steady state: schedule(k+1) runs before
  update(k), i.e. step k+1 is planned while step k's sampled tokens are still
  unknown (AsyncScheduler tracks them as ``num_output_placeholders``).
* New requests are added between ``step_fn`` calls (``_process_input_queue``),
  i.e. right before a ``schedule()`` call. When the engine is idle (no request
  and no batch in flight) and the next arrival lies in the future, the idle
  time is skipped: the next arrivals are added at once, and the fixture records
  the effective step.

The fake model output of a step is built right after its ``schedule()``, from
what the worker would see: a request samples one token iff its scheduled chunk
reaches the end of its known sequence (``not request.is_prefill_chunk``, the
same test as the GPU model runner's ``discard_request_mask``:
``num_computed + num_scheduled < num_tokens`` discards); a partial prefill
chunk samples nothing. The token id at output position j of request r is a fixed
pseudo-random function of (r, j) (see ``seg_tokens``), never EOS; requests use
``ignore_eos`` and ``max_tokens`` = their output length, so each finishes by
length exactly after its output length. In async mode a batch's output is
delivered even if the request was preempted in between (vLLM then treats it as
stale output, see ``Scheduler._preempt_request``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import deque

BLOCK_SIZE = 16
VOCAB = 32000
MAX_MODEL_LEN = 8192
MAX_NUM_SEQS = 32
MAX_NUM_BATCHED_TOKENS = 2048
SYS_PROMPT_LEN = 500
SCHEMA = "hybridsched-vllm-schedule/1"
LIST_KEYS = ("requests", "lag", "u", "admit", "chunk", "skip", "preempt", "finish")


# --------------------------------------------------------------------------
# Token ids: a request's token sequence is a concatenation of named segments.
# "sys" is the shared system prompt, "u<rid>" the user tokens of request rid,
# "o<rid>" the output tokens the fake model samples for request rid.
# --------------------------------------------------------------------------
_seg_cache: dict[tuple[str, int], list[int]] = {}


def seg_tokens(name: str, length: int) -> list[int]:
    """Deterministic token ids of a segment (ids 3..VOCAB-1; never 0-2)."""
    key = (name, length)
    toks = _seg_cache.get(key)
    if toks is None:
        rng = random.Random("seg:" + name)
        toks = [rng.randrange(3, VOCAB) for _ in range(length)]
        _seg_cache[key] = toks
    return toks


def output_token(rid: int, j: int, out_len: int) -> int:
    return seg_tokens(f"o{rid}", out_len)[j]


# --------------------------------------------------------------------------
# Instances
# --------------------------------------------------------------------------
def _plain_requests(seed: int, n: int, p_range, o_range) -> list[dict]:
    rng = random.Random(seed)
    reqs = []
    for rid in range(n):
        p = rng.randint(*p_range)
        o = rng.randint(*o_range)
        reqs.append({"rid": rid, "segs": [[f"u{rid}", p]], "out": o, "arrival": 0})
    return reqs


def _with_arrivals(reqs: list[dict], seed: int, mean_gap: float) -> list[dict]:
    """Poisson-ish arrivals in steps: exponential gaps, rounded down."""
    rng = random.Random(seed)
    t = 0.0
    for r in reqs:
        r["arrival"] = int(t)
        t += rng.expovariate(1.0 / mean_gap)
    return reqs


def _prefix_requests(seed: int) -> list[dict]:
    """Shared 500-token system prompt + multi-turn chains.

    * 120 single-turn requests: 70% start with the system prompt, then
      20-800 own user tokens; output 5-300.
    * 15 chains of 3 turns: turn 1 = system prompt + 50-400 user tokens; turn
      t+1 = turn t's full prompt + turn t's full output + 20-200 new user
      tokens; outputs 20-200. Turn t+1 arrives `gap` (0-30) steps after turn t
      finishes (field "after": [parent rid, gap]).
    Single turns and chain heads arrive with exponential gaps (mean 4 steps).
    """
    rng = random.Random(seed)
    reqs: list[dict] = []
    heads = []
    kinds = ["single"] * 120 + ["chain"] * 15
    rng.shuffle(kinds)
    t = 0.0
    for kind in kinds:
        rid = len(reqs)
        if kind == "single":
            segs = []
            if rng.random() < 0.7:
                segs.append(["sys", SYS_PROMPT_LEN])
            segs.append([f"u{rid}", rng.randint(20, 800)])
            reqs.append({"rid": rid, "segs": segs, "out": rng.randint(5, 300), "arrival": int(t)})
        else:
            segs = [["sys", SYS_PROMPT_LEN], [f"u{rid}", rng.randint(50, 400)]]
            reqs.append({"rid": rid, "segs": segs, "out": rng.randint(20, 200), "arrival": int(t)})
            heads.append(rid)
        t += rng.expovariate(1.0 / 4.0)
    for head in heads:
        parent = head
        for _turn in range(2):
            rid = len(reqs)
            p = reqs[parent]
            segs = [list(s) for s in p["segs"]] + [[f"o{parent}", p["out"]]]
            segs.append([f"u{rid}", rng.randint(20, 200)])
            reqs.append(
                {
                    "rid": rid,
                    "segs": segs,
                    "out": rng.randint(20, 200),
                    "arrival": None,
                    "after": [parent, rng.randint(0, 30)],
                }
            )
            parent = rid
    return reqs


def make_instances() -> dict[str, dict]:
    ample_reqs = _plain_requests(1, 200, (20, 1500), (5, 400))
    prefix_reqs = _prefix_requests(5)
    return {
        "ample": {
            "requests": ample_reqs,
            "num_blocks": 8192,
            "prefix": False,
            "gen": "seed 1: 200 requests, prompt U[20,1500], output U[5,400], all arrive at step 0",
        },
        "tight": {
            "requests": ample_reqs,
            "num_blocks": 300,
            "prefix": False,
            "gen": "same requests as 'ample'",
        },
        "tight-1000": {
            "requests": _plain_requests(2, 1000, (20, 600), (5, 300)),
            "num_blocks": 500,
            "prefix": False,
            "gen": "seed 2: 1000 requests, prompt U[20,600], output U[5,300], all arrive at step 0",
        },
        "arrivals": {
            "requests": _with_arrivals(_plain_requests(3, 200, (20, 1000), (5, 300)), 4, 14.0),
            "num_blocks": 400,
            "prefix": False,
            "gen": "seed 3: 200 requests, prompt U[20,1000], output U[5,300]; "
            "arrivals seed 4, exponential gaps mean 14 steps (floored)",
        },
        "prefix-ample": {
            "requests": prefix_reqs,
            "num_blocks": 8192,
            "prefix": True,
            "gen": "seed 5, see _prefix_requests",
        },
        "prefix-tight": {
            "requests": prefix_reqs,
            "num_blocks": 250,
            "prefix": True,
            "gen": "same requests as 'prefix-ample'",
        },
    }


# --------------------------------------------------------------------------
# vLLM set-up
# --------------------------------------------------------------------------
def build_scheduler(num_blocks: int, prefix: bool, async_: bool, model_dir: str):
    import torch
    from vllm.config import CacheConfig, DeviceConfig, ModelConfig, SchedulerConfig, VllmConfig
    from vllm.utils.hashing import get_hash_fn_by_name
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.structured_output import StructuredOutputManager

    # A real engine refuses to start unless one max_model_len sequence fits in
    # the KV cache (kv_cache_planning.check_enough_kv_cache_memory); keep the
    # recorded configurations startable. No request reaches this length.
    max_model_len = min(MAX_MODEL_LEN, num_blocks * BLOCK_SIZE)
    model_config = ModelConfig(
        model=model_dir,
        tokenizer=model_dir,
        skip_tokenizer_init=True,
        max_model_len=max_model_len,
        dtype="float32",
        seed=0,
    )
    scheduler_config = SchedulerConfig(
        max_num_seqs=MAX_NUM_SEQS,
        max_num_batched_tokens=MAX_NUM_BATCHED_TOKENS,
        max_model_len=max_model_len,
        is_encoder_decoder=False,
        enable_chunked_prefill=True,
        async_scheduling=async_,
    )
    cache_config = CacheConfig(block_size=BLOCK_SIZE, enable_prefix_caching=prefix)
    vllm_config = VllmConfig(
        model_config=model_config,
        cache_config=cache_config,
        scheduler_config=scheduler_config,
        device_config=DeviceConfig("cpu"),
    )
    assert vllm_config.cache_config.block_size == BLOCK_SIZE
    kv_cache_config = KVCacheConfig(
        num_blocks=num_blocks + 1,  # + vLLM's null block (block 0)
        kv_cache_tensors=[],
        kv_cache_groups=[
            KVCacheGroupSpec(
                ["model.layers.0.self_attn.attn"],
                FullAttentionSpec(
                    block_size=BLOCK_SIZE, num_kv_heads=1, head_size=1, dtype=torch.float32
                ),
            )
        ],
    )
    vllm_config.cache_config.num_gpu_blocks = num_blocks + 1
    cls = vllm_config.scheduler_config.get_scheduler_cls()
    sched = cls(
        vllm_config=vllm_config,
        kv_cache_config=kv_cache_config,
        structured_output_manager=StructuredOutputManager(vllm_config),
        block_size=BLOCK_SIZE,
        log_stats=False,
    )
    pool = sched.kv_cache_manager.block_pool
    assert pool.get_num_free_blocks() == num_blocks, "null block is not the +1"
    assert pool.null_block.block_id == 0
    hasher = None
    if prefix:
        hash_fn = get_hash_fn_by_name(vllm_config.cache_config.prefix_caching_hash_algo)
        init_none_hash(hash_fn)
        hasher = get_request_block_hasher(BLOCK_SIZE, hash_fn)
    sc = vllm_config.scheduler_config
    settings = {
        "scheduler_class": type(sched).__name__,
        "async_scheduling": bool(sc.async_scheduling),
        "batch_queue_size": vllm_config.max_concurrent_batches,
        "max_num_seqs": sc.max_num_seqs,
        "max_num_active_seqs": sc.max_num_active_seqs,
        "max_num_batched_tokens": sc.max_num_batched_tokens,
        "max_num_scheduled_tokens": sched.max_num_scheduled_tokens,
        "max_model_len": sched.max_model_len,
        "block_size": BLOCK_SIZE,
        "num_blocks_usable": num_blocks,
        "kv_cache_config_num_blocks": num_blocks + 1,
        "watermark": sc.watermark,
        "watermark_blocks": sched.kv_cache_manager.watermark_blocks,
        "enable_chunked_prefill": sc.enable_chunked_prefill,
        "enable_prefix_caching": bool(vllm_config.cache_config.enable_prefix_caching),
        "prefix_caching_hash_algo": vllm_config.cache_config.prefix_caching_hash_algo,
        "long_prefill_token_threshold": sc.long_prefill_token_threshold,
        "long_prefill_token_threshold_adaptive": sc.long_prefill_token_threshold_adaptive,
        "scheduler_reserve_full_isl": sc.scheduler_reserve_full_isl,
        "prefill_schedule_interval": sc.prefill_schedule_interval,
        "policy": sc.policy,
        "num_speculative_tokens": sched.num_spec_tokens,
        "num_lookahead_tokens": sched.num_lookahead_tokens,
        "use_v2_model_runner": bool(vllm_config.use_v2_model_runner),
        "pipeline_parallel_size": vllm_config.parallel_config.pipeline_parallel_size,
    }
    return sched, hasher, settings


def write_model_dir(path: str) -> None:
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "vocab_size": VOCAB,
        "max_position_embeddings": MAX_MODEL_LEN,
        "rms_norm_eps": 1e-5,
        "torch_dtype": "float32",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)


# --------------------------------------------------------------------------
# Driving loop
# --------------------------------------------------------------------------
def run(instance: dict, async_: bool, model_dir: str, max_steps: int = 200000):
    from vllm import SamplingParams
    from vllm.v1.engine import FinishReason
    from vllm.v1.outputs import ModelRunnerOutput
    from vllm.v1.request import Request

    sched, hasher, settings = build_scheduler(
        instance["num_blocks"], instance["prefix"], async_, model_dir
    )
    pool = sched.kv_cache_manager.block_pool
    usable = instance["num_blocks"]
    reqs = instance["requests"]
    out_len = {r["rid"]: r["out"] for r in reqs}
    prompt_len = {r["rid"]: sum(n for _, n in r["segs"]) for r in reqs}
    children: dict[int, list[dict]] = {}
    for r in reqs:
        if r.get("after"):
            children.setdefault(r["after"][0], []).append(r)
    # nominal arrival step of each request (dependent ones get theirs when
    # their parent finishes)
    nominal = {r["rid"]: r["arrival"] for r in reqs if r["arrival"] is not None}
    effective: dict[int, int] = {}
    added: set[int] = set()
    fast_forwarded: list[int] = []  # added early because the engine was idle

    preempt_log: list[str] = []
    orig_preempt = sched._preempt_request

    def logged_preempt(request, *a, **kw):
        preempt_log.append(request.request_id)
        return orig_preempt(request, *a, **kw)

    sched._preempt_request = logged_preempt  # observe only; same behaviour

    def add(rid: int, k: int) -> None:
        r = reqs[rid]
        toks: list[int] = []
        for name, n in r["segs"]:
            toks.extend(seg_tokens(name, n))
        sp = SamplingParams(max_tokens=r["out"], ignore_eos=True)
        req = Request(
            request_id=str(rid),
            prompt_token_ids=toks,
            sampling_params=sp,
            pooling_params=None,
            arrival_time=float(k) + rid * 1e-7,
            block_hasher=hasher,
        )
        sched.add_request(req)
        effective[rid] = k
        added.add(rid)

    def add_arrivals(k: int) -> None:
        for rid in sorted(
            (rid for rid, a in nominal.items() if a <= k and rid not in added),
            key=lambda x: (nominal[x], x),
        ):
            add(rid, k)

    def add_next_arrivals_now(k: int) -> bool:
        pending = [(a, rid) for rid, a in nominal.items() if rid not in added]
        if not pending:
            return False
        first = min(pending)[0]
        for a, rid in sorted(pending):
            if a == first:
                add(rid, k)
                fast_forwarded.append(rid)
        return True

    # Per-step records.
    T: list[int] = []  # total scheduled tokens
    U: list[int] = []  # blocks in use right after schedule()
    LU: list[int] = []  # last step whose output was applied before this schedule()
    EV: dict[int, list] = {}  # sparse per-step events
    full: list[list] = []  # full scheduled lists, for the self-check only
    last_applied = -1
    n_empty = 0

    def do_schedule(k: int):
        running_before = [r.request_id for r in sched.running]
        preempt_log.clear()
        out = sched.schedule()
        preempted = list(preempt_log)
        assert set(preempted) == set(out.preempted_req_ids) or not preempted
        sched_items = list(out.num_scheduled_tokens.items())
        rb = set(running_before)
        A, C = [], []
        req_ids, sampled = [], []
        for rid_s, n in sched_items:
            req = sched.requests[rid_s]
            rid = int(rid_s)
            if rid_s in rb:
                if n != 1:
                    C.append([rid, n])
            else:
                hit = req.num_computed_tokens - n
                A.append([rid, n, hit, 1 if req.num_preemptions > 0 else 0])
            req_ids.append(rid_s)
            if req.is_prefill_chunk:
                sampled.append([])
            else:
                j = req.num_computed_tokens - req.num_prompt_tokens
                assert 0 <= j < out_len[rid], (rid, j)
                sampled.append([output_token(rid, j, out_len[rid])])
        sched_set = {r for r, _ in sched_items}
        pset = set(preempted)
        X = [int(r) for r in running_before if r not in sched_set and r not in pset]
        T.append(out.total_num_scheduled_tokens)
        U.append(usable - pool.get_num_free_blocks())
        LU.append(last_applied)
        ev = [A, C, X, [int(p) for p in preempted], []]
        EV[k] = ev
        full.append([[int(r), n] for r, n in sched_items])
        mro = ModelRunnerOutput(
            req_ids=req_ids,
            req_id_to_index={r: i for i, r in enumerate(req_ids)},
            sampled_token_ids=sampled,
        )
        return out, mro

    def do_update(k_of_batch: int, out, mro, k_next: int) -> None:
        nonlocal last_applied
        eco = sched.update_from_output(out, mro)
        fin = []
        for outs in eco.values():
            for o in outs.outputs:
                if o.finish_reason is not None:
                    assert o.finish_reason == FinishReason.LENGTH, o.finish_reason
                    fin.append(int(o.request_id))
        EV[k_of_batch][4] = fin
        assert last_applied == k_of_batch - 1
        last_applied = k_of_batch
        for rid in fin:
            for ch in children.get(rid, []):
                nominal[ch["rid"]] = k_next + ch["after"][1]

    k = 0
    t0 = time.time()
    if not async_:
        while True:
            add_arrivals(k)
            if not sched.has_requests():
                if add_next_arrivals_now(k):
                    continue
                break
            out, mro = do_schedule(k)
            if out.total_num_scheduled_tokens == 0:
                n_empty += 1
            do_update(k, out, mro, k + 1)
            k += 1
            assert k < max_steps, "step cap reached"
    else:
        batch_queue: deque = deque()
        queue_size = settings["batch_queue_size"]
        assert queue_size == 2
        while True:
            add_arrivals(k)
            if not sched.has_requests() and not batch_queue:
                if add_next_arrivals_now(k):
                    continue
                break
            # --- EngineCore.step_with_batch_queue ---
            if sched.has_requests():
                out, mro = do_schedule(k)
                k += 1
                executed = out.total_num_scheduled_tokens > 0
                if not executed:
                    n_empty += 1
                batch_queue.appendleft((k - 1, out, mro))
                if len(batch_queue) < queue_size and (executed or sched.has_requests()):
                    assert k < max_steps, "step cap reached"
                    continue
            kb, out_b, mro_b = batch_queue.pop()
            do_update(kb, out_b, mro_b, k)
            assert k < max_steps, "step cap reached"
    elapsed = time.time() - t0

    assert len(added) == len(reqs)
    assert not sched.requests, "requests left over"
    assert pool.get_num_free_blocks() == usable

    steps = len(T)
    admit, chunk, skip, preempt, finish = [], [], [], [], []
    for kk in range(steps):
        A, C, X, P, F = EV[kk]
        admit += [[kk, *a] for a in A]
        chunk += [[kk, *c] for c in C]
        skip += [[kk, x] for x in X]
        preempt += [[kk, p] for p in P]
        finish += [[kk, f] for f in F]
    lag = []
    for kk, lu in enumerate(LU):
        v = kk - 1 - lu
        if not lag or lag[-1][1] != v:
            lag.append([kk, v])
    reqs_out = []
    for r in reqs:
        row = [prompt_len[r["rid"]], r["out"], effective[r["rid"]]]
        if instance["prefix"]:
            row.append(r["segs"])
            row.append(r.get("after"))
        reqs_out.append(row)
    fixture = {
        "schema": SCHEMA,
        "vllm_version": __import__("vllm").__version__,
        "mode": "async" if async_ else "sync",
        "settings": settings,
        "generator": instance["gen"],
        "summary": {
            "steps": steps,
            "empty_steps": n_empty,
            "preemptions": len(preempt),
            "admissions": len(admit),
            "resumptions": sum(1 for a in admit if a[4] == 1),
            "arrivals_fast_forwarded": len(fast_forwarded),
            "scheduled_tokens": sum(T),
            "max_blocks_used": max(U) if U else 0,
        },
        "requests": reqs_out,
        "lag": lag,
        "u": U,
        "admit": admit,
        "chunk": chunk,
        "skip": skip,
        "preempt": preempt,
        "finish": finish,
    }
    check_decoder(fixture, full)
    return fixture, elapsed


def decode_schedules(fixture: dict) -> list[list[list[int]]]:
    """Reference decoder: rebuild every step's ordered [rid, tokens] list.

    Same algorithm as in tests/fixtures/vllm/README.md; keep them in sync.
    """
    steps = fixture["summary"]["steps"]
    by_step = [{"A": [], "C": {}, "X": set(), "P": set(), "F": set()} for _ in range(steps)]
    for k, rid, n, _hit, _kind in fixture["admit"]:
        by_step[k]["A"].append((rid, n))
    for k, rid, n in fixture["chunk"]:
        by_step[k]["C"][rid] = n
    for k, rid in fixture["skip"]:
        by_step[k]["X"].add(rid)
    for k, rid in fixture["preempt"]:
        by_step[k]["P"].add(rid)
    for k, rid in fixture["finish"]:
        by_step[k]["F"].add(rid)
    lag_at = {}
    for k0, v in fixture["lag"]:
        lag_at[k0] = v
    running: list[int] = []  # vLLM's Scheduler.running, in order
    applied = -1  # last step whose output has been applied
    lag = 0
    result = []
    for k in range(steps):
        lag = lag_at.get(k, lag)
        while applied < k - 1 - lag:  # outputs applied before this schedule()
            applied += 1
            fin = by_step[applied]["F"]
            running = [r for r in running if r not in fin]
        s = by_step[k]
        step = [[r, s["C"].get(r, 1)] for r in running if r not in s["X"] and r not in s["P"]]
        step += [[r, n] for r, n in s["A"]]
        result.append(step)
        running = [r for r in running if r not in s["P"]] + [r for r, _ in s["A"]]
    return result


def check_decoder(fixture: dict, full: list) -> None:
    dec = decode_schedules(fixture)
    assert len(dec) == len(full)
    for k, (a, b) in enumerate(zip(dec, full, strict=True)):
        assert a == b, f"decoder mismatch at step {k}: {a} != {b}"


def dump(fixture: dict, path: str) -> None:
    """JSON with one step event / request per line (diff-friendly, compact)."""
    head = {k: v for k, v in fixture.items() if k not in LIST_KEYS}
    sep = (",", ":")
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"{json.dumps(k)}:{json.dumps(v, separators=sep)},")
    for key in LIST_KEYS:
        val = fixture[key]
        if key in ("requests",):
            lines.append(f'"{key}":[')
            lines += [
                json.dumps(r, separators=sep) + ("," if i < len(val) - 1 else "")
                for i, r in enumerate(val)
            ]
            lines.append("],")
        else:
            lines.append(f'"{key}":{json.dumps(val, separators=sep)},')
    lines[-1] = lines[-1].rstrip(",")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    json.load(open(path))  # must parse


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/vllm")
    ap.add_argument("--only", nargs="*", help="instance names")
    ap.add_argument("--modes", nargs="*", default=["sync", "async"])
    args = ap.parse_args(argv)
    import logging

    logging.getLogger("vllm").setLevel(logging.WARNING)
    os.makedirs(args.out, exist_ok=True)
    instances = make_instances()
    names = args.only or list(instances)
    with tempfile.TemporaryDirectory() as model_dir:
        write_model_dir(model_dir)
        for name in names:
            inst = instances[name]
            for mode in args.modes:
                fixture, elapsed = run(inst, mode == "async", model_dir)
                fixture = {"instance": name, **fixture}
                path = os.path.join(args.out, f"{name}.{mode}.json")
                dump(fixture, path)
                s = fixture["summary"]
                print(
                    f"{name:>13} {mode:>5}: steps={s['steps']} "
                    f"(empty {s['empty_steps']}) preemptions={s['preemptions']} "
                    f"tokens={s['scheduled_tokens']} max_blocks={s['max_blocks_used']}"
                    f" size={os.path.getsize(path) // 1024}KB "
                    f"[{elapsed:.1f}s]",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
