"""Real serving runs: the requests a benchmark sent and the latencies it measured.

A ``RealRun`` holds what a replay needs (``requests``: the request table with arrivals
relative to the first submission, and prefix identity where known), what was measured
(``measured``: per request ``ttft_s``, ``e2e_s``, ``tpot_s`` = (E2E - TTFT) / (output - 1))
and the serving settings of the run (``settings``: replicas, tp, ``max_num_seqs``,
``max_num_batched_tokens``, block size, KV blocks, prefix caching, GPU). Two formats:

- ``llmservingsim``: a folder with ``meta.json`` and ``requests.jsonl`` as LLMServingSim's
  benchmark writes them (vLLM's per-request ``RequestStateStats``); the four shipped runs
  are in ``data/validation/llmservingsim/`` (its README: sources, licence, clocks). TTFT
  and E2E are anchored at the request's arrival: the wall-clock ``arrival_time`` is moved
  onto the engine's monotonic clock by the offset of the fastest-admitted request
  (``max(arrival_time - queued_ts)``), as that README derives.
- ``vllm-bench``: the JSON of ``vllm bench serve --save-result --save-detailed``: per request
  ``input_lens``, ``output_lens``, ``ttfts``, ``itls`` (and ``start_times`` when the
  version records them: the submission times), with ``errors`` marking failed requests.

Bad input raises a ``ValueError`` naming the file, the field, the value and the row.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hybridsched.paths import data_dir

SHIPPED = "validation/llmservingsim"
FORMATS = ("llmservingsim", "vllm-bench")


@dataclass(frozen=True)
class RealRun:
    name: str
    requests: pd.DataFrame
    measured: pd.DataFrame
    settings: dict = field(default_factory=dict)
    source: str = ""


def list_llmservingsim_runs() -> list[str]:
    """The shipped runs, as ``HARDWARE/MODEL``."""
    root = data_dir() / SHIPPED / "runs"
    return sorted(str(p.parent.relative_to(root)) for p in root.glob("*/*/meta.json"))


def load_run(path: str | Path, format: str | None = None) -> RealRun:
    """A run from a file or folder (``format`` sniffed when not given), or a shipped name."""
    p = Path(path)
    if not p.exists() and str(path) in list_llmservingsim_runs():
        p = data_dir() / SHIPPED / "runs" / str(path)
    if format is not None and format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if not p.exists():
        shipped = ", ".join(list_llmservingsim_runs())
        raise ValueError(f"--run: {path} is neither a file, a folder nor a shipped run ({shipped})")
    if format is None:
        format = "llmservingsim" if p.is_dir() else "vllm-bench"
    return load_llmservingsim(p) if format == "llmservingsim" else load_vllm_bench(p)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a JSON file ({str(e).splitlines()[0]})") from None


def _numbers(where: str, name: str, values, lo: float = 0.0) -> np.ndarray:
    """``values`` as finite floats ``>= lo``; else an error naming the field and the row."""
    out = np.empty(len(values))
    for i, v in enumerate(values):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if not ok or not math.isfinite(v) or v < lo:
            raise ValueError(f"{where}: {name}[{i}] = {v!r}: must be a finite number >= {lo:g}")
        out[i] = v
    return out


def _measured(ids, arrival, prompt, output, ttft, e2e) -> tuple[pd.DataFrame, pd.DataFrame]:
    o = np.asarray(output, dtype=np.int64)
    requests = pd.DataFrame(
        {
            "request_id": ids,
            "prompt_tokens": np.asarray(prompt, dtype=np.int64),
            "output_tokens": o,
            "arrival_s": arrival - arrival.min(),
        }
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(o > 1, (e2e - ttft) / (o - 1), np.nan)
    measured = pd.DataFrame(
        {
            "request_id": ids,
            "arrival_s": requests["arrival_s"],
            "output_tokens": o,
            "ttft_s": ttft,
            "tpot_s": tpot,
            "e2e_s": e2e,
        }
    )
    return requests, measured


# --- LLMServingSim's benchmark ------------------------------------------------------------

_FIELDS = (
    "input_toks",
    "output_toks",
    "arrival_time",
    "queued_ts",
    "first_token_ts",
    "last_token_ts",
)


def _jsonl(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file") from None
    rows = []
    for i, line in enumerate(x for x in lines if x.strip()):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}: row {i} is not JSON") from None
        missing = [f for f in _FIELDS if f not in row]
        if missing:
            raise ValueError(f"{path}: row {i} lacks field {missing[0]}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no requests")
    return rows


def load_llmservingsim(path: str | Path) -> RealRun:
    """A run folder (``meta.json``, ``requests.jsonl``) of LLMServingSim's benchmark."""
    folder = Path(path)
    meta = _read_json(folder / "meta.json")
    rows = _jsonl(folder / "requests.jsonl")
    where = str(folder / "requests.jsonl")
    col = {f: _numbers(where, f, [r[f] for r in rows]) for f in _FIELDS}
    _numbers(where, "output_toks", col["output_toks"], lo=1)
    offset = float(np.max(col["arrival_time"] - col["queued_ts"]))  # wall minus monotonic
    arrival = col["arrival_time"] - offset
    ttft, e2e = col["first_token_ts"] - arrival, col["last_token_ts"] - arrival
    bad = np.flatnonzero(ttft > e2e)
    if len(bad):
        raise ValueError(f"{where}: row {bad[0]}: first_token_ts is after last_token_ts")
    ids = np.arange(len(rows))
    requests, measured = _measured(ids, arrival, col["input_toks"], col["output_toks"], ttft, e2e)
    requests = _with_prefixes(requests, meta)
    name = f"{folder.parent.name}/{folder.name}"
    return RealRun(name, requests, measured, _llmservingsim_settings(meta), str(folder))


