"""The command line: files, columns and keys that scripts rely on; bad input exits 2 with nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from hybridsched.cli import main
from hybridsched.simulator import TRACE_COLUMNS
from hybridsched.trace import read_trace


@pytest.fixture
def small_csv(tmp_path):
    """A 40-request CSV (the first GSM8K test requests) to keep CLI runs quick."""
    from hybridsched.data import load_gsm8k

    path = tmp_path / "req.csv"
    load_gsm8k().iloc[:40].to_csv(path, index=False)
    return path


def test_simulate_writes_trace_and_metrics(tmp_path, small_csv):
    """Tests that `simulate` writes trace.csv with the trace schema and metrics.json with the documented keys."""
    out = tmp_path / "run"
    assert (
        main(
            [
                "simulate",
                "--policy",
                "hybrid",
                "--requests",
                str(small_csv),
                "--out",
                str(out),
                "--check",
            ]
        )
        == 0
    )
    tr = read_trace(out / "trace.csv")
    assert list(tr.columns) == TRACE_COLUMNS
    m = json.loads((out / "metrics.json").read_text())
    for key in (
        "makespan_s",
        "utilization",
        "mean_batch",
        "num_prefill_iterations",
        "num_requests",
        "clients",
        "tp",
        "max_batch",
        "seed",
        "versions",
        "lower_bound_s",
        "lower_bound_parts",
        "gap_to_lb",
    ):
        assert key in m, key
    assert m["num_requests"] == 40 and m["clients"] == 2 and m["tp"] == 4 and m["max_batch"] == 32
    assert m["makespan_s"] == pytest.approx(tr["end_s"].max())
    assert m["makespan_s"] >= m["lower_bound_s"]
    assert m["gap_to_lb"] == pytest.approx(
        (m["makespan_s"] - m["lower_bound_s"]) / m["lower_bound_s"]
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tp", "1"], "tp"),
        (["--max-batch", "0"], "--max-batch"),
        (["--model", "gpt-9"], "unknown model profile"),
        (["--hardware", "tpu-v9"], "unknown hardware profile"),
        (["--clients", "0"], "--clients"),
    ],
)
def test_bad_cluster_exits_2_and_writes_nothing(tmp_path, capsys, small_csv, args, message):
    """Tests that a bad cluster argument exits with code 2, names the field, and leaves no output folder."""
    out = tmp_path / "run"
    assert main(["simulate", "--requests", str(small_csv), "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("prompt_tokens,output_tokens\n10,-3\n", "output_tokens"),
        ("prompt_tokens,output_tokens\n10,2.5\n", "must be an integer"),
        ("prompt_tokens\n10\n", "missing column"),
        ('prompt_tokens,output_tokens\n"10,3\n', "CSV"),
        ("prompt_tokens,output_tokens\n10,9000\n", "context of 2048 tokens"),
    ],
)
def test_bad_requests_exit_2_and_write_nothing(tmp_path, capsys, content, message):
    """Tests that a bad request CSV exits with code 2 naming the problem, and writes no partial output."""
    path = tmp_path / "bad.csv"
    path.write_text(content)
    out = tmp_path / "run"
    assert (
        main(
            ["simulate", "--requests", str(path), "--tp", "2", "--clients", "4", "--out", str(out)]
        )
        == 2
    )
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_assign_writes_assignment_and_solve(tmp_path, small_csv):
    """Tests that `assign` writes one client per request and the solve record with its documented keys."""
    out = tmp_path / "a"
    assert (
        main(["assign", "--requests", str(small_csv), "--time-limit", "5", "--out", str(out)]) == 0
    )
    a = pd.read_csv(out / "assignment.csv")
    assert (
        list(a.columns) == ["request_id", "client"] and len(a) == 40 and set(a["client"]) <= {0, 1}
    )
    s = json.loads((out / "solve.json").read_text())
    for key in ("status", "objective_s", "bound_s", "gap", "runtime_s", "fallback_reason"):
        assert key in s, key
    assert s["bound_s"] <= s["objective_s"] + 1e-9


def test_assign_time_limit_zero_falls_back(tmp_path, small_csv):
    """Tests that a zero time limit gives the documented LPT fallback, with its reason, not an error."""
    out = tmp_path / "a"
    assert (
        main(["assign", "--requests", str(small_csv), "--time-limit", "0", "--out", str(out)]) == 0
    )
    s = json.loads((out / "solve.json").read_text())
    assert s["status"] == "fallback" and s["fallback_reason"]


def test_single_case_and_study_write_their_tables(tmp_path, small_csv):
    """Tests that `single-case` and `study` write the documented files and columns."""
    out = tmp_path / "sc"
    assert main(["single-case", "--requests", str(small_csv), "--out", str(out)]) == 0
    t = pd.read_csv(out / "single_case.csv")
    for col in (
        "policy",
        "makespan_s",
        "utilization",
        "mean_batch",
        "num_prefill_iterations",
        "lower_bound_s",
        "gap_to_lb",
        "gap_closed",
    ):
        assert col in t.columns, col
    from hybridsched.experiments import POLICIES

    assert set(t["policy"]) == set(POLICIES)
    assert {"baseline", "a", "a-sorted", "b", "c", "hybrid"} <= set(POLICIES)
    j = json.loads((out / "single_case.json").read_text())
    assert "lower_bound" in j and "versions" in j["params"] and "seed" in j["params"]

    out = tmp_path / "st"
    assert (
        main(
            [
                "study",
                "--cases",
                "2",
                "--requests-per-case",
                "30",
                "--workers",
                "1",
                "--requests",
                str(small_csv),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    c = pd.read_csv(out / "study_cases.csv")
    assert {
        "case",
        "seed",
        "policy",
        "makespan_s",
        "utilization",
        "mean_batch",
        "lower_bound_s",
    } <= set(c.columns)
    assert len(c) == 4
    s = pd.read_csv(out / "study_summary.csv")
    assert {
        "policy",
        "utilization_mean",
        "makespan_mean_s",
        "wins",
        "utilization_gain_pp_mean",
    } <= set(s.columns)


def test_module_entry_point_runs():
    """Tests that `python -m hybridsched --help` works from a fresh interpreter."""
    r = subprocess.run(
        [sys.executable, "-m", "hybridsched", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "simulate" in r.stdout and "study" in r.stdout


def test_study_and_simulate_take_any_profile(tmp_path):
    """Tests that study and simulate run Llama-2-70B on 2 x H100 (measured profile) at tp=2
    and record the profiles they used."""
    import json

    from hybridsched.cli import main

    out = tmp_path / "study"
    assert (
        main(
            [
                "study",
                "--cases",
                "1",
                "--requests-per-case",
                "20",
                "--workers",
                "1",
                "--model",
                "llama-2-70b",
                "--hardware",
                "h100-80gb-sxm-measured",
                "--tp",
                "2",
                "--time-limit",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    doc = json.loads((out / "study.json").read_text())
    text = json.dumps(doc)
    assert "llama-2-70b" in text and "h100-80gb-sxm-measured" in text
    sim = tmp_path / "sim"
    assert (
        main(
            [
                "simulate",
                "--policy",
                "baseline",
                "--model",
                "llama-2-70b",
                "--hardware",
                "h100-80gb-sxm-measured",
                "--tp",
                "2",
                "--num-requests",
                "20",
                "--out",
                str(sim),
            ]
        )
        == 0
    )
    metrics = json.loads((sim / "metrics.json").read_text())
    assert metrics["makespan_s"] > 0


def test_commands_run_without_highspy(tmp_path, small_csv, monkeypatch):
    """Tests that with highspy not importable `assign` and `simulate` still succeed: the
    versions record says "not installed" and the MMBPP degrades to the heuristics."""
    import sys

    monkeypatch.setitem(sys.modules, "highspy", None)
    out = tmp_path / "a"
    assert main(["assign", "--requests", str(small_csv), "--out", str(out)]) == 0
    s = json.loads((out / "solve.json").read_text())
    assert s["versions"]["highspy"] == "not installed" and not s["solver_used"]
    assert s["bound_s"] <= s["objective_s"] + 1e-9
    sim = tmp_path / "s"
    assert (
        main(["simulate", "--requests", str(small_csv), "--policy", "hybrid", "--out", str(sim)])
        == 0
    )
    assert json.loads((sim / "metrics.json").read_text())["versions"]["highspy"] == "not installed"
