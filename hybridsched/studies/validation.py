"""Real serving runs replayed through the engine, and how far the engine is from them.

``validate(run)`` replays a real benchmark's exact requests (lengths, arrival times, the
run's vLLM settings: replicas, tp, ``max_num_seqs``, ``max_num_batched_tokens``, block
size, KV blocks, prefix caching) through the ``vllm`` policy on a profile of measured
kernels, and compares each request's TTFT, TPOT (``(E2E - TTFT) / (output - 1)``) and E2E
with the measured ones: per request, and as mean, p50, p90 and p99 with their relative
errors (``(simulated - real) / real``), plus the mean absolute percentage error over
requests (MAPE). ``leave_one_run_out`` fits the two overheads the kernel tables do not
hold (a per-iteration host time, and for runs served over HTTP a per-request API time) on
every run but one and scores the one left out, so no run is scored with overheads fitted on
itself. A run driven in-process (LLMServingSim's, through vLLM's ``AsyncLLM``) has no API
time: its request overhead is 0.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from hybridsched.engine.admission import Admission
from hybridsched.instance import Cluster, Instance
from hybridsched.latency.profiles import load_hardware_profile
from hybridsched.studies.run import run_policy
from hybridsched.workloads.requests import validate_requests

METRICS = ("ttft", "tpot", "e2e")
STATS = ("mean", "p50", "p90", "p99")
# Hugging Face model names -> model profiles (data/profiles/models).
MODELS = {
    "meta-llama/Llama-3.1-8B": "llama-3.1-8b",
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b",
    "meta-llama/Llama-3.1-70B": "llama-3.1-70b",
    "meta-llama/Llama-3.1-70B-Instruct": "llama-3.1-70b",
    "meta-llama/Llama-2-70b-hf": "llama-2-70b",
    "meta-llama/Llama-2-70b-chat-hf": "llama-2-70b",
    "mistralai/Mixtral-8x7B-v0.1": "mixtral-8x7b",
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "mixtral-8x7b",
    "Qwen/Qwen3-32B": "qwen3-32b",
    "Qwen/Qwen3-30B-A3B": "qwen3-30b-a3b",
    "Qwen/Qwen3-30B-A3B-Instruct-2507": "qwen3-30b-a3b",
}
# GPU names as runs record them -> hardware profiles of measured kernels (vLLM backend).
GPUS = (
    ("RTX 4090", "rtx-4090-vllm"),
    ("RTX PRO 6000", "rtx-pro-6000-vllm"),
    ("H100", "h100-sxm-vllm"),
    ("H200", "h200-sxm-vllm"),
    ("A100", "a100-sxm-vllm"),
    ("B200", "b200-vllm"),
    ("L40S", "l40s-vllm"),
)


@dataclass(frozen=True)
class Overheads:
    """Times the kernel tables do not hold; ``None`` keeps the hardware profile's."""

    iteration_s: float | None = None  # host and scheduler time per iteration
    request_s: float | None = None  # API time per request (tokenizing, streaming)


@dataclass
class Validation:
    """One run replayed: per-request comparison, summary statistics and errors."""

    run: str
    model: str
    hardware: str
    overheads: Overheads
    requests: pd.DataFrame  # per request: <metric>_real, <metric>_sim, <metric>_rel_error
    summary: pd.DataFrame  # metric, stat, real, sim, rel_error
    errors: dict  # <metric>_<stat>_rel_error and <metric>_mape
    settings: dict = field(default_factory=dict)


def model_of(run, model: str | None = None) -> str:
    """The model profile: ``model``, else the run's model name mapped by ``MODELS``."""
    if model:
        return model
    name = str(run.settings.get("model") or "")
    if name not in MODELS:
        raise ValueError(
            f"{run.source}: model {name!r} has no profile here; give one with --model "
            f"(known: {', '.join(sorted(set(MODELS.values())))})"
        )
    return MODELS[name]


def hardware_of(run, hardware: str | None = None) -> str:
    """The hardware profile: ``hardware``, else the run's GPU name mapped by ``GPUS``."""
    if hardware:
        return hardware
    gpu = str(run.settings.get("gpu") or "")
    for key, profile in GPUS:
        if key.lower() in gpu.lower():
            return profile
    raise ValueError(f"{run.source}: GPU {gpu!r} has no profile here; give one with --hardware")


def instance_of(run, model: str, hardware: str, overheads: Overheads) -> Instance:
    """The run's requests on its replicas, with its vLLM settings and ``overheads``."""
    st = run.settings
    hw = load_hardware_profile(hardware)
    if overheads.request_s is None and st.get("api_server") is False:
        overheads = replace(overheads, request_s=0.0)  # driven in-process: no API time
    if overheads.iteration_s is not None:
        hw = replace(hw, iteration_overhead_s=float(overheads.iteration_s))
    if overheads.request_s is not None:
        hw = replace(hw, request_overhead_s=float(overheads.request_s))
    cluster = Cluster(
        model=model,
        hardware=hardware,
        num_clients=int(st.get("dp") or 1),
        tp=int(st.get("tp") or 1),
        max_batch=int(st.get("max_num_seqs") or 256),
        kv_blocks=st.get("num_gpu_blocks") or None,
        block_size=int(st.get("block_size") or 16),
        gpu_memory_utilization=float(st.get("gpu_memory_utilization") or 0.9),
    )
    budget = int(st.get("max_num_batched_tokens") or 2048)
    requests = validate_requests(run.requests)
    return Instance(requests, cluster.make_clients(hardware=hw), prefill_budget_tokens=budget)


