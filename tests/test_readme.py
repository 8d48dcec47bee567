"""Every command the README and docs/ show runs as written, in smoke mode, and writes only
under its --out (a temporary folder here): a stale or garbled example fails this test."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from hybridsched.paths import repo_root

DOCS = ("README.md", "docs/model.md", "docs/architecture.md")
# Smoke values per command: the same command on a small input (flag -> value; a flag
# absent from the command is added). Commands not listed run as written.
SMOKE = {
    "study": {"--cases": "2", "--requests-per-case": "40", "--workers": "1"},
    "single-case": {"--num-requests": "60", "--time-limit": "2"},
    "simulate": {"--time-limit": "2"},
    "capacity": {
        "--num-requests": "60",
        "--max-gpus": "4",
        "--engine": "serial",
        "--min-duration": "20",
        "--seeds": "1",
    },
    "sweep": {"--workers": "1", "--engine": "serial"},
    "render": {"--smoke": None},
    "validate": {},
}
# Flags whose value is shrunk in smoke mode wherever it appears.
SHRINK = {"--window": "0:60"}


def commands() -> list[tuple[str, str]]:
    """``(file, command)`` for every ``python -m hybridsched`` line of a fenced shell block."""
    root = repo_root()
    out = []
    for name in DOCS:
        path = root / name
        if not path.exists():
            continue
        for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", path.read_text(), re.S):
            text = block.replace("\\\n", " ")
            for line in text.splitlines():
                line = line.split("  #")[0].strip()
                if "-m hybridsched" in line:
                    out.append((name, line))
    return out


def smoke(argv: list[str], tmp) -> list[str]:
    """``argv`` with its --out under ``tmp`` and its smoke values."""
    i = argv.index("-m")
    args = argv[i + 2 :]
    cmd = args[0] if args else ""
    out, k = [], 0
    while k < len(args):
        a = args[k]
        if a == "--out":
            out += ["--out", str(tmp / args[k + 1].strip("/").replace("/", "_"))]
            k += 2
            continue
        if a in SHRINK:
            out += [a, SHRINK[a]]
            k += 2
            continue
        out.append(a)
        k += 1
    for flag, value in SMOKE.get(cmd, {}).items():
        if flag in out:
            if value is not None:
                out[out.index(flag) + 1] = value
        else:
            out += [flag] if value is None else [flag, value]
    return [sys.executable, "-m", "hybridsched", *out]


def _status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=repo_root(),
        capture_output=True,
        text=True,
    ).stdout


@pytest.mark.slow
@pytest.mark.parametrize(("doc", "command"), commands(), ids=lambda v: v[:60])
def test_documented_command_runs_and_writes_only_under_out(doc, command, tmp_path):
    """Tests that a documented command exits 0 in smoke mode and leaves the checkout as it was."""
    before = _status()
    argv = smoke(shlex.split(command), tmp_path)
    res = subprocess.run(argv, cwd=repo_root(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{doc}: {command}\n{res.stderr[-2000:]}"
    assert _status() == before, f"{doc}: {command} wrote into the checkout"


def test_the_readme_shows_commands_and_they_parse():
    """Tests that the README shows commands and that each one parses (the right flags)."""
    from hybridsched.cli import build_parser

    cmds = commands()
    assert len(cmds) >= 8
    parser = build_parser()
    for _doc, command in cmds:
        argv = shlex.split(command)
        args = argv[argv.index("-m") + 2 :]
        parser.parse_args(args)  # exits (SystemExit) on an unknown flag or bad value
