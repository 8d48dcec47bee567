"""Ctrl-C and SIGTERM: one line on stderr, exit 130, --out as it was (a sweep keeps the
cells it finished and says how many, and how to resume)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

pytestmark = pytest.mark.skipif(
    os.name != "posix" or not hasattr(signal, "SIGINT"), reason="no POSIX signals here"
)


def start(argv: list[str]) -> subprocess.Popen:
    """``python -m hybridsched ARGV`` in its own process group, as a shell runs a command."""
    cmd = [sys.executable, "-m", "hybridsched", *argv]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def wait_for_children(proc: subprocess.Popen, count: int, timeout: float = 60) -> list:
    """The command's child processes once it has ``count`` of them (its run is under way)."""
    parent = psutil.Process(proc.pid)
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        kids = [k for k in parent.children() if "resource_tracker" not in " ".join(k.cmdline())]
        if len(kids) >= count:
            return kids
        time.sleep(0.05)
    pytest.fail(f"no {count} child process(es) within {timeout} s: {proc.communicate()}")


def stop(proc: subprocess.Popen, sig: int, group: bool) -> tuple[str, list[str]]:
    """Send ``sig`` (to the whole group, as a terminal's Ctrl-C does); stdout, stderr lines."""
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return out, [x for x in err.splitlines() if x.strip()]


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_interrupted_simulate_says_one_line_and_writes_nothing(tmp_path, sig, group):
    """Tests that Ctrl-C (to the process group) or SIGTERM during `simulate` exits 130 with
    one line on stderr and leaves --out (an earlier run's folder) as it was."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}\n")
    proc = start(
        ["simulate", "--workload", "azure-conv", "--policy", "vllm", "--model", "llama-3.1-8b",
         "--fit-context", "drop", "--rate-scale", "50", "--out", str(out)]
    )  # fmt: skip
    wait_for_children(proc, 1)  # the bound's process: the simulation is under way
    time.sleep(0.5)
    _, err = stop(proc, sig, group)
    assert proc.returncode == 130, err
    assert err == [f"interrupted; nothing written to {out}"]
    assert os.listdir(out) == ["metrics.json"] and (out / "metrics.json").read_text() == "{}\n"
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_interrupted_sweep_keeps_its_cells_and_says_how_to_resume(tmp_path):
    """Tests that Ctrl-C during a sweep on a local Dask cluster exits 130 with one line
    saying how many cells are kept (as many as the store holds) and how to resume, and
    that the cluster's workers are gone."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        # cells of about 40 s each (Mooncake's long prompts, prefix caching): none can
        # finish all ten before the interrupt, however fast the machine
        "workload: mooncake-conv\nmodel: llama-3.1-8b\nhardware: h100-sxm-vllm\n"
        "fit_context: drop\npolicy: vllm\nseed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
    )
    out = tmp_path / "sweep"
    proc = start(["sweep", "--grid", str(grid), "--workers", "2", "--out", str(out)])
    workers = wait_for_children(proc, 2)  # the cluster's two workers
    time.sleep(4.0)  # the cells under way
    _, err = stop(proc, signal.SIGINT, group=True)
    assert proc.returncode == 130, err
    assert len(err) == 1, err
    m = re.fullmatch(
        rf"interrupted; (\d+) of 10 cells kept in {re.escape(str(out))}, "
        r"rerun the same command to resume",
        err[0],
    )
    assert m, err
    from hybridsched.jobs.store import ResultStore

    kept = ResultStore(out).done_ids() if out.exists() else set()
    assert int(m.group(1)) == len(kept) < 10
    assert not (out / "sweep.json").exists()
    time.sleep(0.5)
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
