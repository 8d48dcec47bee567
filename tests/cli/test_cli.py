"""The command line: files, columns and keys that scripts rely on; bad input exits 2 with nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from hybridsched.cli import main
from hybridsched.trace.io import read_trace
from hybridsched.trace.schema import TRACE_COLUMNS


@pytest.fixture
def small_csv(tmp_path):
    """A 40-request CSV (the first GSM8K test requests) to keep CLI runs quick."""
    from hybridsched.workloads.requests import load_gsm8k

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
    from hybridsched.policies.registry import POLICIES

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
    """Tests that study and simulate run Llama-2-70B on 2 x H100 (SplitwiseSim-fitted
    profile) at tp=2 and record the profiles they used."""
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
                "h100-sxm-splitwise2023",
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
    assert "llama-2-70b" in text and "h100-sxm-splitwise2023" in text
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
                "h100-sxm-splitwise2023",
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


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--prediction-sigma", "nan"],
            "argument --prediction-sigma: must be a finite number, got nan",
        ),
        (["--lambda-multiplier", "nan"], "argument --lambda-multiplier: must be a finite number"),
        (["--lambda-multiplier", "inf"], "argument --lambda-multiplier: must be a finite number"),
        (["--prediction-sigma", "-1"], "argument --prediction-sigma: must be >= 0, got -1"),
        (["--time-limit", "x"], "argument --time-limit: must be a number, got 'x'"),
        (["--num-requests", "0"], "argument --num-requests: must be an integer >= 1, got 0"),
        (["--model", "/no/such/profile.yaml"], "--model /no/such/profile.yaml: no such file"),
        (["--policy", "nope"], "argument --policy: invalid choice: 'nope'"),
    ],
)
def test_bad_option_is_refused_by_flag_on_one_line(tmp_path, capsys, small_csv, args, message):
    """Tests that a NaN, infinite, negative or malformed option, or a missing profile path, exits 2
    with one stderr line naming the flag and the value, before anything is written."""
    out = tmp_path / "run"
    assert main(["simulate", "--requests", str(small_csv), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_folder_given_as_profile_or_requests_is_refused(tmp_path, capsys):
    """Tests that a folder passed as a YAML profile or a request CSV is a named error, exit 2."""
    out = tmp_path / "run"
    assert main(["simulate", "--hardware", str(tmp_path), "--out", str(out)]) == 2
    assert f"--hardware {tmp_path}: is a folder, not a file" in capsys.readouterr().err
    assert main(["study", "--requests", str(tmp_path), "--out", str(out)]) == 2
    assert f"--requests {tmp_path}: is a folder, not a file" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "out, message",
    [
        ("", "--out: needs a folder name, got an empty value"),
        ("/dev/null", "--out /dev/null: exists and is not a folder"),
        ("FILE", "exists and is not a folder"),
        ("FILE/sub", "is not a folder"),
        ("/proc/hybridsched-out", "--out /proc/hybridsched-out: cannot be created in /proc"),
    ],
)
@pytest.mark.parametrize("command", ["simulate", "assign", "single-case", "study", "render"])
def test_bad_out_is_refused_before_any_work(tmp_path, capsys, monkeypatch, out, message, command):
    """Tests that an empty, file, device or unwritable --out exits 2 naming it, for every command,
    before any work (the command itself is never called) and without writing anything."""
    from hybridsched import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("keep")
    called = []
    for name in ("cmd_simulate", "cmd_assign", "cmd_single_case", "cmd_study", "cmd_render"):
        monkeypatch.setattr(cli, name, lambda args, _n=name: called.append(_n))
    assert main([command, "--out", out.replace("FILE", str(tmp_path / "FILE"))]) == 2
    assert message in capsys.readouterr().err
    assert called == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"]
    assert (tmp_path / "FILE").read_text() == "keep"


def test_bad_option_from_the_shell_has_no_traceback(tmp_path):
    """Tests that `python -m hybridsched` with a NaN option prints one line and exits 2."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hybridsched",
            "simulate",
            "--prediction-sigma",
            "nan",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "--prediction-sigma" in proc.stderr


