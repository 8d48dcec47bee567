"""Real serving runs: the four shipped vLLM runs load as their source's summary says, a
``vllm bench serve`` file loads with TPOT = (E2E - TTFT) / (output - 1), and bad files are
refused in one line naming the file, the field, the value and the row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hybridsched.paths import data_dir
from hybridsched.workloads.real_runs import (
    RunFileError,
    list_llmservingsim_runs,
    load_llmservingsim,
    load_run,
    load_vllm_bench,
)
from hybridsched.workloads.requests import validate_requests

ROOT = data_dir() / "validation" / "llmservingsim"
RUNS = [
    "RTX4090/Llama-3.1-8B",
    "RTXPRO6000/Llama-3.1-8B",
    "RTXPRO6000/Qwen3-30B-A3B-Instruct-2507",
    "RTXPRO6000/Qwen3-32B",
]


def summary_row(name: str) -> pd.Series:
    # As text: summary.csv holds each figure to 6 significant digits ("%.6g").
    return pd.read_csv(ROOT / "summary.csv", dtype=str).set_index("run").loc[name]


def test_the_four_shipped_runs_are_listed():
    assert list_llmservingsim_runs() == RUNS


@pytest.mark.parametrize("name", RUNS)
def test_shipped_run_reproduces_its_summary(name):
    """Tests that each run has 300 requests in arrival order from 0, TTFT <= E2E everywhere,
    a replay table the project's validation accepts unchanged, and the arrival-anchored
    mean, p50, p90 and p99 of TTFT, TPOT and E2E that summary.csv states (to all 6 of its
    significant digits)."""
    run = load_run(name)
    req, m = run.requests, run.measured
    assert len(req) == len(m) == 300 and run.name == name
    assert (m["request_id"] == req["request_id"]).all()
    assert (m["ttft_s"] >= 0).all() and (m["ttft_s"] <= m["e2e_s"]).all()
    assert req["arrival_s"].iloc[0] == 0.0 and (np.diff(req["arrival_s"]) >= 0).all()
    assert req["arrival_s"].iloc[-1] == pytest.approx(29.1, abs=0.1)  # Poisson, 10 req/s
    checked = validate_requests(req)
    pd.testing.assert_frame_equal(checked[req.columns], req, check_dtype=False)
    row = summary_row(name)
    for metric in ("ttft", "tpot", "e2e"):
        x = m[f"{metric}_s"]
        for stat, value in [("mean", x.mean())] + [(f"p{q}", x.quantile(q / 100)) for q in (50, 90, 99)]:  # fmt: skip
            assert f"{value:.6g}" == row[f"{metric}_{stat}_s"], (metric, stat)
    assert int(req["prompt_tokens"].sum()) == int(row["input_toks_total"])
    assert int(req["output_tokens"].sum()) == int(row["output_toks_total"])


@pytest.mark.parametrize("name", RUNS)
def test_settings_are_the_runs_own(name):
    run, row = load_run(name), summary_row(name)
    st = run.settings
    assert st["model"] == row["model"] and st["vllm_version"] == "0.19.0"
    for key in ("tp", "dp", "ep", "num_gpus", "max_num_seqs", "max_num_batched_tokens"):
        assert st[key] == int(row[key]), key
    assert st["gpu"] == row["gpu_name"] and st["failed"] == 0 and st["api_server"] is False
    assert st["block_size"] == 16 and st["enable_prefix_caching"] is True
    assert st["config_recorded"] == (row["config_recorded"] == "True")


def test_the_rtx_4090_run_records_its_small_kv_cache():
    """Tests the one fully recorded run: 2,588 blocks of 16 tokens (41,408 KV tokens, less
    than 30 of its mean request), asynchronous scheduling, nothing assumed; the RTX PRO 6000
    runs recorded neither KV blocks nor async scheduling."""
    st = load_run("RTX4090/Llama-3.1-8B").settings
    assert (st["num_gpu_blocks"], st["block_size"], st["async_scheduling"]) == (2588, 16, True)
    assert st["assumed"] == [] and st["max_model_len"] == 32768
    other = load_run("RTXPRO6000/Qwen3-30B-A3B-Instruct-2507").settings
    assert other["num_gpu_blocks"] is None and other["async_scheduling"] is None
    assert "enable_prefix_caching" in other["assumed"] and (other["dp"], other["ep"]) == (2, 2)


def test_tpot_is_the_first_to_last_token_time_per_later_token():
    """Tests TPOT against the raw file: (last_token_ts - first_token_ts) / (output_toks - 1),
    which needs no clock alignment."""
    run = load_run("RTXPRO6000/Qwen3-32B")
    lines = (ROOT / "runs/RTXPRO6000/Qwen3-32B/requests.jsonl").read_text().splitlines()
    raw = pd.DataFrame([json.loads(x) for x in lines])
    tpot = (raw["last_token_ts"] - raw["first_token_ts"]) / (raw["output_toks"] - 1)
    np.testing.assert_allclose(run.measured["tpot_s"], tpot, rtol=1e-9)


def test_runs_carry_the_later_turns_shared_prefixes():
    """Tests that the replay table says which later turns repeat an earlier prompt (32 of
    300 requests, about 8% of the prompt tokens), each pointing at an earlier request."""
    req = load_run("RTXPRO6000/Qwen3-32B").requests
    later = req[req["prefix_parent"] >= 0]
    assert len(later) == 32 and (later["prefix_parent"] < later["request_id"]).all()
    assert 0.075 < req["shared_prefix_tokens"].sum() / req["prompt_tokens"].sum() < 0.085
    assert (later["shared_prefix_tokens"] >= 16).all()


def test_a_run_folder_in_the_upstream_layout_loads(tmp_path):
    """Tests the upstream layout (``<HW>/<MODEL>/vllm/``) names the run by hardware and
    model, and that an unshipped run without a recorded GPU gets none."""
    folder = tmp_path / "H100" / "Llama-3.1-8B" / "vllm"
    folder.mkdir(parents=True)
    src = ROOT / "runs/RTXPRO6000/Llama-3.1-8B"
    for f in ("meta.json", "requests.jsonl"):
        (folder / f).write_bytes((src / f).read_bytes())
    run = load_run(folder)
    assert run.name == "H100/Llama-3.1-8B" and run.settings["gpu"] is None
    assert run.measured["e2e_s"].mean() == pytest.approx(28.2236, rel=1e-5)


# --- vllm bench serve --------------------------------------------------------------------


def bench_doc(**changes) -> dict:
    doc = {
        "date": "20250101-120000",
        "backend": "vllm",
        "model_id": "meta-llama/Llama-3.1-8B",
        "request_rate": 4.0,
        "max_concurrency": None,
        "input_lens": [100, 200, 300, 400],
        "output_lens": [10, 1, 5, 0],
        "ttfts": [0.05, 0.07, 0.2, 0.0],
        "itls": [[0.01] * 9, [], [0.02, 0.03, 0.02, 0.03], []],
        "start_times": [100.0, 100.5, 100.25, 101.0],
        "errors": ["", "", "", "Bad Request"],
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


def write(tmp_path, doc, name="bench.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_vllm_bench_file_loads(tmp_path):
    """Tests arrivals from the first send time in arrival order, E2E = TTFT + sum(ITL),
    TPOT = (E2E - TTFT) / (o - 1) (NaN for one output token), and the failed request
    dropped and counted."""
    run = load_run(write(tmp_path, bench_doc()))
    m = run.measured
    assert run.requests["request_id"].tolist() == [0, 2, 1]
    assert run.requests["arrival_s"].tolist() == [0.0, 0.25, 0.5]
    e2e = np.array([0.05 + 0.09, 0.2 + 0.10, 0.07])
    np.testing.assert_allclose(m["e2e_s"], e2e)
    np.testing.assert_allclose(m["tpot_s"][:2], (e2e[:2] - [0.05, 0.2]) / ([10, 5] - np.ones(2)))
    assert np.isnan(m["tpot_s"].iloc[2]) and m["output_tokens"].tolist() == [10, 5, 1]
    assert run.settings["failed"] == 1 and run.settings["api_server"] is True
    assert run.settings["model"] == "meta-llama/Llama-3.1-8B" and run.name == "bench"
    validate_requests(run.requests)


def test_vllm_bench_latencies_and_metadata(tmp_path):
    """Tests that a saved latency list is E2E, and that --metadata pairs give the server's
    settings (the rest are vLLM's defaults, listed as assumed)."""
    doc = bench_doc(latencies=[0.5, 0.07, 0.4, 0.0], tp="2", enable_prefix_caching="false",
                    max_num_seqs="128", gpu="NVIDIA H100 80GB HBM3")  # fmt: skip
    run = load_vllm_bench(write(tmp_path, doc))
    assert run.measured["e2e_s"].tolist() == [0.5, 0.4, 0.07]
    assert run.measured["tpot_s"].iloc[0] == pytest.approx((0.5 - 0.05) / 9)
    st = run.settings
    assert (st["tp"], st["num_gpus"], st["max_num_seqs"]) == (2, 2, 128)
    assert st["enable_prefix_caching"] is False and st["gpu"] == "NVIDIA H100 80GB HBM3"
    assert st["assumed"] == ["dp", "ep", "block_size", "gpu_memory_utilization"]
    assert st["num_gpu_blocks"] is None and st["async_scheduling"] is None


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"ttfts": [0.05, -0.5, 0.2, 0.0]}, "ttfts[1] = -0.5: must be a finite number >= 0"),
        ({"ttfts": [0.05, float("nan"), 0.2, 0.0]}, "ttfts[1] = NaN: must be a finite number"),
        ({"input_lens": [100, "x", 300, 1]}, 'input_lens[1] = "x": must be an integer >= 1'),
        ({"output_lens": [10, 0, 5, 0]}, "output_lens[1] = 0: must be an integer >= 1"),
        ({"output_lens": [10, 1.5, 5, 0]}, "output_lens[1] = 1.5: must be an integer"),
        ({"output_lens": [10, 1, 5]}, "output_lens has 3 entries but input_lens has 4"),
        ({"itls": [[0.01] * 9, [], [0.02, -1], []]}, "itls[2][1] = -1: must be a finite number"),
        ({"itls": [[0.01] * 9, 3, [], []]}, "itls[1] = 3: must be a list"),
        ({"latencies": [0.5, 0.01, 1, 0]}, "latencies[1] = 0.01: must be >= ttfts[1] = 0.07"),
        ({"start_times": [100.0, None, 1, 2]}, "start_times[1] = null: must be a finite number"),
        (
            {"start_times": ...},
            "key start_times is missing: no send times, arrivals not recoverable",
        ),
        ({"ttfts": ...}, "key ttfts is missing"),
        ({"itls": ...}, "keys latencies and itls are both missing"),
        ({"errors": ["a", "b", "c", "d"]}, 'every request failed (errors[0] = "a")'),
        ({"tp": "two"}, 'tp = "two": must be an integer >= 1'),
        ({"enable_prefix_caching": "maybe"}, 'enable_prefix_caching = "maybe": must be true or'),
    ],
)
def test_bad_vllm_bench_files_are_refused_by_name(tmp_path, changes, named):
    path = write(tmp_path, bench_doc(**changes))
    with pytest.raises(RunFileError) as e:
        load_run(path)
    msg = str(e.value)
    assert msg.startswith(str(path) + ": ") and named in msg and "\n" not in msg


