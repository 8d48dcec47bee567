"""The command line's prefix-cache options: ``--shared-prefix``, ``--prefix-caching``, and the
``metrics.json`` keys scripts read (``prefill_tokens_saved``, ``prefix_cache_hit_rate``)."""

from __future__ import annotations

import json

import pytest

from hybridsched.cli import main


@pytest.fixture
def small_csv(tmp_path):
    from hybridsched.workloads.requests import load_gsm8k

    path = tmp_path / "req.csv"
    load_gsm8k().iloc[:40].to_csv(path, index=False)
    return path


def simulate(tmp_path, small_csv, name, *flags) -> dict:
    out = tmp_path / name
    args = ["simulate", "--policy", "vllm", "--requests", str(small_csv), "--check"]
    assert main([*args, *flags, "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_shared_prefix_is_found_cached_and_can_be_switched_off(tmp_path, small_csv):
    """Tests that a 48-token system prompt (three blocks) is computed about once per client:
    the other requests find it cached; with ``--prefix-caching off`` nothing is saved."""
    on = simulate(tmp_path, small_csv, "on", "--shared-prefix", "48")
    assert on["kv"]["prefix_caching"] is True
    assert 0 < on["prefill_tokens_saved"] <= 48 * 40
    assert on["prefill_tokens_saved"] % 16 == 0  # whole blocks
    assert 0 < on["prefix_cache_hit_rate"] < 1
    off = simulate(tmp_path, small_csv, "off", "--shared-prefix", "48", "--prefix-caching", "off")
    assert "prefill_tokens_saved" not in off and off["kv"]["prefix_caching"] is False
    assert on["lower_bound_s"] <= on["makespan_s"]


def test_negative_shared_prefix_exits_2_naming_the_flag(tmp_path, small_csv, capsys):
    """Tests that ``--shared-prefix -1`` is refused by name, nothing written."""
    out = tmp_path / "bad"
    code = main(
        ["simulate", "--requests", str(small_csv), "--shared-prefix", "-1", "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--shared-prefix" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