def test_render_unknown_parameter_lists_known_ones(tmp_path, capsys):
    """Tests that `render -p` with a name no selected notebook declares exits 2, lists the names the
    notebook's parameters cell declares, and creates no output folder."""
    out = tmp_path / "rep"
    assert (
        main(["render", "--notebooks", "03_exact_mip", "-p", "max_batchh=3", "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err
    assert "unknown parameter(s) max_batchh for 03_exact_mip" in err
    assert "known: " in err and "max_batch" in err and "prompt_tokens" in err
    assert not out.exists()
    assert main(["render", "-p", "out_dir=/tmp/x", "--out", str(out)]) == 2
    assert "render sets it from --out" in capsys.readouterr().err


def test_render_passes_typed_parameters(monkeypatch):
    """Tests that `render -p NAME=VALUE` passes Python literals typed and other values as strings."""

    from hybridsched.reports import rendering

    seen = {}
    monkeypatch.setattr(rendering, "render", lambda out, **kw: seen.update(out=out, **kw))
    argv = [
        "render",
        "--notebooks",
        "03_exact_mip",
        "-p",
        "max_batch=3",
        "-p",
        "prompt_tokens=[1, 2]",
    ]
    assert main([*argv, "-p", "label=two words", "--out", "somewhere"]) == 0
    assert seen["notebooks"] == ["03_exact_mip"]
    assert seen["parameters"] == {"max_batch": 3, "prompt_tokens": [1, 2], "label": "two words"}


def _readme_commands() -> list[list[str]]:
    """The `python -m hybridsched ...` lines of the README's bash blocks, as argv lists."""
    import re
    import shlex

    from hybridsched.paths import repo_root

    text = (repo_root() / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    blocks = [b.replace("\\\n", " ") for b in blocks]  # join continued lines
    lines = [ln.strip() for b in blocks for ln in b.splitlines() if "-m hybridsched" in ln]
    return [shlex.split(ln.split("#")[0]) for ln in lines]


def test_readme_commands_use_the_venv_and_parse():
    """Tests that every CLI example of the README runs through the .venv that `make venv`
    builds (not a bare `python`, which lacks the dependencies) and parses as written."""
    from hybridsched.cli import build_parser

    commands = _readme_commands()
    assert len(commands) >= 5
    parser = build_parser()
    for argv in commands:
        assert argv[:3] == [".venv/bin/python", "-m", "hybridsched"], argv
        args = parser.parse_args(argv[3:])
        assert args.out
    from hybridsched.paths import repo_root

    assert "\nvenv: $(STAMP)" in (repo_root() / "Makefile").read_text()


def test_simulate_writes_every_replan_to_replans_csv(tmp_path, small_csv):
    """Tests that a rolling-mmbpp run logs one row per replan in replans.csv, covering every
    request once, and that metrics.json summarises the same log."""
    out = tmp_path / "run"
    args = ["simulate", "--policy", "online-hybrid", "--requests", str(small_csv)]
    assert main([*args, "--arrivals", "poisson:20", "--out", str(out)]) == 0
    log = pd.read_csv(out / "replans.csv")
    assert list(log.columns) == ["time_s", "requests", "method", "status", "objective_s", "solve_s"]
    m = json.loads((out / "metrics.json").read_text())
    assert log["requests"].sum() == m["num_requests"] == m["replans"]["requests"]
    assert m["replans"]["count"] == len(log) > 1 and "router_log" not in m
    assert sum(m["replans"]["by_method"].values()) == len(log)
    assert log["time_s"].is_monotonic_increasing
    base = tmp_path / "base"
    assert main(["simulate", "--requests", str(small_csv), "--out", str(base)]) == 0
    assert pd.read_csv(base / "replans.csv").empty  # a static plan has no replans


def test_simulate_check_failure_leaves_no_files(tmp_path, small_csv, monkeypatch):
    """Tests that when --check fails (it runs beside the file writing) no output file is
    left, complete or partial."""
    import hybridsched.trace.io as trace_mod
    from hybridsched.trace.errors import TraceError

    def broken(run, inst, **kw):
        raise TraceError("an invariant: planted")

    monkeypatch.setattr(trace_mod, "check_run", broken)
    out = tmp_path / "run"
    with pytest.raises(TraceError, match="planted"):
        main(["simulate", "--requests", str(small_csv), "--check", "--out", str(out)])
    assert not out.exists() or list(out.iterdir()) == []
    monkeypatch.undo()
    assert main(["simulate", "--requests", str(small_csv), "--check", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "evictions.csv", "metrics.json", "replans.csv", "requests.csv", "trace.csv"
    ]  # fmt: skip


@pytest.mark.parametrize("policy, admission", [("online-hybrid", None), ("hybrid", "on-demand")])
def test_simulate_background_bound_is_the_bound_of_the_run(tmp_path, small_csv, policy, admission):
    """Tests that the bound computed beside the run (another process) is the bound of the
    run's instance and admission, every part, as computed in this process."""
    from hybridsched.policies.registry import POLICIES, SolveSettings
    from hybridsched.studies.bounds import full_lower_bound
    from hybridsched.studies.cells import simulate_cell

    out = tmp_path / "run"
    extra = ["--admission", admission] if admission else []
    args = ["simulate", "--policy", policy, "--requests", str(small_csv), "--arrivals", "poisson:5"]
    assert main([*args, *extra, "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    cell = simulate_cell(
        {
            "policy": policy,
            "workload": str(small_csv),
            "arrivals": "poisson:5",
            "admission": admission,
        }
    )
    assert m["admission"] == cell.run.admission == (admission or POLICIES[policy].admission)
    lb = full_lower_bound(
        cell.instance,
        solve=SolveSettings(),
        mixed_iterations=POLICIES[policy].mixed,
        admission=cell.run.admission,
    )
    assert m["lower_bound_s"] == lb.lower_bound_s
    assert m["lower_bound_parts"] == json.loads(json.dumps(lb.all_parts()))
