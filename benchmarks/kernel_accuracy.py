"""The kernel model against aiconfigurator's own per-iteration estimates.

``data/latency/kernels/reference_estimates.parquet`` holds aiconfigurator-core 0.12.0's own
estimate of 130,944 iterations (prefill, decode, mixed and chunk steps; every shipped model
that fits, on the 12 exported GPU x backend tables, tp 1 to 8, MoE with ep 1 and ep = tp).
``kernel_errors()`` prices every row with ``KernelLatency`` through the same sums the engine
passes (the parquet's sum columns) on the hardware profile that reads that table, and returns
the relative errors; ``bench_kernels()`` prints median / p90 / max per step kind, backend and
table (target: median <= 5%).

The reference has no host time per iteration, so the profiles' ``iteration_overhead_s`` is
set to 0 here; everything else is the profile as shipped. Run alone with
``python benchmarks/kernel_accuracy.py`` or as ``benchmarks/run.py --only kernels``.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd

TARGET_MEDIAN = 0.05

# aiconfigurator's (system, backend) tables -> the hardware profile that reads them
PROFILES = {
    ("h100_sxm", "vllm"): "h100-sxm-vllm",
    ("h200_sxm", "vllm"): "h200-sxm-vllm",
    ("a100_sxm", "vllm"): "a100-sxm-vllm",
    ("b200_sxm", "vllm"): "b200-vllm",
    ("rtx_pro_6000_server", "vllm"): "rtx-pro-6000-vllm",
    ("l40s", "vllm"): "l40s-vllm",
    ("h100_sxm", "sglang"): "h100-sxm-sglang",
    ("h100_sxm", "trtllm"): "h100-sxm-trtllm",
    ("h200_sxm", "sglang"): "h200-sxm-sglang",
    ("h200_sxm", "trtllm"): "h200-sxm-trtllm",
    ("b200_sxm", "sglang"): "b200-sglang",
    ("b200_sxm", "trtllm"): "b200-trtllm",
}


def reference() -> pd.DataFrame:
    from hybridsched.paths import data_dir

    return pd.read_parquet(data_dir() / "latency" / "kernels" / "reference_estimates.parquet")


def model_times(lat, rows: pd.DataFrame) -> np.ndarray:
    """``lat``'s time (ms) of each reference row, from the row's sums (the engine's calls)."""
    col = {c: rows[c].to_numpy(float) for c in rows.columns if rows[c].dtype.kind in "if"}
    kind = rows["kind"].astype(str).to_numpy()
    out = np.full(len(rows), np.nan)
    pf, dc, mx = kind == "prefill", kind == "decode", np.isin(kind, ("mixed", "chunk"))
    out[pf] = lat.prefill_time(col["sum_tokens"][pf], col["sum_sq_tokens"][pf])
    out[dc] = lat.decode_time(col["batch_size"][dc], col["sum_context"][dc])
    out[mx] = lat.mixed_time(
        *(col[c][mx] for c in ("batch_size", "sum_context", "chunk_tokens", "chunk_sq_diff")),
        col["chunk_prefix"][mx],
    )
    return out * 1e3


def kernel_errors(ref: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every reference row with ``ours_ms`` and ``rel`` (signed relative error)."""
    from hybridsched.latency.kernels import KernelLatency
    from hybridsched.latency.profiles import load_hardware_profile, load_model_profile

    ref = reference() if ref is None else ref
    keys = ["system", "backend", "version", "model", "tp", "ep"]
    out = []
    for (system, backend, version, model, tp, ep), g in ref.groupby(keys, observed=True):
        hw = load_hardware_profile(PROFILES[(system, backend)])
        if hw.kernels != f"{system}/{backend}/{version}":
            raise ValueError(
                f"{hw.name} reads {hw.kernels}, the reference is {system}/{backend}/{version}"
            )
        hw = replace(hw, iteration_overhead_s=0.0)  # not in aiconfigurator's estimates
        lat = KernelLatency(load_model_profile(model), hw, int(tp), int(ep))
        out.append(g.assign(profile=hw.name, ours_ms=model_times(lat, g)))
    df = pd.concat(out, ignore_index=True)
    df["rel"] = df["ours_ms"] / df["aic_ms"] - 1.0
    return df


def summary(df: pd.DataFrame, by) -> pd.DataFrame:
    """|relative error| median, p90, max and rows per group (``by`` None: all rows)."""
    err = df["rel"].abs()
    groups = [("all", err)] if by is None else err.groupby([df[c].astype(str) for c in by])
    rows = {
        name: {"median": e.median(), "p90": e.quantile(0.9), "max": e.max(), "rows": len(e)}
        for name, e in groups
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def bench_kernels() -> None:
    t0 = time.perf_counter()
    df = kernel_errors()
    wall = time.perf_counter() - t0
    print(
        f"== kernel model vs aiconfigurator-core 0.12.0's own estimates: {len(df):,} iterations, "
        f"{df.groupby(['system', 'backend']).ngroups} GPU x backend tables "
        "(|relative error|; iteration_overhead_s set to 0, as in the reference) =="
    )

    def show(title, table):
        print(f"  {title}")
        for name, r in table.iterrows():
            label = name if isinstance(name, str) else " / ".join(name)
            print(
                f"    {label:28s} median {r['median']:7.3%}  p90 {r['p90']:7.3%}  "
                f"max {r['max']:6.2%}  ({int(r['rows']):,} rows)"
            )

    show("by step kind", summary(df, ["kind"]))
    show("by backend", summary(df, ["backend"]))
    show("by backend x step kind", summary(df, ["backend", "kind"]))
    show("by table", summary(df, ["system", "backend"]))
    show("by model", summary(df, ["model"]))
    w = df.loc[df["rel"].abs().idxmax()]
    shape = {
        "prefill": f"{w['num_prompts']} prompts of {w['prompt_tokens']}",
        "decode": f"{w['batch']} requests at KV length {w['context_tokens']}",
        "mixed": f"{w['num_prompts']} prompts of {w['prompt_tokens']} + {w['batch']} decodes",
        "chunk": f"{w['prompt_tokens'] - w['prefix_tokens']} tokens after {w['prefix_tokens']}",
    }[str(w["kind"])]
    print(
        f"  worst: {w['kind']} of {shape}, {w['model']} tp {w['tp']} ep {w['ep']} on "
        f"{w['profile']}: {w['ours_ms']:.3f} ms against {w['aic_ms']:.3f} ms ({w['rel']:+.2%})"
    )
    all_ = summary(df, None).iloc[0]
    verdict = "PASS" if all_["median"] <= TARGET_MEDIAN else "FAIL"
    print(
        f"  all: median {all_['median']:.3%}  p90 {all_['p90']:.3%}  max {all_['max']:.2%}  "
        f"(target: median <= {TARGET_MEDIAN:.0%}: {verdict}); {wall:.1f} s"
    )


if __name__ == "__main__":
    bench_kernels()
