"""Real serving runs: the requests a benchmark sent and the latencies it measured.

A ``RealRun`` holds what a replay needs (``requests``: a request table in the schema of
``workloads.requests``, arrivals relative to the first submission, prefix identity where
known), what was measured (``measured``, same rows: ``ttft_s``, ``e2e_s``, ``tpot_s`` =
(E2E - TTFT) / (output - 1), NaN for one output token) and the run's serving settings
(``settings``; ``assumed`` lists the keys filled with vLLM's defaults). Two formats:

- ``llmservingsim``: a folder with ``meta.json`` and ``requests.jsonl`` as LLMServingSim's
  benchmark writes them (vLLM's per-request ``RequestStateStats``); four runs are shipped in
  ``data/validation/llmservingsim/`` (its README: sources, licence, clocks). TTFT and E2E
  count from the request's arrival at vLLM's frontend: the wall-clock ``arrival_time`` is
  moved onto the engine's monotonic clock by the offset of the fastest-admitted request,
  ``C = max(arrival_time - queued_ts)``, as that README and its ``summary.csv`` do. A
  request with a null, NaN or zero timestamp failed (upstream's rule): it is dropped and
  counted in ``settings["failed"]``.
- ``vllm-bench``: the JSON of ``vllm bench serve --save-result --save-detailed``: per request
  ``input_lens``, ``output_lens``, ``ttfts``, ``start_times`` (send times, the client's
  ``time.perf_counter``; older vLLM versions do not save them, and their files are refused:
  ``request_rate`` alone does not give the arrivals), ``latencies`` or else ``itls`` (E2E =
  TTFT + sum of ITLs), and ``errors`` (or ``success``) marking failed requests, dropped and
  counted. Server settings are read from ``--metadata KEY=VALUE`` pairs (``tp=2``, ...).

Bad input raises ``RunFileError`` (a ``ValueError``), one line naming the file, the field,
the value and the row: ``b.json: ttfts[12] = -0.5: must be a finite number >= 0``. Rows
are 0-based list indices (``ttfts[12]``) or 1-based file lines (``line 13``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

from hybridsched.paths import data_dir

SHIPPED = "validation/llmservingsim"
FORMATS = ("llmservingsim", "vllm-bench")
# vLLM (0.19) defaults for settings a run did not record; listed in settings["assumed"].
VLLM_DEFAULTS = {"block_size": 16, "gpu_memory_utilization": 0.9, "enable_prefix_caching": True}


class RunFileError(ValueError):
    """A run file is missing, unreadable or holds a bad value (one line: file, field, value, row)."""


@dataclass(frozen=True)
class RealRun:
    name: str
    requests: pd.DataFrame
    measured: pd.DataFrame
    settings: dict = field(default_factory=dict)
    source: str = ""


def _fail(where, what: str) -> NoReturn:
    raise RunFileError(" ".join(f"{where}: {what}".split()))


def _show(value) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(where, name: str, value, lo: float = 0.0, integer: bool = False) -> float:
    """``value`` as a finite number ``>= lo`` (an integer if asked); else a named error."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and value >= lo and (not integer or value == int(value))
    if not ok:
        kind = "an integer" if integer else "a finite number"
        _fail(where, f"{name} = {_show(value)}: must be {kind} >= {lo:g}")
    return float(value)


def _column(where, name: str, values, rows, lo: float = 0.0, integer: bool = False):
    return np.array([_number(where, f"{name}[{i}]", values[i], lo, integer) for i in rows])


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        _fail(path, "no such file")
    except UnicodeDecodeError:
        _fail(path, "not a UTF-8 text file")


def _read_json(path: Path):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        _fail(path, f"not a JSON file ({e})")


