"""Tests for the predictor-quality sweep of notebook 09 (uncertainty_study.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridsched.studies.uncertainty import (
    CLUSTERS,
    offline_pays,
    predictor_quality,
    summarize,
    uncertainty_sweep,
)

BASE = {"num_requests": 16, "seed": 2, "time_limit": 1.0, "mip_gap": 1e-2}
POLS = ("baseline", "hybrid", "hybrid-amin", "vllm")


@pytest.fixture(scope="module")
def rows():
    return uncertainty_sweep(
        BASE,
        {"4 x tp2": CLUSTERS["4 x tp2"]},
        POLS,
        ("oracle", "trained", "noisy:0.5"),
        prediction_seeds=(0, 1),
    )


def test_one_row_per_cell_noisy_seeds_only(rows):
    """Deterministic predictors run once, the noisy one once per seed; all cells succeed
    (``trained`` gets the question texts from the preloaded table)."""
    assert len(rows) == (1 + 1 + 2) * len(POLS)
    assert (rows["status"] == "ok").all(), rows.loc[rows["status"] != "ok", "error"].tolist()
    seeds = rows.groupby("predictor")["prediction_seed"].agg(lambda s: sorted(set(s)))
    assert seeds.to_dict() == {"oracle": [0], "trained": [0], "noisy:0.5": [0, 1]}
    assert set(rows["cluster"]) == {"4 x tp2"}


def test_summary_means_over_seeds_and_references(rows):
    s = summarize(rows)
    assert len(s) == 3 * len(POLS)
    noisy = rows[(rows["predictor"] == "noisy:0.5") & (rows["policy"] == "hybrid")]
    got = s[(s["predictor"] == "noisy:0.5") & (s["policy"] == "hybrid")].iloc[0]
    assert got["makespan_s"] == pytest.approx(noisy["makespan_s"].mean())
    assert got["runs"] == 2 and got["failed"] == 0
    assert np.allclose(s.loc[s["policy"] == "baseline", "vs_baseline"], 0)
    assert np.allclose(s.loc[s["policy"] == "vllm", "vs_vllm"], 0)
    # vs_baseline is the mean over seeds of the per-seed ratio
    b = rows[(rows["predictor"] == "noisy:0.5") & (rows["policy"] == "baseline")]
    ratio = noisy["makespan_s"].to_numpy() / b["makespan_s"].to_numpy() - 1
    assert got["vs_baseline"] == pytest.approx(ratio.mean())


def test_offline_pays_picks_the_best_offline_policy(rows):
    s = summarize(rows)
    pays = offline_pays(s)
    assert list(pays["predictor"]) == ["oracle", "trained", "noisy:0.5"]
    for _, r in pays.iterrows():
        g = s[s["predictor"] == r["predictor"]].set_index("policy")["makespan_s"]
        assert r["best_offline"] in ("hybrid", "hybrid-amin")  # never the baseline or vllm
        assert r["best_offline_makespan_s"] == min(g["hybrid"], g["hybrid-amin"])
        assert r["best_offline_vs_vllm"] == pytest.approx(
            r["best_offline_makespan_s"] / g["vllm"] - 1
        )


def test_failed_cells_are_rows_not_exceptions():
    """A failed run is counted in ``failed`` and leaves its metrics blank."""
    rows = pd.DataFrame(
        {
            "cluster": ["c"] * 2,
            "predictor": ["p"] * 2,
            "prediction_seed": [0, 0],
            "policy": ["baseline", "hybrid"],
            "status": ["ok", "failed"],
            "makespan_s": [10.0, 3.0],
        }
    )
    s = summarize(rows).set_index("policy")
    assert s.loc["hybrid", "failed"] == 1 and np.isnan(s.loc["hybrid", "makespan_s"])
    assert offline_pays(s.reset_index()).columns.tolist() == ["cluster", "predictor"]


def test_bad_predictor_fails_before_any_simulation():
    with pytest.raises(ValueError, match="predictor"):
        uncertainty_sweep(BASE, predictors=("psychic",))
    with pytest.raises(ValueError, match="prediction_seeds"):
        uncertainty_sweep(BASE, prediction_seeds=())


def test_predictor_quality_orders_oracle_first():
    q = predictor_quality(("oracle", "noisy:0.5"))
    assert q["mae_tokens"].tolist()[0] == 0 and q["mae_tokens"].tolist()[1] > 0
    assert q["spec"].tolist() == ["oracle", "noisy:0.5"]
