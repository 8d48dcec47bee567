"""Arrival processes: parsing, seeded draws, rates and burstiness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridsched.workloads.arrivals import apply_arrivals, parse_arrivals


def _table(n: int) -> pd.DataFrame:
    return pd.DataFrame({"prompt_tokens": np.full(n, 10), "output_tokens": np.full(n, 5)})


@pytest.mark.parametrize(
    "spec, kind, rate, cv",
    [("zero", "zero", 0, 1), ("poisson:2.5", "poisson", 2.5, 1), ("gamma:4,3", "gamma", 4, 3)],
)
def test_parse(spec, kind, rate, cv):
    sp = parse_arrivals(spec)
    assert (sp.kind, sp.rate, sp.cv) == (kind, rate, cv)
    assert parse_arrivals(str(sp)) == sp


@pytest.mark.parametrize(
    "spec, words",
    [
        ("poisson:0", "RATE"),
        ("poisson:nan", "RATE"),
        ("poisson:-1", "RATE"),
        ("gamma:2", "RATE,CV"),
        ("gamma:2,inf", "CV"),
        ("uniform:3", "unknown process"),
        ("zero:1", "no arguments"),
    ],
)
def test_bad_specs_are_named(spec, words):
    with pytest.raises(ValueError, match=words):
        parse_arrivals(spec)


def test_poisson_rate_and_seed():
    a = apply_arrivals(_table(20000), "poisson:5", seed=3)["arrival_s"].to_numpy()
    assert np.all(np.diff(a) >= 0) and a[0] > 0
    assert len(a) / a[-1] == pytest.approx(5, rel=0.03)
    b = apply_arrivals(_table(20000), "poisson:5", seed=3)["arrival_s"].to_numpy()
    np.testing.assert_array_equal(a, b)
    c = apply_arrivals(_table(20000), "poisson:5", seed=4)["arrival_s"].to_numpy()
    assert not np.array_equal(a, c)


def test_gamma_is_bursty():
    a = apply_arrivals(_table(20000), "gamma:5,3", seed=1)["arrival_s"].to_numpy()
    gaps = np.diff(np.concatenate([[0.0], a]))
    assert gaps.mean() == pytest.approx(0.2, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(3, rel=0.1)


def test_zero_and_table():
    t = _table(4).assign(arrival_s=[0.0, 1.0, 2.0, 3.0])
    assert (apply_arrivals(t, "zero")["arrival_s"] == 0).all()
    assert list(apply_arrivals(t, "table")["arrival_s"]) == [0.0, 1.0, 2.0, 3.0]
