"""Record aiconfigurator's OWN per-iteration estimates for the shipped models.

Companion of ``scripts/export_kernel_tables.py`` (same throwaway venv, same status: a
maintenance script, not imported by the package or the tests). Writes
``data/latency/kernels/reference_estimates.parquet``: for every (system, backend, version)
folder the export wrote, every model in ``data/profiles/models/`` and every tp in 1, 2, 4, 8
at which the model fits (MoE models at ep = 1 and ep = tp), aiconfigurator's compiled engine
(``EngineHandle.compile``, the path its CLI uses) prices a grid of single iterations, so that
the package can check its table-driven latency model without importing aiconfigurator.
Schema, the four kinds and the exact call behind each row: the kernels README.

Each model's config.json is generated from its YAML (``LlamaForCausalLM``;
``Qwen3ForCausalLM`` when ``qk_norm``; ``MixtralForCausalLM`` / ``Qwen3MoeForCausalLM`` for
MoE) in a temporary folder, so every model is priced with exactly the architecture the
project ships, also those aiconfigurator does not bundle (llama-65b, llama-2-70b).

"Fits" is aiconfigurator's own memory model (``sdk.memory.estimate_kv_cache`` at the
backend's default memory fraction, max_num_tokens 8192, max_batch_size 256): a configuration
is kept when the KV cache left holds one sequence of min(max_context, 8192) tokens (8192 =
the longest of the grid); the capacity is stored in ``kv_tokens``. Grid points are not limited
by it (a decode batch of 256 x 8192 tokens is priced wherever the model fits).

Run from the checkout, after export_kernel_tables.py (about 20 s)::

    /tmp/aic-venv/bin/python scripts/kernel_reference_estimates.py
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import yaml

logging.disable(logging.WARNING)  # aiconfigurator logs every back-fill it takes

from aiconfigurator_core.sdk import perf_database  # noqa: E402
from aiconfigurator_core.sdk.backends.factory import get_backend  # noqa: E402
from aiconfigurator_core.sdk.engine import EngineHandle  # noqa: E402
from aiconfigurator_core.sdk.memory import estimate_kv_cache  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TPS = (1, 2, 4, 8)
MAX_LENGTH = 8192  # the longest prompt / context of the grid
MIXED_OSL = 256  # aiconfigurator puts a mixed step's decode requests at isl + osl // 2 + 1
LENGTHS = (128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192)
GRID = {
    "prefill": [(b, s) for b in (1, 2, 4, 8, 16) for s in LENGTHS],
    "decode": [(b, c) for b in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
               for c in LENGTHS],
    "mixed": [(isl, k, g) for isl in (256, 512, 1024, 2048, 4096, 8192) for k in (1, 2)
              for g in (1, 4, 16, 64, 256) if k * isl <= MAX_LENGTH],
    "chunk": [(a, c) for a in (0, 512, 1024, 2048, 4096, 6144) for c in (256, 512, 1024, 2048)],
}
COLUMNS = ["kind", "batch", "num_prompts", "prompt_tokens", "prefix_tokens", "context_tokens",
           "sum_tokens", "sum_sq_tokens", "batch_size", "sum_context", "chunk_tokens",
           "chunk_sq_diff", "chunk_prefix"]


def hf_config(y: dict) -> dict:
    """A Hugging Face style config.json (bf16) with the model YAML's architecture."""
    moe, qk = bool(y.get("num_experts")), bool(y.get("qk_norm"))
    arch = ("Qwen3Moe" if qk else "Mixtral") if moe else ("Qwen3" if qk else "Llama")
    heads = y["num_heads"]
    cfg = {"architectures": [f"{arch}ForCausalLM"], "num_hidden_layers": y["num_layers"],
           "hidden_size": y["hidden_size"], "intermediate_size": y["ffn_size"],
           "num_attention_heads": heads, "num_key_value_heads": y.get("num_kv_heads", heads),
           "head_dim": y.get("head_dim", y["hidden_size"] // heads),
           "vocab_size": y["vocab_size"], "max_position_embeddings": y["max_context"],
           "tie_word_embeddings": y.get("tie_word_embeddings", False), "torch_dtype": "bfloat16"}
    if moe:
        cfg |= {"num_local_experts": y["num_experts"], "num_experts": y["num_experts"],
                "num_experts_per_tok": y["experts_per_token"],
                "moe_intermediate_size": y["expert_ffn_size"]}
    return cfg


def kv_tokens(model_dir, system, backend, version, tp, moe_tp, ep) -> int:
    """aiconfigurator's KV-cache capacity in tokens at its backend's default memory fraction
    (0 when weights and activations leave no KV budget)."""
    cap = perf_database.load_system_spec(system)["gpu"]["mem_capacity"]
    cfg = SimpleNamespace(tp_size=tp, pp_size=1, attention_dp_size=1)
    kw = get_backend(backend)._static_oom_check_kwargs(  # the fraction its OOM check uses
        mem_capacity_bytes=cap, backend_version=version, model_config=cfg)
    try:
        est = estimate_kv_cache(
            model_dir, system, backend, version, max_num_tokens=8192, max_batch_size=256,
            memory_fraction_kind="of_free" if kw["fraction_of_free"] else "of_total",
            memory_fraction_value=kw["free_gpu_memory_fraction"], tp_size=tp,
            moe_tp_size=moe_tp, moe_ep_size=ep)
    except ValueError as exc:
        if "no KV budget" in str(exc):
            return 0
        raise
    return int(est["total_kv_size_tokens"])


def grid_rows():
    """(aiconfigurator method, its arguments, the row's fields) for every grid point."""
    for b, s in GRID["prefill"]:  # b prompts of s tokens
        yield "predict_prefill_latency", (b, s), dict(
            kind="prefill", batch=b, num_prompts=b, prompt_tokens=s,
            sum_tokens=b * s, sum_sq_tokens=b * s * s)
    for b, c in GRID["decode"]:  # b requests; aiconfigurator prices one step at KV length c + 1
        yield "predict_decode_latency", (b, c, 2), dict(
            kind="decode", batch=b, context_tokens=c + 1, batch_size=b, sum_context=b * (c + 1))
    for isl, k, g in GRID["mixed"]:  # k whole prompts of isl tokens + g decode requests
        ctx = isl + MIXED_OSL // 2 + 1
        yield "mixed_step_latency", (k * isl, g, isl, MIXED_OSL), dict(
            kind="mixed", batch=g, num_prompts=k, prompt_tokens=isl, context_tokens=ctx,
            batch_size=g, sum_context=g * ctx, chunk_tokens=k * isl, chunk_sq_diff=k * isl * isl)
    for a, c in GRID["chunk"]:  # one chunk: positions a .. a + c of one prompt, no decode
        yield "predict_prefill_latency", (1, a + c, a), dict(
            kind="chunk", num_prompts=1, prompt_tokens=a + c, prefix_tokens=a,
            chunk_tokens=c, chunk_sq_diff=(a + c) ** 2 - a * a, chunk_prefix=a)


def price(handle: EngineHandle) -> tuple[list[dict], str | None]:
    """The grid rows aiconfigurator prices, and its first refusal (refused points are left
    out)."""
    rows, refusal = [], None
    for method, call_args, fields in grid_rows():
        try:
            ms = getattr(handle, method)(*call_args)
        except Exception as exc:  # noqa: BLE001
            refusal = refusal or f"{type(exc).__name__}: {exc}"
            continue
        rows.append({c: fields.get(c, 0) for c in COLUMNS} | {"aic_ms": float(ms)})
    return rows, refusal


def run_target(system, backend, version, models: dict, log: list) -> list[dict]:
    rows = []
    for name, (y, model_dir) in models.items():
        moe = bool(y.get("num_experts"))
        for tp, ep in [(t, e) for t in TPS for e in (sorted({1, t}) if moe else [1])]:
            where = f"{system}/{backend} {name} tp{tp} ep{ep}"
            moe_kw = dict(moe_tp_size=tp // ep, moe_ep_size=ep) if moe else {}
            kv = kv_tokens(model_dir, system, backend, version, tp, moe_kw.get("moe_tp_size"),
                           moe_kw.get("moe_ep_size"))
            if kv < min(y["max_context"], MAX_LENGTH):
                log.append(f"{where}: does not fit (KV capacity {kv} tokens)")
                continue
            handle = EngineHandle.compile(model_dir, system, backend, backend_version=version,
                                          tp_size=tp, **moe_kw)
            priced, refusal = price(handle)
            if refusal:
                log.append(f"{where}: {len(priced)} points priced; refused: {refusal}"[:240])
            common = dict(system=system, backend=backend, version=version, model=name, tp=tp,
                          ep=ep, kv_tokens=kv)
            rows += [common | r for r in priced]
    print(f"{system}/{backend}/{version}: {len(rows)} rows", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", default=str(REPO / "data" / "latency" / "kernels"),
                    help="the export's output folder (<system>/<backend>/<version>/ inside)")
    ap.add_argument("--models", default=str(REPO / "data" / "profiles" / "models"))
    args = ap.parse_args(argv)
    tables = Path(args.tables)
    targets = sorted(p.parent.relative_to(tables).parts for p in tables.glob("*/*/*/meta.json"))
    rows, log = [], []
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for path in sorted(Path(args.models).glob("*.yaml")):
            y = yaml.safe_load(path.read_text())
            (Path(tmp) / y["name"]).mkdir()
            (Path(tmp) / y["name"] / "config.json").write_text(json.dumps(hf_config(y)))
            models[y["name"]] = (y, str(Path(tmp) / y["name"]))
        for system, backend, version in targets:
            rows += run_target(system, backend, version, models, log)
    df = pd.DataFrame(rows)
    df[["system", "backend", "version", "model", "kind"]] = df[
        ["system", "backend", "version", "model", "kind"]].astype("category")
    df.to_parquet(tables / "reference_estimates.parquet", compression="zstd", index=False)
    print("\n".join(log))
    print(f"{len(df)} rows -> {tables / 'reference_estimates.parquet'}")


if __name__ == "__main__":
    main()