def _tables(ids, arrival, prompt, output, ttft, e2e) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The replay table and the measured one, in arrival order, arrivals from the first."""
    order = np.argsort(arrival, kind="stable")
    ids, arrival, ttft, e2e = ids[order], arrival[order], ttft[order], e2e[order]
    o, at = output[order].astype(np.int64), arrival - arrival[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(o > 1, (e2e - ttft) / (o - 1), np.nan)
    ids = np.asarray(ids, dtype=np.int64)
    requests = pd.DataFrame(
        {"request_id": ids, "prompt_tokens": prompt[order].astype(np.int64),
         "output_tokens": o, "arrival_s": at}
    )  # fmt: skip
    measured = pd.DataFrame(
        {"request_id": ids, "arrival_s": at, "ttft_s": ttft, "e2e_s": e2e, "tpot_s": tpot,
         "output_tokens": o}
    )  # fmt: skip
    return requests, measured


# --- LLMServingSim's benchmark ------------------------------------------------------------

_TOKENS = ("input_toks", "output_toks")
_TIMES = ("arrival_time", "queued_ts", "first_token_ts", "last_token_ts")


def list_llmservingsim_runs() -> list[str]:
    """The shipped runs, as ``HARDWARE/MODEL``."""
    root = data_dir() / SHIPPED / "runs"
    return sorted(p.parent.relative_to(root).as_posix() for p in root.glob("*/*/meta.json"))


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists() and str(path) in list_llmservingsim_runs():
        return data_dir() / SHIPPED / "runs" / str(path)
    return p


def _jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            _fail(path, f"line {n} = {_show(line)}: not a JSON object")
        if not isinstance(row, dict):
            _fail(path, f"line {n} = {_show(row)}: not a JSON object")
        missing = [f for f in (*_TOKENS, *_TIMES) if f not in row]
        if missing:
            _fail(path, f"line {n}: field {missing[0]} is missing")
        rows.append((n, row))
    if not rows:
        _fail(path, "no requests")
    return rows


def _llmservingsim_columns(path: Path, rows: list[tuple[int, dict]]):
    """Per request kept: id (its 0-based line among the requests, which upstream is its line in
    the workload), tokens and times; and how many failed (a timestamp null, NaN or 0)."""
    cols = {f: [] for f in ("id", *_TOKENS, *_TIMES)}
    failed = 0
    for k, (n, row) in enumerate(rows):
        at = f"line {n}: "
        for f in _TOKENS:
            _number(path, at + f, row[f], lo=1, integer=True)
        stamps = [row[f] for f in _TIMES]
        if any(v is None or v == 0 or (isinstance(v, float) and math.isnan(v)) for v in stamps):
            failed += 1
            continue
        times = {f: _number(path, at + f, row[f]) for f in _TIMES}
        for a, b in (("queued_ts", "first_token_ts"), ("first_token_ts", "last_token_ts")):
            if times[b] < times[a]:
                _fail(path, f"{at}{b} = {_show(row[b])}: must be >= {a} = {_show(row[a])}")
        cols["id"].append(k)
        for f in (*_TOKENS, *_TIMES):
            cols[f].append(float(row[f]))
    if failed == len(rows):
        _fail(path, f"every request failed ({failed} with a missing or zero timestamp)")
    return {f: np.asarray(v) for f, v in cols.items()}, failed


def load_llmservingsim(path: str | Path) -> RealRun:
    """A run folder (``meta.json``, ``requests.jsonl``) of LLMServingSim's benchmark, or a
    shipped run's name such as ``RTX4090/Llama-3.1-8B``."""
    folder = _resolve(path)
    meta = _read_json(folder / "meta.json")
    if not isinstance(meta, dict):
        _fail(folder / "meta.json", f"top level = {_show(meta)}: must be a JSON object")
    where = folder / "requests.jsonl"
    col, failed = _llmservingsim_columns(where, _jsonl(where))
    offset = float(np.max(col["arrival_time"] - col["queued_ts"]))  # wall minus monotonic
    arrival = col["arrival_time"] - offset  # on the engine's monotonic clock
    ttft, e2e = col["first_token_ts"] - arrival, col["last_token_ts"] - arrival
    requests, measured = _tables(
        col["id"], arrival, col["input_toks"], col["output_toks"], ttft, e2e
    )
    requests = _with_prefixes(requests, meta)
    parts = folder.resolve().parts
    name = "/".join(parts[-3:-1] if parts[-1] == "vllm" else parts[-2:])
    shipped = folder.resolve().is_relative_to((data_dir() / SHIPPED).resolve())
    settings = _llmservingsim_settings(meta, name if shipped else None)
    settings.update(failed=failed, wall_minus_monotonic_s=offset)
    return RealRun(name, requests, measured, settings, str(folder))


