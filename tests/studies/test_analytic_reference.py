"""aiconfigurator's recorded answer (data/planning/): its columns, its inputs against our
loader, its GPU counts, and the reader's filters and errors."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from hybridsched.paths import data_dir
from hybridsched.studies.analytic_reference import (
    COLUMNS,
    RECOMMEND_CSV,
    aiconfigurator_recommendation,
    describe_row,
    read_aiconfigurator_csv,
    workload_lengths,
)

README = data_dir() / "planning" / "README.md"


@pytest.fixture(scope="module")
def recorded() -> pd.DataFrame:
    return read_aiconfigurator_csv()


def test_the_csv_has_the_documented_columns(recorded):
    """Tests that the file has every column of COLUMNS, no other, and that the README's
    column table documents exactly those."""
    assert list(recorded.columns) == list(COLUMNS)
    documented = re.findall(r"^\| `([a-z_]+)` \|", README.read_text(), re.M)
    assert documented == list(COLUMNS)


def test_isl_and_osl_are_the_means_our_loader_computes(recorded):
    """Tests that each recorded workload/window's request count, mean prompt and output
    lengths and the ISL/OSL handed to aiconfigurator equal what our loader gives now."""
    for (workload, window), rows in recorded.groupby(["workload", "window"]):
        got = workload_lengths(workload, window)
        assert (rows["requests"] == got["requests"]).all()
        assert rows["prompt_mean_tokens"].to_numpy() == pytest.approx(
            got["prompt_mean_tokens"], abs=1e-5
        )
        assert rows["output_mean_tokens"].to_numpy() == pytest.approx(
            got["output_mean_tokens"], abs=1e-5
        )
        assert (rows["isl_tokens"] == got["isl_tokens"]).all()
        assert (rows["osl_tokens"] == got["osl_tokens"]).all()


def test_the_recommended_gpus_are_positive_integers(recorded):
    """Tests that every answer's GPU count is a positive integer, replicas times GPUs per
    replica, and that its replicas provision at least the target rate."""
    gpus = recorded["gpus"].to_numpy(dtype=float)
    assert (gpus >= 1).all() and (gpus == gpus.round()).all()
    assert (recorded["gpus"] == recorded["replicas"] * recorded["gpus_per_replica"]).all()
    assert (recorded["cluster_rate_rps"] >= recorded["target_rate_rps"]).all()


def test_notebook_08s_case_is_recorded():
    """Tests that notebook 08's default case (azure-conv on Llama-3.1-8B, H100 vLLM, 20
    req/s, TTFT <= 1 s, TPOT <= 50 ms) has one aggregated recommend row within its SLA."""
    rec = aiconfigurator_recommendation(
        workload="azure-conv",
        model="llama-3.1-8b",
        hardware="h100-sxm-vllm",
        rate=20.0,
        serving_mode="agg",
    )
    assert len(rec) == 1
    row = rec.iloc[0]
    assert (row["ttft_sla_ms"], row["tpot_sla_ms"]) == (1000.0, 50.0)
    assert row["window"] == "" and bool(row["meets_sla"])
    assert "GPU" in describe_row(row)


def test_the_reader_filters_by_selection_and_mode(recorded):
    """Tests that the default selection is recommend (one row per case and serving mode)
    and that estimate rows are asked for by name."""
    rec = aiconfigurator_recommendation(rate=20)
    assert set(rec["selection"]) == {"recommend"}
    assert not rec.duplicated(["target_rate_rps", "serving_mode"]).any()
    est = aiconfigurator_recommendation(rate=20, selection="estimate")
    assert set(est["selection"]) == {"estimate"} and set(est["serving_mode"]) == {"agg"}
    assert len(rec) + len(est) == int((recorded["target_rate_rps"] == 20).sum())


def test_the_reader_names_a_missing_column(tmp_path):
    """Tests that a file without a documented column is refused, naming it."""
    df = read_aiconfigurator_csv().drop(columns=["tpot_ms"])
    path = tmp_path / RECOMMEND_CSV.name
    df.to_csv(path, index=False)
    with pytest.raises(ValueError, match="missing column.*tpot_ms"):
        aiconfigurator_recommendation(path=path)


def test_the_reader_refuses_what_was_not_recorded(tmp_path):
    """Tests that a case not in the file, an unknown selection and a missing file are
    errors that say so."""
    with pytest.raises(ValueError, match="no recorded aiconfigurator row.*recorded: azure-conv"):
        aiconfigurator_recommendation(rate=123.0)
    with pytest.raises(ValueError, match="selection must be one of"):
        aiconfigurator_recommendation(selection="best")
    with pytest.raises(ValueError, match="no such file"):
        read_aiconfigurator_csv(tmp_path / "absent.csv")


def test_reference_for_notebook_08_case_and_its_sentence():
    """Tests that notebook 08's case yields aiconfigurator's recommend rows plus the estimate
    at our batch cap, and that the sentence quotes the recorded GPU counts and ours."""
    from hybridsched.studies.analytic_reference import aic_sentence, aiconfigurator_reference

    rows = aiconfigurator_reference("azure-conv", "llama-3.1-8b", "h100-sxm-vllm", 20.0, 32)
    assert list(rows["selection"]) == ["recommend", "recommend", "estimate"]
    assert (rows.loc[rows["selection"] == "estimate", "batch_size"] == 32).all()
    rec = rows[(rows["selection"] == "recommend") & (rows["serving_mode"] == "agg")].iloc[0]
    text = aic_sentence(rows, {"gpus": 3})
    assert f"answers {int(rec['gpus'])} GPU" in text and "against 3 here" in text
    assert f"it asks for {int(rows.iloc[2]['gpus'])}" in text


def test_unrecorded_case_is_said_not_invented():
    """Tests that a case with no recorded row gives an empty table and says so."""
    from hybridsched.studies.analytic_reference import aic_sentence, aiconfigurator_reference

    rows = aiconfigurator_reference("azure-conv", "llama-3.1-8b", "h100-sxm-vllm", 7.0, 32)
    assert rows.empty
    assert "not recorded" in aic_sentence(rows, {"gpus": 1})