def test_missing_and_unreadable_files_are_refused(tmp_path):
    cases = [
        (write(tmp_path, "{not json", "a.json"), "a.json: not a JSON file"),
        (write(tmp_path, [1, 2], "b.json"), "b.json: top level = [1, 2]: must be a JSON object"),
        (tmp_path / "c.json", "c.json: no such file or folder, nor a shipped run"),
        (write(tmp_path, "x", "d.txt"), "d.txt: not a run: expected a folder"),
        (tmp_path, "meta.json and requests.jsonl missing"),
    ]
    for path, named in cases:
        with pytest.raises(ValueError, match=r"^[^\n]*$") as e:
            load_run(path)
        assert named in str(e.value), str(e.value)
    with pytest.raises(ValueError, match='--format: "csv": must be one of llmservingsim'):
        load_run(cases[0][0], format="csv")


# --- LLMServingSim run folders -----------------------------------------------------------


def good_row(i: int = 0, **changes) -> dict:
    row = {"request_id": f"bench-{i}", "input_toks": 100, "output_toks": 11,
           "arrival_time": 1.7e9 + i, "queued_ts": 500.0 + i, "scheduled_ts": 500.0 + i,
           "first_token_ts": 500.2 + i, "last_token_ts": 501.2 + i}  # fmt: skip
    return {**row, **changes}


