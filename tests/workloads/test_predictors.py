"""Output-length predictors: the interface, each shipped predictor, the trained model's
accuracy on the GSM8K test split, and the wiring into requests_for and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hybridsched.cli import main
from hybridsched.workloads.length_model import FEATURES, shipped_length_model, text_features
from hybridsched.workloads.predictors import (
    DEFAULT_BUCKET_EDGES,
    PREDICTION_COLUMNS,
    Bucket,
    Predictor,
    apply_predictor,
    evaluate_predictor,
    parse_predictor,
    predictor_spec,
)
from hybridsched.workloads.requests import gsm8k_questions, load_gsm8k, with_predictions
from hybridsched.workloads.tables import requests_for

SPECS = ["oracle", "noisy:0.5", "noisy:0", "bucket", "bucket:32,64,128,256", "trained"]


@pytest.fixture(scope="module")
def test_split() -> tuple[pd.DataFrame, pd.Series]:
    return load_gsm8k(), gsm8k_questions("test")


@pytest.mark.parametrize("spec", SPECS)
def test_interface_one_ordered_integer_prediction_per_row(spec, test_split):
    """Tests that every predictor gives one prediction per request, in the request order,
    integers >= 1 with lo <= point <= hi, and leaves the true lengths alone."""
    req, texts = test_split
    out = apply_predictor(req, spec, seed=1, texts=texts)
    assert len(out) == len(req)
    assert (out["request_id"] == req["request_id"]).all()
    assert (out["output_tokens"] == req["output_tokens"]).all()
    for col in PREDICTION_COLUMNS:
        assert out[col].dtype == np.int64, col
        assert (out[col] >= 1).all(), col
    assert (out["predicted_lo_tokens"] <= out["predicted_output_tokens"]).all()
    assert (out["predicted_output_tokens"] <= out["predicted_hi_tokens"]).all()
    assert isinstance(parse_predictor(spec), Predictor)
    assert parse_predictor(parse_predictor(spec).name) == parse_predictor(spec)  # names round-trip


def test_oracle_is_the_truth(test_split):
    """Tests that the oracle predicts the true lengths, with the zero-width interval."""
    req, _ = test_split
    out = apply_predictor(req, "oracle")
    for col in PREDICTION_COLUMNS:
        assert (out[col] == req["output_tokens"]).all(), col
    ev = evaluate_predictor("oracle")
    assert ev["mae_tokens"] == 0 and ev["coverage"] == 1 and ev["spearman"] == pytest.approx(1)


def test_noisy_equals_with_predictions(test_split):
    """Tests that noisy:SIGMA gives exactly today's with_predictions for the same seed,
    and fixed values for the first requests (so neither can drift)."""
    req, _ = test_split
    for sigma, seed in ((0.5, 0), (0.2, 7), (1.0, 123)):
        got = apply_predictor(req, f"noisy:{sigma}", seed)["predicted_output_tokens"]
        want = with_predictions(req, sigma, seed)["predicted_output_tokens"]
        assert (got.to_numpy() == want.to_numpy()).all()
    first = apply_predictor(req.iloc[:5], "noisy:0.5", 0)["predicted_output_tokens"].tolist()
    assert first == with_predictions(req.iloc[:5], 0.5, 0)["predicted_output_tokens"].tolist()
    assert first == [135, 78, 325, 57, 91]
    a = requests_for(None, 200, 4, prediction_sigma=0.5, prediction_seed=3)
    b = requests_for(None, 200, 4, prediction_seed=3, predictor="noisy:0.5")
    pd.testing.assert_frame_equal(a, b)


def test_noisy_interval_covers_about_80_percent():
    """Tests that the noisy predictor's interval (exp(-/+1.28 sigma) around the point)
    covers close to its nominal 80% of the test split, and that widths grow with sigma."""
    ev = evaluate_predictor("noisy:0.5", seed=0)
    assert 0.75 <= ev["coverage"] <= 0.86
    assert evaluate_predictor("noisy:0.2")["mean_width_tokens"] < ev["mean_width_tokens"]


def test_bucket_intervals_are_the_buckets():
    """Tests that the bucket predictor returns the bucket a length falls in: [1, E1),
    [E1, E2), ..., the midpoint as the point, and the open top bucket as [Ek, Ek]."""
    req = pd.DataFrame({"prompt_tokens": [5] * 6, "output_tokens": [1, 9, 10, 19, 20, 500]})
    out = apply_predictor(req, "bucket:10,20")
    assert out["predicted_lo_tokens"].tolist() == [1, 1, 10, 10, 20, 20]
    assert out["predicted_hi_tokens"].tolist() == [9, 9, 19, 19, 20, 20]
    assert out["predicted_output_tokens"].tolist() == [5, 5, 15, 15, 20, 20]
    assert parse_predictor("bucket") == Bucket(DEFAULT_BUCKET_EDGES)
    ev = evaluate_predictor("bucket")  # GSM8K outputs are all below 512: every one covered
    assert ev["coverage"] == 1.0 and ev["mean_width_tokens"] == pytest.approx(63, abs=0.1)


def test_trained_beats_the_best_constant_and_ranks(test_split):
    """Tests that the trained predictor, on the GSM8K test split it never saw, beats the
    best constant predictor in MAE (the truth's own median), ranks positively with the
    truth, and that its 80% interval covers between 70% and 90%."""
    req, _ = test_split
    o = req["output_tokens"].to_numpy(float)
    constant_mae = np.mean(np.abs(o - np.median(o)))
    ev = evaluate_predictor("trained")
    assert ev["mae_tokens"] < 0.85 * constant_mae
    assert ev["spearman"] > 0.5
    assert 0.7 <= ev["coverage"] <= 0.9
    assert ev["num_requests"] == 1319 and ev["predictor"] == "trained"


def test_shipped_length_model_matches_a_fresh_fit():
    """Tests that data/length_model.json is what `python -m hybridsched.length_model`
    makes now (coefficients and interval ratios to 1e-9 relative)."""
    from hybridsched.workloads.length_model import fresh_length_model

    shipped, fresh = shipped_length_model(), fresh_length_model()
    np.testing.assert_allclose(
        [shipped.intercept, *shipped.coef, shipped.ratio_lo, shipped.ratio_hi],
        [fresh.intercept, *fresh.coef, fresh.ratio_lo, fresh.ratio_hi],
        rtol=1e-9,
    )
    assert shipped.train_rows == fresh.train_rows == 7473


def test_text_features_count_what_they_say():
    """Tests the text features on a hand-checked question."""
    f = text_features(
        pd.Series(["Tom has 12 apples and half of 3.5 pears. Each costs $2, 10%. How many?"]),
        [30],
    ).iloc[0]
    assert list(f.index) == FEATURES
    assert f["prompt_tokens"] == 30 and f["numbers"] == 4 and f["number_words"] == 1
    assert f["question_marks"] == 1 and f["sentences"] == 3 and f["dollars"] == 1
    assert f["percents"] == 1 and f["decimals"] == 1 and f["rate_words"] == 1
    assert f["longest_number_digits"] == 2 and f["question_words"] == 15


def test_predictions_are_deterministic(test_split):
    """Tests that a fixed seed gives the same predictions and another seed other noise."""
    req, texts = test_split
    for spec in SPECS:
        a = apply_predictor(req, spec, 5, texts)
        pd.testing.assert_frame_equal(a, apply_predictor(req, spec, 5, texts))
    a, b = (apply_predictor(req, "noisy:0.5", s)["predicted_output_tokens"] for s in (5, 6))
    assert (a != b).any()


@pytest.mark.parametrize(
    "spec",
    ["", "nope", "noisy", "noisy:x", "noisy:-1", "noisy:nan", "bucket:10,5", "bucket:a,b",
     "bucket:1", "oracle:3", "trained:x", 3],
)  # fmt: skip
def test_bad_spec_is_named_with_the_known_ones(spec):
    """Tests that a bad predictor spec raises ValueError naming it and the known names."""
    with pytest.raises(ValueError) as info:
        parse_predictor(spec)
    assert repr(spec) in str(info.value) and "known: oracle, noisy:SIGMA" in str(info.value)


def test_predictor_and_sigma_together_is_an_error():
    """Tests that a predictor and a nonzero sigma at once are refused, and the mapping
    of sigma alone to noisy:SIGMA."""
    with pytest.raises(ValueError, match="not both"):
        predictor_spec("trained", 0.5)
    with pytest.raises(ValueError, match="not both"):
        requests_for(None, 20, prediction_sigma=0.5, predictor="oracle")
    assert predictor_spec(None, 0.25) == "noisy:0.25"
    assert predictor_spec(None, 0.0) is None and predictor_spec("trained", 0.0) == "trained"


def test_trained_needs_texts_and_reads_a_prompt_text_column(test_split, tmp_path):
    """Tests that the trained predictor refuses a table without texts (naming the
    column to add), names a request with no text, and reads prompt_text from a
    DataFrame or CSV to the same predictions as the shipped workload's texts."""
    req, texts = test_split
    with pytest.raises(ValueError, match="prompt_text"):
        apply_predictor(req.iloc[:5], "trained")
    with pytest.raises(ValueError, match="request 4 "):
        apply_predictor(req.iloc[:5], "trained", texts=texts.iloc[:4])
    with pytest.raises(ValueError, match="prompt_text"):
        requests_for(req.iloc[:5], predictor="trained")
    shipped = requests_for(None, 30, 2, predictor="trained")
    own = req.assign(prompt_text=texts.loc[req["request_id"]].to_numpy())
    pd.testing.assert_frame_equal(requests_for(own, 30, 2, predictor="trained"), shipped)
    path = tmp_path / "req.csv"
    own.to_csv(path, index=False)
    pd.testing.assert_frame_equal(requests_for(str(path), 30, 2, predictor="trained"), shipped)


def test_cli_records_the_predictor_and_refuses_both(tmp_path, capsys):
    """Tests that `simulate --predictor` records the spec in metrics.json, that
    --predictor with --prediction-sigma and a bad spec exit 2 with one line and no files."""
    out = tmp_path / "run"
    args = ["simulate", "--policy", "hybrid", "--num-requests", "40", "--out", str(out)]
    assert main([*args, "--predictor", "bucket"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["predictor"] == "bucket" and m["prediction_sigma"] == 0.0
    assert main([*args, "--prediction-sigma", "0.5"]) == 0
    assert json.loads((out / "metrics.json").read_text())["predictor"] == "noisy:0.5"
    capsys.readouterr()
    for extra, message in (
        (["--predictor", "trained", "--prediction-sigma", "0.5"], "not both"),
        (["--predictor", "psychic"], "known: oracle"),
    ):
        bad = tmp_path / "bad"
        assert main([*args[:-1], str(bad), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
        assert not bad.exists()


def test_single_case_and_study_plan_with_the_predictor_and_record_it():
    """Tests that run_single_case and run_study pass the predictor to planners only (the
    baseline, which ignores predictions, keeps its makespan; the true lengths are kept)
    and record its spec."""
    from hybridsched.studies.single_case import run_single_case
    from hybridsched.studies.study import run_study

    exact = run_single_case(num_requests=60, policies=["baseline", "hybrid"])
    res = run_single_case(num_requests=60, policies=["baseline", "hybrid"], predictor="trained")
    req = res.instance.requests
    assert (req["output_tokens"] == exact.instance.requests["output_tokens"]).all()
    assert (req["predicted_output_tokens"] != req["output_tokens"]).any()
    assert (req["predicted_lo_tokens"] <= req["predicted_hi_tokens"]).all()
    t, t0 = (r.table.set_index("policy")["makespan_s"] for r in (res, exact))
    assert t["baseline"] == pytest.approx(t0["baseline"])
    assert res.params["predictor"] == "trained" and exact.params["predictor"] == "oracle"
    study = run_study(
        cases=2, requests_per_case=40, policies=["hybrid"], workers=1, progress=False,
        prediction_sigma=0.5, prediction_seed=2,
    )  # fmt: skip
    assert study.params["predictor"] == "noisy:0.5" and study.params["prediction_seed"] == 2
    assert len(study.cases) == 2 and not len(study.failures)
