"""Tests of hybridsched.display and hybridsched.labels: tables read with units, no NaN, fit the page."""

from __future__ import annotations

import html
import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hybridsched import reports
from hybridsched.reports import display, labels


def _cells(styler) -> list[list[str]]:
    """The body cells of a Styler's HTML, row by row."""
    html = styler.to_html()
    rows = re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)
    return [
        [re.sub(r"<.*?>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S)]
        for r in rows
        if "<td" in r
    ]


def _headers(styler) -> list[str]:
    found = re.findall(r"<th\b[^>]*>(.*?)</th>", styler.to_html(), flags=re.S)
    return [html.unescape(h.strip()) for h in found]


@pytest.mark.parametrize(
    "value, how, text",
    [
        (0.8731, "fraction", "87.3%"),
        (10.5, "percent", "10.5%"),
        (9.2081, "pp", "+9.21 pp"),
        (1137.0, "count", "1,137"),
        (104.0412, "seconds", "104.04"),
        (0.14957, "seconds", "0.1496"),
        (math.nan, "fraction", ""),
        (None, "count", ""),
        (math.inf, None, ""),
        (np.float64(100.5), None, "100.50"),
        (5e-05, "duration", "50 µs"),
        (0.00909, "duration", "9.09 ms"),
        (2.5, "duration", "2.50 s"),
        (1e-12, "duration", "0 s"),
        (3e11, "bandwidth", "300.0 GB/s"),
    ],
)
def test_fmt_reads_each_kind(value, how, text):
    """Tests that each kind prints as a reader expects, NaN/None/inf as blank."""
    assert labels.fmt(value, how) == text


def test_distinct_digits_tells_close_values_apart():
    """Tests that bar labels get enough decimals to differ: the exact-MIP chart's 0.1496 vs
    0.1626 vs 0.1758 needs 2, a T_LB of 0.1496 beside T* = 0.1496 stays equal."""
    assert labels.distinct_digits([0.1496, 0.1758, 0.1626, 0.1496]) == 2
    assert labels.distinct_digits([104.04, 93.11]) == 1
    assert labels.distinct_digits([1.0001, 1.0002]) == 4
    assert labels.distinct_digits([5.0]) == 1


def test_show_formats_by_column_and_hides_the_index():
    """Tests that show() labels headers in words, prints fractions as %, integral columns
    without decimals, NaN blank, and has no index column or empty header row."""
    df = pd.DataFrame(
        {
            "policy": ["baseline", "hybrid"],
            "utilization": [0.7776, 0.8697],
            "num_prefill_iterations": [1137.0, 250.0],
            "gap_closed": [math.nan, 0.848],
            "other": [100.0, 3.0],
        }
    )
    s = reports.show(df, caption="Two policies.")
    assert _headers(s) == [
        "policy",
        "U",
        "prefill iterations",
        "share of the baseline's gap closed",
        "other",
    ]
    assert _cells(s) == [
        ["baseline", "77.8%", "1,137", "", "100"],
        ["hybrid", "87.0%", "250", "84.8%", "3"],
    ]
    assert "<caption>Two policies.</caption>" in s.to_html()


def test_show_folds_a_named_index_and_pivot_columns():
    """Tests that a named index becomes leading columns and a pivot's (value, key) columns read
    as "<label>, <key>" with the value's format."""
    cases = pd.DataFrame(
        {
            "case": [1, 1, 2, 2],
            "policy": ["baseline", "hybrid"] * 2,
            "utilization": [0.7, 0.8, 0.71, 0.82],
        }
    )
    pivot = cases.pivot_table(index="case", columns="policy", values=["utilization"])
    s = reports.show(pivot)
    assert _headers(s) == ["case", "U, baseline", "U, hybrid"]
    assert _cells(s)[0] == ["1", "70.0%", "80.0%"]


def test_show_metrics_has_no_nan_and_says_not_reported():
    """Tests that the paper-vs-ours table prints each row in its unit, the paper's missing cells as
    "not reported", our missing cells blank, and no NaN anywhere."""
    t = pd.DataFrame(
        {
            "paper": [80.2, 8.9, 201.0, math.nan, math.nan],
            "2x tp4": [77.76, 9.208, 104.04, 100.0, math.nan],
        },
        index=pd.Index(
            ["U baseline (%)", "U gain (pp)", "makespan baseline (s)", "cases", "mean batch"],
            name="metric",
        ),
    )
    rows = _cells(reports.show_metrics(t))
    assert rows == [
        ["U baseline (%)", "80.2%", "77.8%"],
        ["U gain (pp)", "+8.90 pp", "+9.21 pp"],
        ["makespan baseline (s)", "201.00", "104.04"],
        ["cases", "not reported", "100"],
        ["mean batch", "not reported", ""],
    ]
    assert "nan" not in reports.show_metrics(t).to_html().lower().replace("span", "")


def test_show_wide_transposes_the_study_summary():
    """Tests that a 17-column summary becomes one column per (config, policy) and a row per metric."""
    summary = pd.DataFrame(
        {"config": ["2x tp4", "2x tp4"], "policy": ["baseline", "hybrid"]}
        | {f"m{k}": [float(k), k + 0.5] for k in range(15)}
    )
    s = reports.show_wide(summary, keys=["config", "policy"])
    assert _headers(s) == ["", "2x tp4 / baseline", "2x tp4 / hybrid"]
    assert len(_cells(s)) == 15


def test_single_case_table_shows_both_bounds_for_chunked_rows():
    """Tests that every row has its gap to the paper-model T_LB, and chunked rows (another
    own bound) also show that bound, gap and share closed, blank for the paper-model rows."""
    lb, mixed = 90.0, 80.0
    table = pd.DataFrame(
        {
            "policy": ["baseline", "hybrid", "chunked"],
            "makespan_s": [100.0, 92.0, 89.0],
            "lower_bound_s": [lb, lb, mixed],
        }
    )
    table["gap_to_lb"] = (table["makespan_s"] - table["lower_bound_s"]) / table["lower_bound_s"]
    table["gap_closed"] = (100.0 - table["makespan_s"]) / (100.0 - table["lower_bound_s"])
    for c in ("utilization", "mean_batch", "num_prefill_iterations", "prefill_share", "imbalance"):
        table[c] = 0.5
    r = SimpleNamespace(table=table, bound=SimpleNamespace(lower_bound_s=lb))
    t = reports.single_case_table({"2x tp4": r}).set_index("policy")
    assert t.loc["chunked", "gap to paper-model T_LB"] == pytest.approx(-1 / 90)
    assert t.loc["chunked", "share of the gap closed (paper model)"] == pytest.approx(1.1)
    assert t.loc["chunked", "own T_LB (s)"] == mixed
    assert t.loc["chunked", "own T_LB: also covers"] == "mixed iterations"
    assert pd.isna(t.loc["hybrid", "own T_LB: also covers"])
    assert t.loc["chunked", "share closed (own T_LB)"] == pytest.approx(0.55)
    assert t.loc["hybrid", "share of the gap closed (paper model)"] == pytest.approx(0.8)
    assert math.isnan(t.loc["hybrid", "own T_LB (s)"])
    cells = _cells(reports.show(t.reset_index(), formats=reports.SINGLE_CASE_FORMATS))
    assert all("nan" not in c.lower() for row in cells for c in row)


def test_labels_name_aggregates_and_fall_back():
    """Tests that study aggregates read as '<label>, mean' and unknown names lose underscores."""
    assert labels.label("utilization_gain_pp_mean") == "U gain over the baseline (pp), mean"
    assert labels.kind("gap_to_lb_max") == "fraction"
    assert labels.label("some_new_column") == "some new column"
    assert labels.label("paper-model T_LB (s)") == "paper-model T_LB (s)"
    assert display.column_kind("x", pd.Series([1.0, 2.0])) == "count"
    assert display.column_kind("x", pd.Series([1.5, 2.0])) == "number"
    assert display.column_kind("x", pd.Series([0.1758, "optimal", 1264], dtype=object)) is None
    assert [labels.fmt(v, None) for v in (0.1758, 1264, 29.2834, 1.0)] == [
        "0.1758",
        "1,264",
        "29.28",
        "1",
    ]


def test_show_params_prints_each_parameter_in_its_unit():
    """Tests that a profile's constants read with units (bandwidth in GB/s, times in µs or ms,
    efficiencies as percentages), the parameter names kept, and no raw bytes/s or 0.0000."""
    t = pd.DataFrame(
        {
            "guessed": [0.5, 3e11, 1e-05, 0.003, 0.0],
            "fitted": [0.691, 2.27e11, 5e-05, 0.0091, 0.0109],
        },
        index=[
            "mfu",
            "allreduce_bandwidth",
            "allreduce_latency_s",
            "iteration_overhead_s",
            "prefill_per_request_s",
        ],
    )
    s = display.show_params(t)
    assert _headers(s) == ["parameter", "guessed", "fitted"]
    assert _cells(s) == [
        ["mfu", "50.0%", "69.1%"],
        ["allreduce_bandwidth", "300.0 GB/s", "227.0 GB/s"],
        ["allreduce_latency_s", "10 µs", "50 µs"],
        ["iteration_overhead_s", "3 ms", "9.1 ms"],
        ["prefill_per_request_s", "0 s", "10.9 ms"],
    ]


def test_study_table_leaves_the_baseline_out_of_its_own_comparisons():
    """Tests that the study table blanks the baseline's gains, wins and ties against itself
    (no "+0.00 pp" or "ties 100"), and keeps the hybrid's."""
    summary = pd.DataFrame(
        {
            "policy": ["baseline", "hybrid"],
            "num_cases": [4, 4],
            "utilization_mean": [0.78, 0.87],
            "utilization_gain_pp_mean": [0.0, 8.8],
            "makespan_reduction_mean": [0.0, 0.10],
            "wins": [0, 4],
            "ties": [4, 0],
        }
    )
    t = reports.study_table({"2x tp4": SimpleNamespace(summary=summary)}).set_index("policy")
    assert t.loc["baseline", ["utilization_gain_pp_mean", "wins", "ties"]].isna().all()
    assert t.loc["hybrid", "wins"] == 4 and t.loc["hybrid", "utilization_gain_pp_mean"] == 8.8
    cells = dict(
        (r[0], r[1:])
        for r in _cells(reports.show_wide(t.reset_index().assign(config="c"), ["config", "policy"]))
    )
    assert cells["ties (cases)"] == ["", "0"]
    assert cells["U gain over the baseline (pp), mean"] == ["", "+8.80 pp"]


def test_bound_model_names_what_a_policy_bound_covers():
    """Tests that a policy's own bound is named by its iterations and admission."""
    from hybridsched.reports.tables import bound_model

    assert bound_model("hybrid", "reservation") == ""
    assert bound_model("chunked", "reservation") == "mixed iterations"
    assert bound_model("online-hybrid", "on-demand") == "on-demand admission"
    assert bound_model("vllm", "on-demand") == "mixed iterations, on-demand admission"
    assert bound_model("not-a-policy", None) == ""
