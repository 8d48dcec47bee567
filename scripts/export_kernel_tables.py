"""Export aiconfigurator-core's measured kernel tables to ``data/latency/kernels/``.

A maintenance script: not part of the hybridsched package, not imported by the package or
the tests; aiconfigurator-core is not a dependency of the project, which reads only the files
written here (schemas, units, lookup conventions: ``data/latency/kernels/README.md``).

For each (system, backend), the backend's *current* version in aiconfigurator's
``systems/query_versions.yaml`` is loaded with its own ``perf_database.get_database``.
``engine_table_view.load_view`` only enumerates what was measured (GEMM m/n/k, attention head
layouts and grids, MoE token counts); every number written is what aiconfigurator's compiled
engine (``EngineHandle.for_database`` + ``evaluate_ops_json``) returns for ONE operator at ONE
shape, so its interpolation, SOL floors, beyond-grid rules and back-fill from older versions
are preserved. Minimal dtype set: bf16 GEMM and MoE, bf16 KV cache and FMHA, head_dim 128,
all-reduce of 2-byte elements. Per ``<out>/<system>/<backend>/<version>/``: gemm.parquet
(generic m x n x k grid), gemm_shapes.parquet (exact m-curves of the GEMMs of every model in
``data/profiles/models/`` at tp 1, 2, 4, 8), context_attention.parquet,
generation_attention.parquet, allreduce.parquet, moe.parquet (the MoE models at ep 1 and
ep = tp) and meta.json.

Build the throwaway venv (outside the repo; no GPU; Python 3.11-3.13)::

    python3 -m venv /tmp/aic-venv
    /tmp/aic-venv/bin/pip install aiconfigurator-core==0.12.0

(it pulls numpy, pandas, pyarrow, scipy, pyyaml, packaging; neither the ``aiconfigurator``
CLI distribution nor torch is needed; nothing is downloaded at run time). Then, from the
checkout (about 2 minutes on 2 cores, then 20 s)::

    cd <checkout>
    /tmp/aic-venv/bin/python scripts/export_kernel_tables.py
    /tmp/aic-venv/bin/python scripts/kernel_reference_estimates.py

The second script records aiconfigurator's own per-iteration estimates to check the package
against. ``--targets h100_sxm/vllm,b200_sxm/sglang`` exports a subset; ``--date`` sets the
date written to meta.json (all else is deterministic: a re-run rewrites identical files).
Licence: Apache-2.0, derived from NVIDIA aiconfigurator-core 0.12.0's performance database.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import yaml

logging.disable(logging.WARNING)  # aiconfigurator logs every back-fill it takes

from aiconfigurator_core.sdk import perf_database  # noqa: E402
from aiconfigurator_core.sdk.engine import EngineHandle  # noqa: E402
from aiconfigurator_core.sdk.engine_table_view import load_view  # noqa: E402
from aiconfigurator_core.sdk.operations.attention import resolved_lane_order_for_op  # noqa: E402
from aiconfigurator_core.sdk.perf_database import PerfDataFilename  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO / "data" / "profiles" / "models"
OUT_DIR = REPO / "data" / "latency" / "kernels"
AIC_VERSION = importlib.metadata.version("aiconfigurator-core")
TARGETS = [f"{s}/vllm" for s in ("h100_sxm", "h200_sxm", "a100_sxm", "b200_sxm", "l40s",
                                 "rtx_pro_6000_server")] + [
    f"{s}/{b}" for b in ("sglang", "trtllm") for s in ("h100_sxm", "h200_sxm", "b200_sxm")]
TPS = (1, 2, 4, 8)
DTYPE, HEAD_DIM, MOE_DIST = "bfloat16", 128, "power_law_1.2"
ATTRIBUTION = "derived from NVIDIA aiconfigurator-core 0.12.0 performance database"
SPEC_UNITS = ("gpu.mem_bw B/s, gpu.mem_empirical_constant_latency s, gpu.mem_capacity B, "
              "gpu.*_tc_flops FLOP/s dense, gpu.power W, node.*_bw B/s per GPU one way, "
              "node.p2p_latency s, misc.other_mem B; memory-bound op (norms, activations, "
              "embedding, RoPE, KV write) in s = bytes / (gpu.mem_bw * "
              "gpu.mem_bw_empirical_scaling_factor) + gpu.mem_empirical_constant_latency")
SOURCE_FILES = {"gemm": "gemm_perf", "gemm_shapes": "gemm_perf",
                "context_attention": "context_attention_perf",
                "generation_attention": "generation_attention_perf",
                "allreduce": "custom_allreduce_perf", "moe": "moe_perf"}


# --------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelArch:
    """The fields of one ``data/profiles/models/*.yaml`` that shape its operators."""

    name: str
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    experts: int = 0
    topk: int = 0
    expert_ffn: int = 0

    @classmethod
    def from_yaml(cls, y: dict) -> ModelArch:
        h, heads = int(y["hidden_size"]), int(y["num_heads"])
        kv, d = int(y.get("num_kv_heads", heads)), int(y.get("head_dim", h // heads))
        moe = [int(y.get(k, 0)) for k in ("num_experts", "experts_per_token", "expert_ffn_size")]
        return cls(y["name"], h, int(y["ffn_size"]), heads, kv, d, int(y["vocab_size"]), *moe)

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    def heads_per_gpu(self, tp: int) -> tuple[int, int]:
        """(query heads, KV heads) per GPU; KV heads are replicated when tp > kv heads."""
        return self.heads // tp, -(-self.kv_heads // tp)

    def gemm_shapes(self, tp: int) -> set[tuple[int, int]]:
        """(n, k) of every GEMM aiconfigurator prices for this model at ``tp``."""
        (nq, nkv), h, d = self.heads_per_gpu(tp), self.hidden, self.head_dim
        shapes = {((nq + 2 * nkv) * d, h), (h, nq * d), (self.vocab // tp, h)}
        if self.is_moe:
            return shapes | {(self.experts, h)}
        return shapes | {(2 * self.ffn // tp, h), (h, self.ffn // tp)}

    def attention_key(self, tp: int) -> tuple[int, int]:
        """(n_kv, heads) as the attention tables key it: n_kv 0 = MHA (kv == query heads)."""
        nq, nkv = self.heads_per_gpu(tp)
        return (0 if nq == nkv else nkv), nq


def load_models(models_dir: Path) -> list[ModelArch]:
    models = [ModelArch.from_yaml(yaml.safe_load(p.read_text()))
              for p in sorted(models_dir.glob("*.yaml"))]
    for a in models:
        if a.head_dim != HEAD_DIM:
            raise SystemExit(f"{a.name}: head_dim {a.head_dim}; the tables hold {HEAD_DIM} only")
    return models


# --------------------------------------------------------------------------- engine access
def log_axis(lo, hi, step_oct=0.25, extra=()):
    """Integers ``step_oct`` octaves apart from lo to hi, plus ``extra`` (kept as given)."""
    n = int(round(math.log2(hi / lo) / step_oct))
    vals = {int(round(lo * 2 ** (i * step_oct))) for i in range(n + 1)}
    return sorted({v for v in vals if lo <= v <= hi} | {int(v) for v in extra})


def fill_axis(values, lo, hi, quantum=16, fill_from=4096):
    """Measured values, plus points <= 1/4 octave apart in gaps > 0.45 octave above fill_from."""
    vals = sorted({int(v) for v in values if lo <= v <= hi} | {int(lo), int(hi)})
    out = set(vals)
    for a, b in zip(vals[:-1], vals[1:], strict=True):
        gap = math.log2(b / a)
        if gap > 0.45 and b > fill_from:
            nfill = math.ceil(gap / 0.25) - 1
            fill = (round(a * 2 ** (gap * i / (nfill + 1)) / quantum) * quantum
                    for i in range(1, nfill + 1))
            out |= {v for v in fill if a < v < b}
    return sorted(out)


def keys_at(nested: dict, depth: int) -> set:
    """All keys ``depth`` levels down a nested dict (0 = the top level)."""
    if depth == 0:
        return set(nested)
    return set().union(*(keys_at(v, depth - 1) for v in nested.values()))


class Evaluator:
    """One-op-per-shape evaluation on aiconfigurator's compiled engine, batched."""

    def __init__(self, db):
        self.handle = EngineHandle.for_database(db)
        self.calls = self.failures = 0

    def __call__(self, ops: list[dict], **kw) -> list[float]:
        names = [next(iter(o.values()))["name"] for o in ops]  # results are name-folded
        try:
            self.calls += 1
            res = {r[0]: r[1] for r in self.handle.evaluate_ops_json(json.dumps(ops), **kw)}
            return [res.get(n, math.nan) for n in names]
        except Exception:  # noqa: BLE001 -- a shape aiconfigurator cannot answer: one by one
            return [self.one(o, kw) for o in ops]

    def one(self, op_spec: dict, kw: dict) -> float:
        try:
            self.calls += 1
            return self.handle.evaluate_ops_json(json.dumps([op_spec]), **kw)[0][1]
        except Exception:  # noqa: BLE001 -- no answer: NaN
            self.failures += 1
            return math.nan


def op(kind: str, name: str, **fields) -> dict:
    return {kind: {"name": name, "scale_factor": 1.0, **fields}}


def gemm_op(name, n, k):
    return op("Gemm", name, n=int(n), k=int(k), quant_mode=DTYPE, scale_num_tokens=1,
              low_precision_input=False, seq_split=1, below_grid_sol=False)


def attention_op(ctx: bool, name, n, n_kv, lanes):
    extra = {"fmha_quant_mode": DTYPE, "use_qk_norm": False, "cp_size": 1} if ctx else {}
    return op("ContextAttention" if ctx else "GenerationAttention", name, n=int(n),
              n_kv=int(n_kv), head_size=HEAD_DIM, window_size=0, kv_cache_dtype=DTYPE,
              lane_order=lanes, **extra)


def moe_op(name, a: ModelArch, moe_tp, moe_ep):
    return op("Moe", name, hidden_size=a.hidden, inter_size=a.expert_ffn, topk=a.topk,
              num_experts=a.experts, moe_tp_size=int(moe_tp), moe_ep_size=int(moe_ep),
              attention_dp_size=1, quant_mode=DTYPE, workload_distribution=MOE_DIST,
              is_gated=True, moe_backend=None, enable_eplb=False, is_context=True)


def ctx_extras_ms(gpu: dict, n: int, n_kv: int) -> float:
    """The token-independent RoPE + K/V-write extras aiconfigurator's ContextAttention adds
    (bf16, no QK-norm): 1.1 * (2 memop(2q + 2k) + 2 memop(2k)) bytes, q = n d, k = n_kv d."""
    bw = gpu["mem_bw"] * gpu.get("mem_bw_empirical_scaling_factor", 1.0)
    c = gpu.get("mem_empirical_constant_latency", 0.0)
    q, k = n * HEAD_DIM, n_kv * HEAD_DIM
    return 1.1 * (2 * ((2 * q + 2 * k) / bw + c) + 2 * (2 * k / bw + c)) * 1e3


# --------------------------------------------------------------------------- tables
def export_gemm(ev, db, shapes=None) -> pd.DataFrame:
    """The generic grid (shapes None: measured n, k plus fill up to 262144 / 131072) or the
    m-curves of the given (n, k). m: measured values, the one after the last (aiconfigurator's
    beyond-grid util hold jumps there), a quarter-octave extension to 131072 and, for the
    shapes, an eighth-octave axis (off-grid shapes get their curve by util transfer, which
    bends between measured m)."""
    view = {getattr(q, "name", str(q)): v
            for q, v in load_view(db, "_gemm_data", PerfDataFilename.gemm).items()}[DTYPE]
    ms = {int(m) for m in view}
    m_axis = ms | {max(ms) + 1} | {v for v in log_axis(1024, 131072) if v > max(ms)}
    if shapes is None:
        ns, ks = keys_at(view, 1) | {8, 16}, keys_at(view, 2)  # n 8, 16: MoE routers
        shapes = [(n, k) for n in fill_axis(ns, 8, 262144) for k in fill_axis(ks, 32, 131072)]
    else:
        m_axis |= set(log_axis(16, 131072, 0.125))
    ops = [gemm_op(f"g{n}_{k}", n, k) for n, k in shapes]
    rows = []
    for m in sorted(m_axis):
        vals = ev(ops, is_context=True, batch_size=1, s=1, x=m)
        rows += [(DTYPE, m, n, k, v) for (n, k), v in zip(shapes, vals, strict=True)]
    return pd.DataFrame(rows, columns=["quant", "m", "n", "k", "t_ms"])


def measured_attention(view, ctx: bool) -> tuple[set, set, set]:
    """(n_kv, heads) keys, s values and b values measured for bf16 / head_dim 128."""
    keys, ss, bs = set(), set(), set()
    for fq, by_fmha in view.items() if ctx else [(DTYPE, view)]:
        for kq, by_kv in by_fmha.items():
            if getattr(fq, "name", fq) != DTYPE or getattr(kq, "name", kq) != DTYPE:
                continue
            for nkv, by_head in by_kv.items():
                for n, grid in by_head.get(HEAD_DIM, {}).get(0, {}).items():  # window 0
                    keys.add((int(nkv), int(n)))
                    outer, inner = set(grid), keys_at(grid, 1)  # ctx [s][b], gen [b][s]
                    ss, bs = (ss | outer, bs | inner) if ctx else (ss | inner, bs | outer)
    return keys, ss, bs


def export_attention(ev, db, gpu, ctx: bool, model_keys: set) -> tuple[pd.DataFrame, list]:
    """Context attention (table value WITHOUT the extras, prefix 0) or generation attention
    (s = KV length), for every measured (n_kv, heads) plus the shipped models' keys."""
    attr = "_context_attention_data" if ctx else "_generation_attention_data"
    fname = PerfDataFilename.context_attention if ctx else PerfDataFilename.generation_attention
    keys, ss, bs = measured_attention(load_view(db, attr, fname), ctx)
    added, keys = sorted(model_keys - keys), sorted(keys | model_keys)
    if ctx:
        s_axis = log_axis(16, 131072, extra=(1, 2, 4, 8, *ss, max(ss) + 1))
        b_axis = sorted({2**i for i in range(11)} | {max(bs) + 1})
    else:  # the measured s range shrinks with b; beyond it aiconfigurator's b-curve bends
        # (half-octave b) and jumps at each measured b (kept exact by the point b - 1)
        s_axis = log_axis(16, 131072, extra=(1, 2, 4, 8, max(ss) + 1, 262144))
        b_axis = sorted(set(log_axis(1, 4096, 0.5)) | {b - 1 for b in bs if b > 2}
                        | {max(bs) + 1})
    lanes = resolved_lane_order_for_op(db, attr, None)
    real = [(n, n if nkv == 0 else nkv) for nkv, n in keys]
    ops = [attention_op(ctx, f"a{i}", n, kv, lanes) for i, (n, kv) in enumerate(real)]
    extras = [ctx_extras_ms(gpu, n, kv) if ctx else 0.0 for n, kv in real]
    rows = []
    for b in b_axis:
        for s in s_axis:
            vals = ev(ops, is_context=ctx, batch_size=b, s=s, prefix=0)
            rows += [(DTYPE, DTYPE, nkv, HEAD_DIM, n, b, s, v - e)
                     for (nkv, n), v, e in zip(keys, vals, extras, strict=True)]
    df = pd.DataFrame(rows, columns=["fmha", "kv", "n_kv", "head", "heads", "b", "s", "t_ms"])
    return (df if ctx else df.drop(columns="fmha")), added


def export_allreduce(ev, db) -> pd.DataFrame:
    """Custom all-reduce of ``elems`` 2-byte elements at every tp, 1 .. 2^31 elements."""
    view = load_view(db, "_custom_allreduce_data", PerfDataFilename.custom_allreduce)
    tps = sorted({int(tp) for tp in keys_at(view, 1)} | {2, 4, 8})
    ops = [op("CustomAllReduce", f"ar{tp}", hidden_size=1, tp_size=tp, quant="half", seq_split=1)
           for tp in tps]
    rows = []
    for e in log_axis(1, 2**31):
        vals = ev(ops, is_context=True, batch_size=1, s=1, x=e)
        rows += [(tp, e, v) for tp, v in zip(tps, vals, strict=True)]
    return pd.DataFrame(rows, columns=["tp", "elems", "t_ms"])


def export_moe(ev, db, models, tps=TPS) -> tuple[pd.DataFrame, list]:
    """The shipped MoE models at (moe_tp, moe_ep) = (tp, 1) and (1, tp), on the measured token
    counts plus a quarter-octave axis; configs aiconfigurator has no data for are left out."""
    configs = sorted({(a, tp // ep, ep) for a in models if a.is_moe for tp in tps for ep in {1, tp}},
                     key=lambda c: (c[0].name, c[1] * c[2], c[2]))
    view = load_view(db, "_moe_data", PerfDataFilename.moe)
    measured = {int(t) for t in keys_at(view, 8)}  # quant/dist/topk/E/h/inter/tp/ep/tokens
    ops = [moe_op(f"moe{i}", a, mtp, mep) for i, (a, mtp, mep) in enumerate(configs)]
    rows, failed = [], set()
    for t in sorted(set(log_axis(1, 131072)) | measured | {max(measured) + 1}):
        vals = ev(ops, is_context=True, batch_size=1, s=1, x=t)
        failed |= {i for i, v in enumerate(vals) if math.isnan(v)}
        rows += [(i, DTYPE, MOE_DIST, a.hidden, a.expert_ffn, a.topk, a.experts, mtp, mep, t, v)
                 for i, ((a, mtp, mep), v) in enumerate(zip(configs, vals, strict=True))]
    df = pd.DataFrame(rows, columns=["cfg", "quant", "dist", "hidden", "inter", "topk", "experts",
                                     "moe_tp", "moe_ep", "tokens", "t_ms"])
    missing = [f"{configs[i][0].name} moe_tp={configs[i][1]} moe_ep={configs[i][2]}"
               for i in sorted(failed)]
    return df[~df.cfg.isin(failed)].drop(columns="cfg").reset_index(drop=True), missing


# --------------------------------------------------------------------------- output
def table_sources(db) -> dict[str, list[dict]]:
    """Per exported table, the aiconfigurator data files its values may come from, in the
    engine's priority order (channel: primary; fallback = an older version of the same
    backend; cross_backend = a sibling backend). Paths are relative to the installed
    ``aiconfigurator_core/systems`` folder."""
    db._materialize_source_reports()  # resolves every op file's sources, as the engine does
    root = Path(db.systems_root)
    return {table: [{"version": r["version"], "channel": r["channel"],
                     "path": Path(r["path"]).relative_to(root).as_posix()}
                    for r in db.data_provenance.get(f"{stem}.parquet", []) if r["exists"]]
            for table, stem in SOURCE_FILES.items()}


def write_table(df: pd.DataFrame, path: Path) -> dict:
    df = df.copy()
    for c in df.columns:
        if c == "t_ms":
            df[c] = df[c].astype("float32")
        elif pd.api.types.is_numeric_dtype(df[c]):
            df[c] = df[c].astype("int64" if df[c].max() >= 2**31 else "int32")
        else:
            df[c] = df[c].astype(str).astype("category")
    df.to_parquet(path, compression="zstd", index=False)
    return {"rows": len(df), "bytes": path.stat().st_size, "nan": int(df.t_ms.isna().sum()),
            "columns": list(df.columns)}


def export_target(system: str, backend: str, models: list[ModelArch], args) -> dict:
    version = perf_database.resolve_query_version(system, backend, "current")
    db = perf_database.get_database(system, backend, version)
    spec = perf_database.load_system_spec(system)
    ev, outdir = Evaluator(db), Path(args.out) / system / backend / version
    outdir.mkdir(parents=True, exist_ok=True)
    shapes = sorted(set().union(*(a.gemm_shapes(tp) for a in models for tp in TPS)))
    att_keys = {a.attention_key(tp) for a in models for tp in TPS if a.heads >= tp}
    ctx, ctx_added = export_attention(ev, db, spec["gpu"], True, att_keys)
    gen, gen_added = export_attention(ev, db, spec["gpu"], False, att_keys)
    moe, moe_missing = export_moe(ev, db, models)
    tables = {"gemm": export_gemm(ev, db), "gemm_shapes": export_gemm(ev, db, shapes),
              "context_attention": ctx, "generation_attention": gen,
              "allreduce": export_allreduce(ev, db), "moe": moe}
    files = {name: write_table(df, outdir / f"{name}.parquet") for name, df in tables.items()}
    sources = table_sources(db)
    device = pq.read_table(Path(db.systems_root) / sources["gemm"][0]["path"], columns=["device"])
    meta = {
        "system": system, "device": device.column(0)[0].as_py(), "backend": backend,
        "backend_version": version, "aiconfigurator_core_version": AIC_VERSION,
        "export_date": args.date, "command": args.command,
        "database_mode": "SILICON (aiconfigurator's default, as in its own estimates)",
        "dtypes": {"gemm": DTYPE, "moe": DTYPE, "kv_cache": DTYPE, "fmha": DTYPE,
                   "head_dim": HEAD_DIM, "allreduce": "2-byte elements",
                   "moe_distribution": MOE_DIST},
        "system_spec": {k: spec[k] for k in ("gpu", "node")} | {"misc": {
            k: v for k, v in spec.get("misc", {}).items() if k != "nccl_mem"}},
        "system_spec_units": SPEC_UNITS,
        "models": [a.name for a in models], "gemm_shapes_tp": list(TPS),
        "attention_keys_added": {"context": [list(k) for k in ctx_added],
                                 "generation": [list(k) for k in gen_added]},
        "moe_missing": moe_missing, "sources": sources, "files": files,
        "units": "t_ms: milliseconds per call of one operator (one layer)",
        "engine_calls": ev.calls, "engine_failures": ev.failures,
        "licence": f"Apache-2.0 (LICENSE); {ATTRIBUTION}; values resampled through its engine",
    }
    (outdir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", default=",".join(TARGETS), help="system/backend,...")
    ap.add_argument("--models", default=str(MODELS_DIR), help="folder of model YAML files")
    ap.add_argument("--out", default=str(OUT_DIR))
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    args = ap.parse_args(argv)
    args.command = " ".join(["python scripts/export_kernel_tables.py",
                             *(sys.argv[1:] if argv is None else argv)])
    models = load_models(Path(args.models))
    for target in args.targets.split(","):
        meta = export_target(*target.split("/"), models, args)
        sizes = sum(f["bytes"] for f in meta["files"].values())
        print(f"{target}/{meta['backend_version']}: {sizes / 1e6:.2f} MB, "
              f"{meta['engine_calls']} engine calls, MoE missing: {meta['moe_missing']}",
              flush=True)


if __name__ == "__main__":
    main()