def run_folder(tmp_path, rows) -> object:
    folder = tmp_path / "run"
    folder.mkdir(exist_ok=True)
    (folder / "meta.json").write_text(json.dumps({"engine_kwargs": {"max_num_seqs": 8}}))
    text = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows)
    (folder / "requests.jsonl").write_text(text + "\n")
    return folder


def test_llmservingsim_folder_drops_failed_requests(tmp_path):
    """Tests a small folder: the arrival anchored by the fastest-admitted request, and a
    request with a null or zero timestamp dropped and counted, as upstream counts failures."""
    rows = [good_row(0), good_row(1, queued_ts=501.1, first_token_ts=501.3, last_token_ts=502.3),
            good_row(2, last_token_ts=None), good_row(3, first_token_ts=0)]  # fmt: skip
    run = load_llmservingsim(run_folder(tmp_path, rows))
    assert run.requests["request_id"].tolist() == [0, 1] and run.settings["failed"] == 2
    np.testing.assert_allclose(run.measured["ttft_s"], [0.2, 0.3], atol=1e-6)
    np.testing.assert_allclose(run.measured["tpot_s"], [0.1, 0.1], atol=1e-6)
    assert run.settings["max_num_seqs"] == 8 and run.settings["gpu"] is None


@pytest.mark.parametrize(
    ("rows", "named"),
    [
        ([good_row(0), "{oops"], 'line 2 = "{oops": not a JSON object'),
        ([{"input_toks": 3}], "line 1: field output_toks is missing"),
        ([good_row(0), good_row(1, queued_ts=-1.0)], "line 2: queued_ts = -1.0: must be a finite"),
        ([good_row(0, arrival_time="soon")], 'line 1: arrival_time = "soon": must be a finite'),
        ([good_row(0, output_toks=0)], "line 1: output_toks = 0: must be an integer >= 1"),
        ([good_row(0, last_token_ts=500.1)], "line 1: last_token_ts = 500.1: must be >= first"),
        ([good_row(0, queued_ts=None)], "every request failed (1 with a missing or zero"),
    ],
)
def test_bad_llmservingsim_folders_are_refused_by_name(tmp_path, rows, named):
    folder = run_folder(tmp_path, rows)
    with pytest.raises(RunFileError) as e:
        load_run(folder)
    msg = str(e.value)
    assert msg.startswith(str(folder / "requests.jsonl") + ": ") and named in msg, msg
    assert "\n" not in msg