def replay(run, model: str, hardware: str, overheads: Overheads = Overheads()) -> pd.DataFrame:
    """Simulated ``ttft_s``, ``tpot_s``, ``e2e_s`` per request, in the run's order."""
    st = run.settings
    inst = instance_of(run, model, hardware, overheads)
    async_ = st.get("async_scheduling")
    if async_ is None:
        async_ = load_hardware_profile(hardware).async_scheduling
    adm = Admission(
        "on-demand",
        block_size=int(st.get("block_size") or 16),
        async_scheduling=bool(async_),
        prefix_caching=bool(st.get("enable_prefix_caching", True)),
    )
    router = "vllm-dp" if inst.num_clients > 1 else None
    res = run_policy(inst, "vllm", admission=adm, router=router)
    sim = res.requests.set_index("request_id")[["ttft_s", "tpot_s", "e2e_s"]]
    return sim.loc[run.requests["request_id"].to_numpy()].reset_index()


def compare(measured: pd.DataFrame, simulated: pd.DataFrame) -> pd.DataFrame:
    """Per request: each metric real, simulated and relative error."""
    out = measured[["request_id", "arrival_s", "output_tokens"]].reset_index(drop=True).copy()
    for m in METRICS:
        real = measured[f"{m}_s"].to_numpy(float)
        sim = simulated[f"{m}_s"].to_numpy(float)
        out[f"{m}_real_s"], out[f"{m}_sim_s"] = real, sim
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"{m}_rel_error"] = np.where(real > 0, (sim - real) / real, np.nan)
    return out


def _stat(x: np.ndarray, stat: str) -> float:
    x = x[np.isfinite(x)]
    if not len(x):
        return float("nan")
    return float(x.mean()) if stat == "mean" else float(np.percentile(x, int(stat[1:])))


def summarize(per_request: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Mean, p50, p90, p99 of each metric, real and simulated, with relative errors; and
    the errors as flat keys (``ttft_mean_rel_error``, ``ttft_mape``, ...)."""
    rows, errors = [], {}
    for m in METRICS:
        real, sim = per_request[f"{m}_real_s"].to_numpy(), per_request[f"{m}_sim_s"].to_numpy()
        for stat in STATS:
            a, b = _stat(real, stat), _stat(sim, stat)
            rel = (b - a) / a if a > 0 else float("nan")
            rows.append({"metric": m, "stat": stat, "real_s": a, "sim_s": b, "rel_error": rel})
            errors[f"{m}_{stat}_rel_error"] = rel
        err = per_request[f"{m}_rel_error"].to_numpy(float)
        errors[f"{m}_mape"] = float(np.nanmean(np.abs(err)))
    return pd.DataFrame(rows), errors


def validate(
    run, model: str | None = None, hardware: str | None = None, overheads=Overheads()
) -> Validation:
    """Replay ``run`` (a ``workloads.real_runs.RealRun``) and compare (module docstring)."""
    m, h = model_of(run, model), hardware_of(run, hardware)
    per_request = compare(run.measured, replay(run, m, h, overheads))
    summary, errors = summarize(per_request)
    return Validation(run.name, m, h, overheads, per_request, summary, errors, dict(run.settings))


# --- overheads fitted on other runs ------------------------------------------------------

# Host time per iteration tried (s): notebook 10's grid.
ITERATION_GRID_S = (0.0, 0.0005, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.0035, 0.004, 0.005)
REQUEST_GRID_S = (None,)  # the runs' own: none for a run driven in-process


def objective(errors: dict) -> float:
    """What a fit minimizes: the mean of |relative error| of mean TTFT, TPOT and E2E."""
    return float(np.mean([abs(errors[f"{m}_mean_rel_error"]) for m in METRICS]))


def leave_one_run_out(
    runs: list,
    models: dict | None = None,
    hardware: dict | None = None,
    iteration_grid=ITERATION_GRID_S,
    request_grid=REQUEST_GRID_S,
) -> tuple[pd.DataFrame, list[Validation]]:
    """For each run, the overheads (from the grids) that fit the other runs best, and that
    run scored with them: one row per run (``fitted_*`` and the held-out errors)."""
    models, hardware = models or {}, hardware or {}
    grid = [Overheads(a, b) for a, b in itertools.product(iteration_grid, request_grid)]
    scores = {}  # (run, overheads) -> errors
    for run in runs:
        m, h = model_of(run, models.get(run.name)), hardware_of(run, hardware.get(run.name))
        for ov in grid:
            per_request = compare(run.measured, replay(run, m, h, ov))
            scores[(run.name, ov)] = summarize(per_request)[1]
    rows, held = [], []
    for run in runs:
        others = [r.name for r in runs if r.name != run.name] or [run.name]
        best = min(grid, key=lambda ov: np.mean([objective(scores[(o, ov)]) for o in others]))
        v = validate(run, models.get(run.name), hardware.get(run.name), best)
        held.append(v)
        rows.append(
            {
                "run": run.name,
                "model": v.model,
                "hardware": v.hardware,
                "fitted_iteration_overhead_s": best.iteration_s,
                "fitted_request_overhead_s": best.request_s,
                **{k: v.errors[k] for k in _headline_keys()},
            }
        )
    return pd.DataFrame(rows), held


def _headline_keys() -> list[str]:
    return [f"{m}_mean_rel_error" for m in METRICS] + [f"{m}_mape" for m in METRICS]


def mape_of_means(table: pd.DataFrame) -> dict:
    """Over runs: mean |relative error| of each metric's mean (the scores simulators quote)."""
    return {m: float(table[f"{m}_mean_rel_error"].abs().mean()) for m in METRICS}
