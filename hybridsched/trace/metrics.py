"""Metrics of a schedule, computed from its trace alone (docs/model.md section 4).

Symbols: ``J`` clients, ``T = max_j C_j`` the makespan, ``k`` an iteration of duration
``t_k`` on client ``j`` with ``|D_k|`` running requests.

========================  ==================================================================
``makespan_s``            ``T``: end of the last iteration (the paper's total inference time)
``utilization``           ``U = sum_decode (|D_k| / B_j) t_k / (|J| T)``: decode-slot occupancy
                          (a mixed iteration counts as a decode of its running batch)
``mean_batch``            ``sum_decode |D_k| t_k / sum_decode t_k``: mean running batch while decoding
``kv_occupancy``          ``sum_decode (kv_used_k / M_j) t_k / sum_decode t_k``
``busy_fraction``         ``sum_k t_k / (|J| T)``
``prefill_share``         time of iterations that decode nothing / busy time
``num_prefill_iterations`` iterations that process prompt tokens (prefills, mixed rows with chunks)
``num_decode_iterations``  iterations that decode (decode rows, mixed rows with a batch)
``token_throughput``      output tokens / ``T``;  ``request_throughput``: requests / ``T``
``ttft_*``                first token: end of the request's prefill minus its arrival
``tpot_*``                ``(e2e - ttft) / (o_i - 1)`` over requests with ``o_i > 1``
``e2e_*``                 end of the request's last iteration minus its arrival
``client_makespan_*``     min and max of ``C_j``; ``imbalance = 1 - min C_j / max C_j``
========================  ==================================================================

Latency figures come as p50/p90/p99 (seconds), plus the mean.

Online serving (docs/model.md section 11), from the trace, the eviction table and the
engine's dispatch records (``request_table``):

========================  ==========================================================="""

from __future__ import annotations

import numpy as np
import pandas as pd

from hybridsched.instance import Instance
from hybridsched.trace.flat import FlatTrace, max_at, min_at


def _pct(prefix: str, x: np.ndarray) -> dict:
    if len(x) == 0:
        out = {f"{prefix}_p{q}_s": float("nan") for q in (50, 90, 99)}
        return out | {f"{prefix}_mean_s": float("nan")}
    out = {f"{prefix}_p{q}_s": float(np.percentile(x, q)) for q in (50, 90, 99)}
    return out | {f"{prefix}_mean_s": float(np.mean(x))}


def request_table(
    trace: pd.DataFrame,
    instance: Instance,
    evictions: pd.DataFrame | None = None,
    dispatch_s=None,
    flat: FlatTrace | None = None,
) -> pd.DataFrame:
    """Per request, from the trace: arrival, client, dispatch, first scheduled, first token,
    finish, TTFT, TPOT, end-to-end latency, queueing delay, preemptions, recomputed tokens.

    ``flat``: the trace read into flat arrays (``FlatTrace(trace, request ids)``), when the
    caller keeps it for more; its segments are numbered by ``evictions`` here."""
    req = instance.requests.set_index("request_id")
    ids = req.index.to_numpy()
    if flat is not None and not flat.matches(trace, ids):
        raise ValueError("request_table: flat was not read from this trace and instance")
    f = FlatTrace(trace, ids) if flat is None else flat
    if (f.row < 0).any() or (f.crow < 0).any():
        raise ValueError("request_table: the trace names a request the instance does not have")
    if evictions is not None and len(evictions):
        f.set_evictions(
            f.row_of(evictions["request_id"].to_numpy()),
            evictions["iteration"].to_numpy(),
            evictions.get("prefilled_tokens"),
        )
    fr, fp, _ = f.first_token_rows()
    n, none = f.n, f.nrows
    first = min_at(n, fr, fp, none)  # the earliest first token (rows are in time order per client)
    last = max_at(n, f.row, f.pos, -1)
    np.maximum.at(last, fr, fp)
    start = f.first_start_pos()

    def at(col: np.ndarray, p: np.ndarray, missing: np.ndarray) -> np.ndarray:
        return (
            np.where(missing, np.nan, col[np.where(missing, 0, p)])
            if len(col)
            else np.full(n, np.nan)
        )

    out = pd.DataFrame(
        {
            "arrival_s": req["arrival_s"],
            "client": f.client[first]
            if (first < none).all()
            else at(f.client.astype(float), first, first == none),
            "first_scheduled_s": at(f.start, start, start == none),
            "first_token_s": at(f.end, first, first == none),
            "finish_s": at(f.end, last, last < 0),
        },
        index=req.index,
    )
    if dispatch_s is not None:
        out.insert(2, "dispatch_s", np.asarray(dispatch_s, dtype=float))
    out["ttft_s"] = out["first_token_s"] - out["arrival_s"]
    out["e2e_s"] = out["finish_s"] - out["arrival_s"]
    out["queue_s"] = out["first_scheduled_s"] - out["arrival_s"]
    o = req["output_tokens"]
    out["tpot_s"] = ((out["finish_s"] - out["first_token_s"]) / (o - 1)).where(o > 1)
    out["last_token_s"] = out["finish_s"]
    ev = evictions if evictions is not None else pd.DataFrame(columns=["request_id"])
    n_ev = ev.groupby("request_id").size() if len(ev) else pd.Series(dtype=np.int64)
    out["preemptions"] = n_ev.reindex(req.index, fill_value=0).astype(np.int64)
    if len(ev):
        rec = ev["generated_tokens"] + req["prompt_tokens"].reindex(ev["request_id"]).to_numpy()
        rec = rec.groupby(ev["request_id"].to_numpy()).sum()
    else:
        rec = pd.Series(dtype=np.int64)
    out["recomputed_tokens"] = rec.reindex(req.index, fill_value=0).astype(np.int64)
    return out.reset_index()


