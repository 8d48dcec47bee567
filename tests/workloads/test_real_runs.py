"""Real serving runs: the four shipped vLLM runs load as their source's summary says, and a
``vllm bench serve`` file loads with TPOT = (E2E - TTFT) / (output - 1); bad files are
refused with the file, the field and the row named."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hybridsched.paths import data_dir
from hybridsched.workloads.real_runs import list_llmservingsim_runs, load_run
from hybridsched.workloads.requests import validate_requests

SUMMARY = data_dir() / "validation" / "llmservingsim" / "summary.csv"


def test_four_shipped_runs():
    assert list_llmservingsim_runs() == [
        "RTX4090/Llama-3.1-8B",
        "RTXPRO6000/Llama-3.1-8B",
        "RTXPRO6000/Qwen3-30B-A3B-Instruct-2507",
        "RTXPRO6000/Qwen3-32B",
    ]


@pytest.mark.parametrize("name", list_llmservingsim_runs())
def test_shipped_run_matches_its_summary(name):
    """Tests that each run has 300 requests, TTFT <= E2E everywhere, arrivals from 0, a replay
    table the engine accepts, and the arrival-anchored means and p99 of the source's
    summary.csv (to its 6 significant digits)."""
    run = load_run(name)
    m = run.measured
    assert len(run.requests) == len(m) == 300
    assert (m["ttft_s"] <= m["e2e_s"]).all() and (m["ttft_s"] >= 0).all()
    assert run.requests["arrival_s"].min() == 0.0
    validate_requests(run.requests)
    row = pd.read_csv(SUMMARY).set_index("run").loc[name]
    for col in ("ttft", "e2e", "tpot"):
        assert m[f"{col}_s"].mean() == pytest.approx(row[f"{col}_mean_s"], rel=2e-5)
        assert np.percentile(m[f"{col}_s"], 99) == pytest.approx(row[f"{col}_p99_s"], rel=2e-5)
    assert run.settings["max_num_batched_tokens"] == 2048
    assert run.settings["api_server"] is False


def test_runs_carry_the_later_turns_shared_prefixes():
    """Tests that the replay table says which later turns repeat an earlier prompt (about 8% of
    the prompt tokens), each pointing at an earlier request."""
    req = load_run("RTXPRO6000/Qwen3-32B").requests
    share = req["shared_prefix_tokens"].sum() / req["prompt_tokens"].sum()
    assert 0.05 < share < 0.12
    later = req[req["prefix_parent"] >= 0]
    assert (later["prefix_parent"] < later["request_id"]).all()


def bench_json(tmp_path, **changes):
    doc = {
        "model_id": "meta-llama/Llama-3.1-8B",
        "request_rate": 4.0,
        "input_lens": [100, 200, 300],
        "output_lens": [10, 1, 5],
        "ttfts": [0.05, 0.07, 0.2],
        "itls": [[0.01] * 9, [], [0.02, 0.03, 0.02, 0.03]],
        "start_times": [100.0, 100.5, 101.25],
        "errors": ["", "", ""],
    }
    doc.update(changes)
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    return path


def test_vllm_bench_file_loads(tmp_path):
    """Tests arrivals from the first start, E2E = TTFT + sum(ITL), TPOT = (E2E - TTFT)/(o - 1)
    (NaN for one output token), and a failed request dropped and counted."""
    run = load_run(bench_json(tmp_path, errors=["", "", "timeout"]))
    m = run.measured
    assert run.requests["arrival_s"].tolist() == [0.0, 0.5]
    assert m["e2e_s"].tolist() == pytest.approx([0.05 + 0.09, 0.07])
    assert m["tpot_s"].iloc[0] == pytest.approx(0.09 / 9) and np.isnan(m["tpot_s"].iloc[1])
    assert run.settings["failed"] == 1 and run.settings["api_server"] is True


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"ttfts": [0.05, -0.5, 0.2]}, "ttfts[1] = -0.5"),
        ({"ttfts": [0.05, float("nan"), 0.2]}, "ttfts[1]"),
        ({"input_lens": [100, "x", 300]}, "input_lens[1] = 'x'"),
        ({"output_lens": [10, 0, 5]}, "output_lens[1] = 0"),
        ({"output_lens": [10, 1]}, "output_lens has 2 entries"),
        ({"itls": None}, "lacks itls"),
        ({"start_times": None}, "start_times"),
        ({"errors": ["a", "b", "c"]}, "every request failed"),
    ],
)
def test_bad_vllm_bench_files_are_refused_by_name(tmp_path, changes, named):
    doc = {k: v for k, v in changes.items() if v is not None}
    path = bench_json(tmp_path, **doc)
    if None in changes.values():
        raw = json.loads(path.read_text())
        for k, v in changes.items():
            if v is None:
                raw.pop(k)
        path.write_text(json.dumps(raw))
    with pytest.raises(ValueError) as e:
        load_run(path)
    assert named in str(e.value) and "bench.json" in str(e.value)
    assert "\n" not in str(e.value)


def test_not_json_and_missing_field_rows(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="x.json: not a JSON file"):
        load_run(bad)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "meta.json").write_text("{}")
    (run_dir / "requests.jsonl").write_text('{"input_toks": 3}\n')
    with pytest.raises(ValueError, match="row 0 lacks field output_toks"):
        load_run(run_dir)
