"""Every command writes all or nothing: a failure at its last file leaves ``--out`` as it
was, byte for byte, exits 2 and says so in one line naming the file."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from hybridsched.cli import main


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    """20 GSM8K requests: every command below runs in a second or two."""
    from hybridsched.workloads.requests import load_gsm8k

    path = tmp_path_factory.mktemp("atomic") / "req.csv"
    load_gsm8k().iloc[:20].to_csv(path, index=False)
    return path


def snapshot(folder: Path) -> dict:
    """Every path under ``folder`` with its bytes (None for a folder), and the names beside
    it (a staging folder left behind shows there)."""
    files = {
        str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(folder.rglob("*"))
    }
    return {"files": files, "beside": sorted(os.listdir(folder.parent))}


def earlier_run(out: Path, names: list[str], last: str) -> dict:
    """``out`` as an earlier run left it, every file stale (a file moved in would change),
    with a folder where ``last`` goes; its snapshot."""
    out.mkdir(parents=True)
    for name in names:
        (out / name).write_text(f"stale {name}\n")
    (out / last).mkdir()
    (out / last / "keep.txt").write_text("not ours\n")
    (out / "unrelated.txt").write_text("mine\n")
    return snapshot(out)


def one_error_line(argv: list[str], capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    return err[0]


CSV = "{csv}"
COMMANDS = {
    "simulate": (
        ["simulate", "--requests", CSV],
        ["trace.csv", "requests.csv", "evictions.csv", "replans.csv"],
        "metrics.json",
    ),
    "assign": (
        ["assign", "--requests", CSV, "--time-limit", "2"],
        ["assignment.csv"],
        "solve.json",
    ),
    "single-case": (
        ["single-case", "--requests", CSV, "--policies", "baseline", "--time-limit", "2"],
        ["single_case.csv"],
        "single_case.json",
    ),
    "study": (
        ["study", "--requests", CSV, "--cases", "1", "--requests-per-case", "20"]
        + ["--workers", "1", "--engine", "serial", "--policies", "baseline", "--quiet"],
        ["study_cases.csv", "study_summary.csv"],
        "study.json",
    ),
    "capacity": (
        ["capacity", "--workload", CSV, "--slo-ttft", "2", "--slo-tpot", "0.2", "--rate", "1"]
        + ["--tp", "4", "--clients", "1", "--policies", "baseline", "--num-requests", "20"]
        + ["--min-duration", "0", "--seeds", "1", "--engine", "serial", "--quiet"],
        ["candidates.csv", "evaluations.csv"],
        "capacity.json",
    ),
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_folder_at_the_last_file_leaves_out_unchanged(tmp_path, capsys, small_csv, command):
    """Tests that when the last file's target is a folder, the command runs, then moves
    none of its files: --out is byte for byte as it was, exit 2, one line naming the path."""
    args, first, last = COMMANDS[command]
    out = tmp_path / "run"
    before = earlier_run(out, first, last)
    argv = [a.format(csv=small_csv) for a in args]
    line = one_error_line([*argv, "--out", str(out)], capsys)
    assert f"{out / last}: is a folder" in line
    assert snapshot(out) == before


def test_a_full_disk_at_the_last_file_leaves_out_unchanged(
    tmp_path, capsys, small_csv, monkeypatch
):
    """Tests that when writing simulate's last file fails (no space left), the files written
    before it are not moved in: --out unchanged, exit 2, one line naming the file."""
    from hybridsched.cli import outputs

    out = tmp_path / "run"
    assert main(["simulate", "--requests", str(small_csv), "--out", str(out)]) == 0
    capsys.readouterr()
    for p in out.iterdir():
        p.write_text(f"stale {p.name}\n")
    before = snapshot(out)
    write = outputs._write_file

    def full_disk(path, name, content, options):
        if name == "metrics.json":
            path.write_text("{")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(path, name, content, options)

    monkeypatch.setattr(outputs, "_write_file", full_disk)
    line = one_error_line(["simulate", "--requests", str(small_csv), "--out", str(out)], capsys)
    assert line.startswith(f"error: {out / 'metrics.json'}: cannot be written (No space left")
    assert snapshot(out) == before


def test_export_that_fails_writing_keeps_the_old_file(tmp_path, capsys, small_csv, monkeypatch):
    """Tests that `export` whose write fails half-way leaves the old file (and no partial
    file beside it), and that a folder given as --out is refused naming it."""
    import pandas as pd

    target = tmp_path / "trace.csv"
    target.write_text("stale\n")
    before = snapshot(tmp_path)

    def full_disk(self, path, **kw):
        Path(path).write_text("arrived_at,num_pre")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    argv = ["export", "--workload", str(small_csv)]
    line = one_error_line([*argv, "--out", str(target)], capsys)
    assert f"{target}: cannot be written" in line
    assert snapshot(tmp_path) == before
    monkeypatch.undo()
    line = one_error_line([*argv, "--out", str(tmp_path)], capsys)
    assert f"--out {tmp_path}: is a folder, not a file" in line


def test_calibrate_that_fails_writing_keeps_the_old_profile(tmp_path, capsys, monkeypatch):
    """Tests that `calibrate` whose profile write fails leaves the old profile as it was."""
    from hybridsched.latency import calibration
    from hybridsched.paths import repo_root

    target = tmp_path / "fitted.yaml"
    target.write_text("name: old\n")
    before = snapshot(tmp_path)

    def full_disk(fit, path, meta):
        Path(path).write_text("name: fi")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(calibration, "write_profile", full_disk)
    measured = repo_root() / "data" / "latency" / "splitwise" / "perf_model_measured.csv"
    argv = ["calibrate", "--measurements", str(measured), "--model", "llama-2-70b"]
    line = one_error_line([*argv, "--hardware", "a100-80gb-sxm", "--out", str(target)], capsys)
    assert f"{target}: cannot be written (No space left" in line
    assert snapshot(tmp_path) == before


def tiny_notebook(path: Path, body: str) -> Path:
    """A notebook with a title, a ``parameters`` cell and ``body``."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    params = new_code_cell('smoke = False\nout_dir = "unused"')
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell("# tiny"), params, new_code_cell(body)])
    spec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["kernelspec"] = spec
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_render_moves_no_report_when_the_index_cannot_be_written(tmp_path, capsys):
    """Tests that `render` whose index.html target is a folder moves neither the report nor
    its results in: --out unchanged, exit 2, one line naming index.html."""
    notebook = tiny_notebook(tmp_path / "01_tiny.ipynb", "1 + 1")
    out = tmp_path / "reports"
    before = earlier_run(out, ["01_tiny.html"], "index.html")
    argv = ["render", "--notebooks", str(notebook), "--quiet", "--out", str(out)]
    line = one_error_line(argv, capsys)
    assert f"{out / 'index.html'}: is a folder" in line
    assert snapshot(out) == before