def _with_prefixes(requests: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """The shipped workload's prefix identity (scripts/derive_llmservingsim_workloads.py),
    when the run replayed that workload (same lengths for every request id)."""
    stem = Path(str(meta.get("dataset_path") or "")).stem
    table = data_dir() / SHIPPED / "workloads" / f"{stem}.csv"
    if not stem or not table.is_file():
        return requests
    w = pd.read_csv(table).set_index("request_id")
    ids = requests["request_id"].to_numpy()
    if not np.isin(ids, w.index).all():
        return requests
    w = w.loc[ids]
    lengths = ["prompt_tokens", "output_tokens"]
    if not (w[lengths].to_numpy() == requests[lengths].to_numpy()).all():
        return requests
    return requests.assign(
        prefix_parent=w["prefix_parent"].to_numpy(),
        shared_prefix_tokens=w["shared_prefix_tokens"].to_numpy(),
    )


def _shipped_gpu(name: str | None) -> str | None:
    """The GPU the shipped summary names for a run that did not record it."""
    summary = data_dir() / SHIPPED / "summary.csv"
    if name is None or not summary.is_file():
        return None
    rows = pd.read_csv(summary).set_index("run")
    return str(rows.loc[name, "gpu_name"]) if name in rows.index else None


def _llmservingsim_settings(meta: dict, shipped_name: str | None) -> dict:
    kw = meta.get("engine_kwargs") or {}
    kv = meta.get("kv_cache") or {}
    resolved = meta.get("resolved_config") or {}
    sched = resolved.get("scheduler_config") or {}
    tp, dp = int(kw.get("tensor_parallel_size") or 1), int(kw.get("data_parallel_size") or 1)
    gpu = (meta.get("hardware") or {}).get("device_name")
    settings = {
        "model": kw.get("model") or meta.get("model"),
        "vllm_version": meta.get("vllm_version"),
        **{"tp": tp, "dp": dp, "ep": tp * dp if kw.get("enable_expert_parallel") else 1},
        "num_gpus": tp * dp,
        # max_num_seqs is per data-parallel engine; max_model_len None: the model's maximum
        **{k: kw.get(k) for k in ("max_num_seqs", "max_num_batched_tokens", "max_model_len")},
        "num_gpu_blocks": kv.get("num_gpu_blocks"),
        **{k: sched.get(k) for k in ("async_scheduling", "enable_chunked_prefill")},
        **{"gpu": gpu or _shipped_gpu(shipped_name), "gpu_recorded": gpu is not None},
        "api_server": False,  # vLLM's AsyncLLM driven in-process: no HTTP, no tokenizer
        **{"workload": meta.get("dataset_path"), "started_at": meta.get("started_at")},
    }
    assumed = [k for k in VLLM_DEFAULTS if kv.get(k) is None]
    settings.update({k: kv[k] if k not in assumed else VLLM_DEFAULTS[k] for k in VLLM_DEFAULTS})
    settings.update(config_recorded=bool(kv) and bool(sched), assumed=assumed)
    return settings


# --- vllm bench serve ---------------------------------------------------------------------

_BENCH_REQUIRED = ("input_lens", "output_lens", "ttfts", "start_times")
_BENCH_LISTS = (*_BENCH_REQUIRED, "itls", "latencies", "errors", "success", "queue_times")
# --metadata KEY=VALUE pairs read as settings (their values are strings), and aliases.
_SETTINGS = ("tp", "dp", "ep", "num_gpus", "max_num_seqs", "max_num_batched_tokens",
             "max_model_len", "block_size", "num_gpu_blocks", "gpu_memory_utilization",
             "enable_prefix_caching", "async_scheduling", "gpu", "vllm_version")  # fmt: skip
_ALIASES = {"tp": "tensor_parallel_size", "dp": "data_parallel_size", "gpu": "gpu_name"}
_FLOATS, _BOOLS = {"gpu_memory_utilization"}, {"enable_prefix_caching", "async_scheduling"}
_STRINGS = {"gpu", "vllm_version"}


def _bench_rows(p: Path, doc: dict) -> tuple[np.ndarray, int]:
    """Check the per-request lists; return the rows of the requests that succeeded."""
    for key in _BENCH_REQUIRED:
        if key not in doc:
            rate = f"request_rate = {_show(doc.get('request_rate'))} gives only their rate"
            why = (
                f"no send times, arrivals not recoverable ({rate})" if key == "start_times" else ""
            )
            _fail(p, f"key {key} is missing: {why or 'save with --save-result --save-detailed'}")
    if "latencies" not in doc and "itls" not in doc:
        _fail(p, "keys latencies and itls are both missing: E2E cannot be recovered")
    n = len(doc["input_lens"]) if isinstance(doc["input_lens"], list) else -1
    for key in _BENCH_LISTS:
        if key in doc and not isinstance(doc[key], list):
            _fail(p, f"{key} = {_show(doc[key])}: must be a list, one entry per request")
        if key in doc and len(doc[key]) != n:
            _fail(p, f"{key} has {len(doc[key])} entries but input_lens has {n}")
    if n == 0:
        _fail(p, "no requests (input_lens is empty)")
    failed = np.array([bool(e) for e in doc.get("errors", [""] * n)])
    failed |= np.array([s is False for s in doc.get("success", [True] * n)])
    if failed.all():
        _fail(p, f"every request failed (errors[0] = {_show(doc.get('errors', [''])[0])})")
    return np.flatnonzero(~failed), int(failed.sum())


def _bench_e2e(p: Path, doc: dict, ok: np.ndarray, ttft: np.ndarray) -> np.ndarray:
    if "latencies" in doc:
        e2e = _column(p, "latencies", doc["latencies"], ok)
        for k in np.flatnonzero(e2e < ttft - 1e-9):
            i = ok[k]
            _fail(p, f"latencies[{i}] = {_show(e2e[k])}: must be >= ttfts[{i}] = {_show(ttft[k])}")
        return np.maximum(e2e, ttft)
    e2e = []
    for k, i in enumerate(ok):
        itl = doc["itls"][i]
        if not isinstance(itl, list):
            _fail(p, f"itls[{i}] = {_show(itl)}: must be a list of seconds")
        e2e.append(ttft[k] + _column(p, f"itls[{i}]", itl, range(len(itl))).sum())
    return np.asarray(e2e)


def load_vllm_bench(path: str | Path) -> RealRun:
    """``vllm bench serve --save-result --save-detailed`` JSON (module docstring)."""
    p = Path(path)
    doc = _read_json(p)
    if not isinstance(doc, dict):
        _fail(
            p, f"top level = {_show(doc)}: must be a JSON object (vllm bench serve --save-result)"
        )
    ok, failed = _bench_rows(p, doc)
    prompt = _column(p, "input_lens", doc["input_lens"], ok, lo=1, integer=True)
    output = _column(p, "output_lens", doc["output_lens"], ok, lo=1, integer=True)
    ttft = _column(p, "ttfts", doc["ttfts"], ok)
    e2e = _bench_e2e(p, doc, ok, ttft)
    starts = _column(p, "start_times", doc["start_times"], ok)
    requests, measured = _tables(ok, starts, prompt, output, ttft, e2e)
    settings = _bench_settings(p, doc)
    settings["failed"] = failed
    return RealRun(p.stem, requests, measured, settings, str(p))


def _meta_value(p: Path, key: str, raw):
    """A ``--metadata`` value (a string, or a JSON value) as the setting's type."""
    if key in _STRINGS:
        return str(raw)
    text = str(raw).strip().lower()
    if key in _BOOLS and text in ("true", "false", "1", "0"):
        return text in ("true", "1")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and key in _FLOATS and value > 0:
        return value
    if math.isfinite(value) and key not in _FLOATS | _BOOLS and value >= 1 and value % 1 == 0:
        return int(value)
    kind = "a number > 0" if key in _FLOATS else "an integer >= 1"
    _fail(p, f"{key} = {_show(raw)}: must be {'true or false' if key in _BOOLS else kind}")


def _bench_settings(p: Path, doc: dict) -> dict:
    """The server's settings where ``--metadata`` gave them, else None or vLLM's default."""
    settings: dict = {"model": doc.get("model_id")}
    for key in _SETTINGS:
        given = next((doc[n] for n in (key, _ALIASES.get(key)) if doc.get(n) is not None), None)
        settings[key] = None if given is None else _meta_value(p, key, given)
    assumed = [k for k in ("tp", "dp", "ep", *VLLM_DEFAULTS) if settings[k] is None]
    settings.update({k: 1 for k in ("tp", "dp", "ep") if settings[k] is None})
    settings.update({k: v for k, v in VLLM_DEFAULTS.items() if settings[k] is None})
    if settings["num_gpus"] is None:
        settings["num_gpus"] = settings["tp"] * settings["dp"]
    settings.update(
        config_recorded=not assumed,
        assumed=assumed,
        api_server=True,  # through vLLM's OpenAI-compatible server: TTFT includes HTTP
        **{k: doc.get(k) for k in ("request_rate", "burstiness", "max_concurrency")},
        **{k: doc.get(k) for k in ("num_prompts", "backend", "label", "date")},
    )
    return settings


# --- either --------------------------------------------------------------------------------


def _sniff(p: Path) -> str:
    if p.is_dir():
        missing = [f for f in ("meta.json", "requests.jsonl") if not (p / f).is_file()]
        if missing:
            _fail(p, f"{' and '.join(missing)} missing: not an LLMServingSim run folder")
        return "llmservingsim"
    if p.suffix.lower() == ".json":
        return "vllm-bench"  # load_vllm_bench refuses a JSON without its keys
    _fail(p, "not a run: expected a folder with meta.json and requests.jsonl, or a .json file")


def load_run(path: str | Path, format: str | None = None) -> RealRun:
    """A run from a file or folder (``format`` sniffed when not given), or a shipped name."""
    if format is not None and format not in FORMATS:
        _fail("--format", f"{_show(format)}: must be one of {', '.join(FORMATS)}")
    p = _resolve(path)
    if not p.exists():
        shipped = ", ".join(list_llmservingsim_runs())
        _fail("--run", f"{path}: no such file or folder, nor a shipped run ({shipped})")
    fmt = format or _sniff(p)
    return load_llmservingsim(p) if fmt == "llmservingsim" else load_vllm_bench(p)