def _with_prefixes(requests: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """The shipped workload's prefix identity (scripts/derive_llmservingsim_workloads.py)."""
    stem = Path(str(meta.get("dataset_path", ""))).stem
    table = data_dir() / SHIPPED / "workloads" / f"{stem}.csv"
    if not stem or not table.is_file():
        return requests
    w = pd.read_csv(table)
    same = (
        len(w) == len(requests)
        and (w["prompt_tokens"].to_numpy() == requests["prompt_tokens"]).all()
    )
    if not same:
        return requests
    return requests.assign(
        prefix_parent=w["prefix_parent"].to_numpy(),
        shared_prefix_tokens=w["shared_prefix_tokens"].to_numpy(),
    )


def _llmservingsim_settings(meta: dict) -> dict:
    kw = meta.get("engine_kwargs", {})
    kv = meta.get("kv_cache", {}) or {}
    sched = (meta.get("resolved_config") or {}).get("scheduler_config", {}) or {}
    dp, tp = int(kw.get("data_parallel_size") or 1), int(kw.get("tensor_parallel_size") or 1)
    gpu = (meta.get("hardware") or {}).get("device_name")
    return {
        "model": kw.get("model") or meta.get("model"),
        "vllm_version": meta.get("vllm_version"),
        "tp": tp,
        "dp": dp,
        "ep": tp * dp if kw.get("enable_expert_parallel") else 1,
        "max_num_seqs": kw.get("max_num_seqs"),
        "max_num_batched_tokens": kw.get("max_num_batched_tokens"),
        "max_model_len": kw.get("max_model_len"),
        "block_size": kv.get("block_size", 16),
        "gpu_memory_utilization": kv.get("gpu_memory_utilization", 0.9),
        "enable_prefix_caching": kv.get("enable_prefix_caching", True),
        "num_gpu_blocks": kv.get("num_gpu_blocks"),
        "async_scheduling": sched.get("async_scheduling"),
        "gpu": gpu or "RTX PRO 6000 Blackwell Server Edition",  # the README's identification
        "gpu_recorded": gpu is not None,
        "api_server": False,  # vLLM's AsyncLLM driven in-process: no HTTP, no tokenizer
    }


# --- vllm bench serve ---------------------------------------------------------------------


def load_vllm_bench(path: str | Path) -> RealRun:
    """``vllm bench serve --save-result --save-detailed`` JSON."""
    p = Path(path)
    doc = _read_json(p)
    if not isinstance(doc, dict):
        raise ValueError(f"{p}: expected a JSON object (vllm bench serve --save-result)")
    for key in ("input_lens", "output_lens", "ttfts", "itls"):
        if not isinstance(doc.get(key), list):
            raise ValueError(f"{p}: lacks {key} (save with --save-detailed)")
    n = len(doc["input_lens"])
    for key in ("output_lens", "ttfts", "itls", "start_times", "errors"):
        if key in doc and isinstance(doc[key], list) and len(doc[key]) != n:
            raise ValueError(f"{p}: {key} has {len(doc[key])} entries, input_lens {n}")
    failed = np.array([bool(e) for e in doc.get("errors", [""] * n)])
    if failed.all():
        raise ValueError(f"{p}: every request failed (errors)")
    ok = np.flatnonzero(~failed)
    where = str(p)
    prompt = _numbers(where, "input_lens", [doc["input_lens"][i] for i in ok], lo=1)
    output = _numbers(where, "output_lens", [doc["output_lens"][i] for i in ok], lo=1)
    ttft = _numbers(where, "ttfts", [doc["ttfts"][i] for i in ok])
    itl = [_numbers(where, f"itls[{i}]", doc["itls"][i]).sum() for i in ok]
    e2e = ttft + np.asarray(itl)
    if "start_times" not in doc:
        raise ValueError(
            f"{p}: lacks start_times, so the requests' arrival times cannot be recovered "
            "(record with a vLLM version that saves them)"
        )
    starts = _numbers(where, "start_times", [doc["start_times"][i] for i in ok])
    requests, measured = _measured(ok, starts, prompt, output, ttft, e2e)
    settings = {
        "model": doc.get("model_id"),
        "tp": doc.get("tensor_parallel_size", 1),
        "dp": 1,
        "max_num_seqs": doc.get("max_num_seqs") or doc.get("max_concurrency"),
        "max_num_batched_tokens": doc.get("max_num_batched_tokens", 2048),
        "block_size": 16,
        "enable_prefix_caching": True,
        "num_gpu_blocks": None,
        "async_scheduling": None,
        "gpu": doc.get("gpu"),
        "request_rate": doc.get("request_rate"),
        "failed": int(failed.sum()),
        "api_server": True,  # through vLLM's OpenAI-compatible server
    }
    return RealRun(p.stem, requests, measured, settings, str(p))