@pytest.mark.slow
def test_render_with_a_failing_notebook_keeps_the_other_reports(tmp_path, capsys):
    """Tests that `render` of a failing notebook removes its stale report and rewrites the
    index in the same move: the reports it did not render stay, listed; exit 1."""
    import json

    notebook = tiny_notebook(tmp_path / "02_bad.ipynb", "raise ValueError('boom')")
    out = tmp_path / "reports"
    (out / "01_kept").mkdir(parents=True)
    meta = {"notebook": "01_kept", "html": "01_kept.html", "claim": "kept claim"}
    (out / "01_kept" / "render.json").write_text(json.dumps(meta))
    (out / "01_kept.html").write_text("kept report\n")
    (out / "02_bad").mkdir()
    (out / "02_bad.html").write_text("stale report\n")
    argv = ["render", "--notebooks", str(notebook), "--quiet", "--out", str(out)]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 1 and "boom" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["01_kept", "01_kept.html", "index.html"]
    assert (out / "01_kept.html").read_text() == "kept report\n"
    index = (out / "index.html").read_text()
    assert "href='01_kept.html'" in index and "kept claim" in index and "FAILED" in index
    assert sorted(os.listdir(tmp_path)) == ["02_bad.ipynb", "reports"]


@pytest.mark.parametrize("last", ["sweep.json", "cells.parquet"])
def test_sweep_refuses_a_bad_target_before_any_cell(tmp_path, capsys, small_csv, last):
    """Tests that a sweep whose summary target is a folder (or whose store is a file) stops
    before running a cell, naming it, with --out unchanged."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"workload: {small_csv}\nnum_requests: 20\npolicy: [baseline, vllm]\n")
    out = tmp_path / "sweep"
    if last == "sweep.json":
        before = earlier_run(out, [], "sweep.json")
    else:
        before = earlier_run(out, ["cells.parquet"], "other")
    argv = ["sweep", "--grid", str(grid), "--engine", "serial", "--quiet", "--out", str(out)]
    line = one_error_line(argv, capsys)
    assert f"{out / last}: is a" in line
    assert snapshot(out) == before


def test_unreachable_scheduler_is_one_line_after_a_short_wait(tmp_path, small_csv):
    """Tests that `study --engine dask --scheduler ADDRESS` with nothing at the address says
    in one line that it cannot be reached, naming it, after about 5 s, and writes nothing.
    (In a fresh interpreter: importing Dask here would change how exceptions pickle.)"""
    import subprocess
    import sys

    out = tmp_path / "study"
    argv = ["study", "--requests", str(small_csv), "--cases", "1", "--requests-per-case", "20"]
    argv += ["--engine", "dask", "--scheduler", "tcp://256.0.0.1:1", "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "hybridsched", *argv, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.perf_counter() - t0 < 25
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "error: scheduler tcp://256.0.0.1:1: cannot be reached (no answer within 5 s)"
    ]
    assert not out.exists()
