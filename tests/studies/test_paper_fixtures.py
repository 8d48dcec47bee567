"""The paper's experiments are a special case of the serving engine: results must not move.

Each fixture was computed before the engine existed (tests/fixtures/paper/README.md); the
engine with all arrivals at 0, a static router and reservation admission must reproduce
every row to 1e-9 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hybridsched.studies.single_case import run_single_case
from hybridsched.studies.study import run_study

FIX = Path(__file__).parents[1] / "fixtures" / "paper"
CONFIGS = {"2x4": (2, 4), "4x2": (4, 2)}
WALL_CLOCK = {"simulate_s", "solve_s", "wall_s"}  # measured run times, not results


def _compare(got: pd.DataFrame, want: pd.DataFrame, key: list[str]) -> None:
    got = got.sort_values(key).reset_index(drop=True)
    want = want.sort_values(key).reset_index(drop=True)
    assert list(got[key[-1]]) == list(want[key[-1]])
    checked = 0
    for col in want.columns:
        if col not in got.columns or col in key or col in WALL_CLOCK:
            continue
        w = want[col]
        if not pd.api.types.is_numeric_dtype(w):
            continue
        g = pd.to_numeric(got[col], errors="coerce").to_numpy(float)
        np.testing.assert_allclose(g, w.to_numpy(float), rtol=0, atol=1e-9, err_msg=col)
        checked += 1
    assert checked >= 5


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_single_case_unchanged(name):
    clients, tp = CONFIGS[name]
    want = pd.read_csv(FIX / f"single_case_{name}.csv")
    res = run_single_case(clients=clients, tp=tp, policies=list(want["policy"]))
    _compare(res.table, want, ["policy"])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_study_unchanged(name):
    clients, tp = CONFIGS[name]
    want = pd.read_csv(FIX / f"study10_{name}.csv")
    res = run_study(cases=10, clients=clients, tp=tp, workers=1)
    _compare(res.cases, want, ["case", "policy"])
