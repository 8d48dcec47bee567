"""Fidelity targets: the kernel model against its database, ``vllm`` against vLLM's own
scheduler, and the engine against real vLLM runs (``make bench``; the figures the README
and notebook 10 quote)."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

# aiconfigurator's (system, backend) folders -> the hardware profiles that read them
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


def kernel_errors() -> pd.DataFrame:
    """|relative error| of every reference row: the kernel model's iteration time against
    aiconfigurator's own estimate for the same iteration (data/latency/kernels/)."""
    from hybridsched.latency.kernels import KernelLatency
    from hybridsched.latency.profiles import load_hardware_profile, load_model_profile
    from hybridsched.paths import data_dir

    ref = pd.read_parquet(data_dir() / "latency" / "kernels" / "reference_estimates.parquet")
    out = []
    for (system, backend, model, tp, ep), g in ref.groupby(
        ["system", "backend", "model", "tp", "ep"]
    ):
        hw = load_hardware_profile(PROFILES[(system, backend)])
        lat = KernelLatency(load_model_profile(model), hw, int(tp), int(ep))
        for kind, k in g.groupby("kind"):
            col = {c: k[c].to_numpy(float) for c in k.columns if k[c].dtype.kind in "if"}
            if kind == "prefill":
                t = lat.prefill_time(col["sum_tokens"], col["sum_sq_tokens"])
            elif kind == "decode":
                t = lat.decode_time(col["batch_size"], col["sum_context"])
            else:
                t = lat.mixed_time(
                    col["batch_size"], col["sum_context"], col["chunk_tokens"],
                    col["chunk_sq_diff"], col["chunk_prefix"],
                )  # fmt: skip
            t = np.asarray(t) - hw.iteration_overhead_s  # the estimates hold no host time
            rel = np.abs(t * 1e3 / col["aic_ms"] - 1)
            out.append(
                pd.DataFrame({"backend": backend, "system": system, "kind": kind, "err": rel})
            )
    return pd.concat(out, ignore_index=True)


def bench_kernels() -> None:
    print(
        "== kernel model vs aiconfigurator's own estimates (130,944 iterations, 12 GPU x backend) =="
    )
    t0 = time.perf_counter()
    e = kernel_errors()
    for key in ("kind", "backend"):
        for name, g in e.groupby(key):
            q = g["err"].quantile([0.5, 0.9]).to_numpy()
            print(
                f"  {name:8s}: median {q[0]:.3%}  p90 {q[1]:.3%}  max {g['err'].max():.2%}  ({len(g)} rows)"
            )
    med = e["err"].median()
    verdict = "PASS" if med <= 0.05 else "FAIL"
    print(f"  all: median {med:.3%} (target <= 5%: {verdict}), {time.perf_counter() - t0:.0f} s")


def bench_vllm() -> None:
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from tests.engine.test_vllm_fixtures import FIXTURES, engine_steps, recorded_steps, replay

    print("== vllm policy vs vLLM 0.33's recorded Scheduler/AsyncScheduler, step by step ==")
    for path in sorted(FIXTURES.glob("*.json")):
        fx = json.loads(path.read_text())
        want = {k: dict(s) for k, s in enumerate(recorded_steps(fx)) if s}
        got = engine_steps(replay(fx))
        same = sum(1 for k in want if got.get(k) == {r: n for r, n in want[k].items()})
        print(f"  {path.stem:18s}: {same:5d} of {len(want):5d} steps equal")


def bench_real() -> None:
    from hybridsched.studies.validation import leave_one_run_out, mape_of_means
    from hybridsched.workloads.real_runs import list_llmservingsim_runs, load_run

    print(
        "== engine vs real vLLM runs (LLMServingSim's 4 runs), overheads fitted leave-one-run-out =="
    )
    t0 = time.perf_counter()
    runs = [load_run(n) for n in list_llmservingsim_runs()]
    table, _ = leave_one_run_out(runs)
    for r in table.itertuples():
        print(
            f"  {r.run:40s} TTFT mean {r.ttft_mean_rel_error:+7.1%}  TPOT mean "
            f"{r.tpot_mean_rel_error:+7.1%}  E2E mean {r.e2e_mean_rel_error:+7.1%}  "
            f"(fitted on the others: {r.fitted_iteration_overhead_s * 1e3:.2f} ms/iteration)"
        )
    m = mape_of_means(table)
    print(
        f"  MAPE of the means: TTFT {m['ttft']:.1%} (aim <= 25%), TPOT {m['tpot']:.1%}, "
        f"E2E {m['e2e']:.1%} (aim <= 10%); {time.perf_counter() - t0:.0f} s"
    )
