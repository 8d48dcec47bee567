"""Sweep grids: expansion, the results directory, resume, and engines that agree."""

from __future__ import annotations

import pandas as pd
import pytest

from hybridsched.cli import main
from hybridsched.jobs.store import ResultStore
from hybridsched.studies import grid as gridmod
from hybridsched.studies.cells import cell_id
from hybridsched.studies.grid import expand_grid, load_grid, run_sweep

# Tiny cells: 20 requests each, a fraction of a second.
TINY = {"num_requests": 20, "time_limit": 2.0}
VOLATILE = ["wall_s", "simulate_s"]


def _stable(table: pd.DataFrame) -> pd.DataFrame:
    t = table.drop(columns=[c for c in VOLATILE if c in table.columns])
    return t.sort_values("cell_id").reset_index(drop=True)


def test_issue_example_grid_is_eight_cells(tmp_path):
    """Tests the issue's example: lists multiply, scalars are held fixed, 8 cells in key order."""
    path = tmp_path / "g.yaml"
    path.write_text(
        "workload: gsm8k\nnum_requests: 200\nclients: [2, 4]\ntp: 4\n"
        "policy: [baseline, hybrid]\nseed: [1, 2]\n"
    )
    cells = expand_grid(load_grid(path))
    assert len(cells) == 8 and cells.skipped == []
    assert {c["tp"] for c in cells.cells} == {4} and {c["num_requests"] for c in cells.cells} == {
        200
    }
    assert [(c["clients"], c["policy"], c["seed"]) for c in cells.cells[:3]] == [
        (2, "baseline", 1),
        (2, "baseline", 2),
        (2, "hybrid", 1),
    ]
    assert len({cell_id(c) for c in cells.cells}) == 8


def test_unknown_dimension_lists_the_known_ones():
    """Tests that an unknown grid name is an error that names it and lists the known names."""
    with pytest.raises(ValueError, match=r"unknown option\(s\) gpus; known: .*clients.*tp"):
        expand_grid({"gpus": [1, 2], "tp": 4})


def test_invalid_clusters_are_skipped_and_counted():
    """Tests that a tp too small for the model is skipped with its reason, not an error."""
    cells = expand_grid({"tp": [1, 2, 4], "clients": [1, 2], "policy": "baseline"})
    assert len(cells) == 4 and len(cells.skipped) == 2
    assert {s["tp"] for s in cells.skipped} == {1}
    assert "cannot hold the weights" in cells.skipped[0]["reason"]


@pytest.mark.parametrize(
    "grid,match",
    [
        ({"policy": []}, "grid: policy has no values"),
        ({"policy": ["baseline", "nope"]}, "unknown policy 'nope'"),
        ({"model": ["no-such-model"]}, "model='no-such-model'.*unknown model profile"),
        ({"hardware": "h999"}, "hardware='h999'.*unknown hardware profile"),
        ({"clients": ["two"]}, "clients must be an integer, got 'two'"),
    ],
)
def test_bad_grids_are_errors(grid, match):
    """Tests that empty lists, unknown policies and profiles and bad values are errors."""
    with pytest.raises(ValueError, match=match):
        expand_grid(grid)


def test_sweep_resumes_only_missing_cells(tmp_path):
    """Tests that a rerun skips saved cells: after losing rows, only those cells run again,
    and the final table equals an uninterrupted run's."""
    grid = {**TINY, "policy": ["baseline", "a"], "seed": [1, 2]}
    full = run_sweep(grid, tmp_path / "full", engine="serial", progress=False)
    assert full.counts["ran"] == 4 and len(full.table) == 4
    again = run_sweep(grid, tmp_path / "full", engine="serial", progress=False)
    assert again.counts["ran"] == 0 and again.counts["already_done"] == 4

    out = tmp_path / "partial"
    store = ResultStore(out)
    store.append(full.table.iloc[:1].to_dict("records"))  # as if the run had died after 1 cell
    res = run_sweep(grid, out, engine="serial", progress=False)
    assert res.counts == {
        "cells": 4,
        "invalid_skipped": 0,
        "already_done": 1,
        "ran": 3,
        "failed": 0,
    }
    pd.testing.assert_frame_equal(_stable(res.table), _stable(full.table), check_dtype=False)