def slo_attainment(req: pd.DataFrame, slo_ttft_s: float | None, slo_tpot_s: float | None) -> float:
    """Share of requests with TTFT <= ``slo_ttft_s`` and TPOT <= ``slo_tpot_s`` (NaN: no SLO)."""
    if slo_ttft_s is None and slo_tpot_s is None:
        return float("nan")
    for name, v in (("slo_ttft_s", slo_ttft_s), ("slo_tpot_s", slo_tpot_s)):
        if v is not None and not (isinstance(v, (int, float, np.number)) and v > 0):
            raise ValueError(f"{name} must be a positive number of seconds, got {v!r}")
    if len(req) == 0:
        return float("nan")
    ok = np.ones(len(req), dtype=bool)
    if slo_ttft_s is not None:
        ok &= req["ttft_s"].to_numpy() <= slo_ttft_s
    if slo_tpot_s is not None:
        tpot = req["tpot_s"].to_numpy()
        ok &= np.isnan(tpot) | (tpot <= slo_tpot_s)
    return float(ok.mean()) if len(ok) else float("nan")


def serving_metrics(
    req: pd.DataFrame,
    makespan_s: float,
    slo_ttft_s: float | None = None,
    slo_tpot_s: float | None = None,
) -> dict:
    """The online-serving figures of one run (module docstring), from its request table."""
    att = slo_attainment(req, slo_ttft_s, slo_tpot_s)
    n = len(req)
    return {
        **_pct("queue", req["queue_s"].to_numpy()),
        "throughput_rps": n / makespan_s if makespan_s > 0 else 0.0,
        "slo_ttft_s": slo_ttft_s,
        "slo_tpot_s": slo_tpot_s,
        "slo_attainment": att,
        "goodput_rps": att * n / makespan_s if makespan_s > 0 and att == att else float("nan"),
        "num_preemptions": int(req["preemptions"].sum()),
        "recomputed_tokens": int(req["recomputed_tokens"].sum()),
    }


def metrics(
    trace: pd.DataFrame,
    instance: Instance,
    evictions: pd.DataFrame | None = None,
    slo_ttft_s: float | None = None,
    slo_tpot_s: float | None = None,
    req: pd.DataFrame | None = None,
) -> dict:
    """All metrics of one schedule (see the module docstring for definitions)."""
    J = instance.num_clients
    B = np.array([c.max_batch for c in instance.clients], dtype=float)
    M = np.array([c.kv_capacity_tokens for c in instance.clients], dtype=float)
    cl = trace["client"].to_numpy()
    dur = trace["duration_s"].to_numpy()
    kind = trace["kind"].to_numpy()
    # Decode requests per row: all of a decode row, the running batch of a mixed row.
    ids = trace["request_ids"].to_numpy()
    n = np.where(kind == "prefill", 0, np.fromiter(map(len, ids), np.int64, len(ids))).astype(float)
    prompts = trace["num_requests"].to_numpy() - n  # prompts (whole or chunks) per row
    dec = n > 0
    has_prompt = prompts > 0
    T = float(trace["end_s"].max()) if len(trace) else 0.0
    dec_time = float(dur[dec].sum())
    busy = float(dur.sum())
    per_client_end = (
        trace.groupby("client")["end_s"].max().reindex(range(J), fill_value=0.0).to_numpy()
    )
    if req is None:
        req = request_table(trace, instance, evictions)
    out_tokens = int(instance.output.sum())
    m = {
        "makespan_s": T,
        "utilization": float(((n / B[cl]) * dur)[dec].sum() / (J * T)) if T > 0 else 0.0,
        "mean_batch": float((n * dur)[dec].sum() / dec_time) if dec_time > 0 else 0.0,
        "kv_occupancy": float(
            ((trace["kv_used_tokens"].to_numpy() / M[cl]) * dur)[dec].sum() / dec_time
        )
        if dec_time > 0
        else 0.0,
        "busy_fraction": busy / (J * T) if T > 0 else 0.0,
        "prefill_share": float(dur[~dec].sum() / busy) if busy > 0 else 0.0,
        "num_prefill_iterations": int(has_prompt.sum()),
        "num_decode_iterations": int(dec.sum()),
        "mean_prefill_size": float(prompts[has_prompt].mean()) if has_prompt.any() else 0.0,
        "token_throughput": out_tokens / T if T > 0 else 0.0,
        "request_throughput": instance.num_requests / T if T > 0 else 0.0,
        "client_makespan_min_s": float(per_client_end.min()),
        "client_makespan_max_s": float(per_client_end.max()),
        "imbalance": float(1 - per_client_end.min() / per_client_end.max()) if T > 0 else 0.0,
        "num_requests": instance.num_requests,
        "num_output_tokens": out_tokens,
    }
    m.update(_pct("ttft", req["ttft_s"].to_numpy()))
    m.update(_pct("tpot", req["tpot_s"].dropna().to_numpy()))
    m.update(_pct("e2e", req["e2e_s"].to_numpy()))
    m.update(serving_metrics(req, T, slo_ttft_s, slo_tpot_s))
    return m


def prefix_metrics(trace: pd.DataFrame, hits: pd.DataFrame) -> dict:
    """A prefix cache's work saved: ``prefill_tokens_saved`` (prompt tokens found cached, so
    not computed) and ``prefix_cache_hit_rate`` (their share of all prompt tokens admitted,
    recomputations included)."""
    saved = int(hits["cached_tokens"].sum()) if len(hits) else 0
    computed = int(trace["prefill_tokens"].sum())
    total = saved + computed
    return {
        "prefill_tokens_saved": saved,
        "prefix_cache_hit_rate": saved / total if total else 0.0,
    }
