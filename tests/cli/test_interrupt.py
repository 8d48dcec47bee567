"""Ctrl-C and SIGTERM: one line on stderr, exit 130, nothing written to --out."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="no signals here")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_simulate_says_one_line_and_writes_nothing(tmp_path, sig):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hybridsched", "simulate", "--workload", "mooncake-conv",
           "--policy", "vllm", "--model", "llama-3.1-8b", "--hardware", "h100-sxm-vllm",
           "--fit-context", "drop", "--quiet", "--out", str(out)]  # fmt: skip  # about 45 s
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)  # imports done, the run under way
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert proc.returncode == 130, err
    assert lines == [f"interrupted: nothing written to {out}"], err
    assert not out.exists()