def test_interrupted_sweep_keeps_finished_cells(tmp_path, monkeypatch):
    """Tests that Ctrl-C in the middle of a sweep keeps the finished rows and a rerun runs
    only the rest."""
    grid = {**TINY, "seed": [1, 2, 3, 4]}
    calls = []
    real = gridmod.run_cell

    def interrupted(params, tables):
        calls.append(params["seed"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(params, tables)

    monkeypatch.setattr(gridmod, "run_cell", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(grid, tmp_path, engine="serial", progress=False)
    assert sorted(ResultStore(tmp_path).load()["seed"]) == [1, 2]
    monkeypatch.setattr(gridmod, "run_cell", real)
    res = run_sweep(grid, tmp_path, engine="serial", progress=False)
    assert res.counts["ran"] == 2 and sorted(res.table["seed"]) == [1, 2, 3, 4]


def test_failed_cells_are_rows_and_the_cli_says_so(tmp_path, capsys):
    """Tests that a failing cell (a request too long for tp=2's KV cache, fine on tp=4) is
    saved as a row with its error, the rest of the sweep completes, and the CLI exits 1."""
    from hybridsched.workloads.requests import load_gsm8k

    csv = tmp_path / "long.csv"
    reqs = load_gsm8k().iloc[:19][["request_id", "prompt_tokens", "output_tokens"]]
    long = pd.DataFrame({"request_id": [99999], "prompt_tokens": [6000], "output_tokens": [5]})
    pd.concat([reqs, long], ignore_index=True).to_csv(csv, index=False)
    path = tmp_path / "g.yaml"
    path.write_text(f"workload: {csv}\nmax_context: 8192\ntp: [2, 4]\npolicy: baseline\n")
    with pytest.raises(SystemExit) as ex:
        main(["sweep", "--grid", str(path), "--out", str(tmp_path / "o"), "--engine", "serial"])
    assert ex.value.code == 1
    t = ResultStore(tmp_path / "o").load()
    assert sorted(t["status"]) == ["failed", "ok"]
    failed = t[t["status"] == "failed"].iloc[0]
    assert failed["tp"] == 2 and "exceeds the KV capacity" in failed["error"]
    assert "1 cell(s) failed" in capsys.readouterr().err
    assert pd.read_parquet(tmp_path / "o" / "cells.parquet").shape[0] == 2


def test_missing_workload_is_an_error_before_any_cell(tmp_path, capsys):
    """Tests that a workload file that does not exist stops the sweep with code 2 up front."""
    path = tmp_path / "g.yaml"
    path.write_text(f"workload: [gsm8k, {tmp_path / 'missing.csv'}]\n")
    assert main(["sweep", "--grid", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_sweep_bad_grid_exits_2(tmp_path, capsys):
    """Tests that an unknown grid name exits with code 2 and one line, writing nothing."""
    path = tmp_path / "g.yaml"
    path.write_text("colour: [red]\n")
    assert main(["sweep", "--grid", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: grid: unknown option(s) colour; known:") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_local_dask_cluster_equals_serial(tmp_path, dask_scheduler):
    """Tests that a 2-worker LocalCluster (processes), reached through its scheduler address,
    gives the serial engine's rows exactly, the MMBPP-solving hybrid included."""
    grid = {**TINY, "clients": [1, 2], "arrivals": "poisson:4", "seed": [1, 2]}
    grid["policy"] = ["baseline"]
    run_sweep(grid, tmp_path / "s", engine="serial", progress=False)
    hyb = {**grid, "policy": "hybrid", "clients": 2, "seed": 1}
    serial_h = run_sweep(hyb, tmp_path / "s", engine="serial", progress=False)
    run_sweep(grid, tmp_path / "d", engine="dask", scheduler=dask_scheduler, progress=False)
    dask_h = run_sweep(hyb, tmp_path / "d", engine="dask", scheduler=dask_scheduler, progress=False)
    assert serial_h.counts["ran"] == 1 and dask_h.counts["ran"] == 1
    assert len(serial_h.table) == 5 and (serial_h.table["status"] == "ok").all()
    pd.testing.assert_frame_equal(_stable(dask_h.table), _stable(serial_h.table))


def test_process_pool_equals_serial(tmp_path):
    """Tests that the processes engine on 2 workers gives the serial engine's rows exactly."""
    grid = {**TINY, "policy": ["baseline", "a"], "arrivals": "gamma:3,2"}
    serial = run_sweep(grid, tmp_path / "s", engine="serial", progress=False)
    procs = run_sweep(grid, tmp_path / "p", engine="processes", workers=2, progress=False)
    pd.testing.assert_frame_equal(_stable(procs.table), _stable(serial.table))
