"""Smoke tests of hybridsched.plots: every plot draws on small inputs and returns its Axes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from hybridsched.reports import plots
from hybridsched.studies.run import run_policy
from hybridsched.studies.sensitivity import ablation_deltas


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def trace(gsm8k_small) -> pd.DataFrame:
    """The baseline's trace on the 60-request GSM8K instance (2 clients)."""
    return run_policy(gsm8k_small, "baseline").trace


@pytest.fixture
def single_table() -> pd.DataFrame:
    """A single-case table with every policy of the ablation chain."""
    return pd.DataFrame(
        {
            "policy": ["baseline", "a", "a-sorted", "b", "c", "hybrid"],
            "makespan_s": [104.0, 100.4, 94.5, 102.2, 94.0, 93.1],
            "utilization": [0.78, 0.80, 0.86, 0.79, 0.86, 0.87],
        }
    )


@pytest.fixture
def study_cases() -> pd.DataFrame:
    """Study cases: 6 cases, baseline and hybrid, hybrid faster in 5."""
    rng = np.random.default_rng(0)
    base = 80 + rng.normal(0, 1, 6)
    hyb = base - np.array([5, 4, 6, 5, -1, 3])
    rows = [
        {"case": k, "policy": "baseline", "makespan_s": base[k], "utilization": 0.78}
        for k in range(6)
    ]
    rows += [
        {"case": k, "policy": "hybrid", "makespan_s": hyb[k], "utilization": 0.86 + 0.01 * k}
        for k in range(6)
    ]
    return pd.DataFrame(rows)


def test_gantt_returns_axes_whole_and_window(trace):
    """Tests that plot_gantt returns an Axes for the whole trace and clips the axis to a window."""
    assert isinstance(plots.plot_gantt(trace), Axes)
    ax = plots.plot_gantt(trace, clients=[1], t0=0.5, t1=1.5)
    assert ax.get_xlim() == (0.5, 1.5)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["client 1"]


def test_gantt_draws_on_given_axes_and_annotates_tiny(two_requests):
    """Tests that plot_gantt draws on the Axes it is given and labels bars of a tiny trace."""
    from hybridsched.policies.prefill_first import PrefillFirst
    from hybridsched.policies.static import simulate

    tr = simulate(two_requests, [0, 0], PrefillFirst())
    _, ax = plt.subplots()
    assert plots.plot_gantt(tr, ax=ax) is ax
    assert any(t.get_text() == "0,1" for t in ax.texts)  # the prefill of both requests


def test_gantt_is_fast_on_ten_thousand_iterations():
    """Tests that plot_gantt draws a 10k-iteration trace with a handful of artists (not one per bar)."""
    n = 10_000
    kind = np.where(np.arange(n) % 50 == 0, "prefill", "decode")
    start = np.arange(n) * 0.02
    tr = pd.DataFrame(
        {
            "client": np.arange(n) % 2,
            "kind": kind,
            "start_s": start,
            "end_s": start + 0.02,
            "num_running": 32,
        }
    )
    ax = plots.plot_gantt(tr)
    assert len(ax.collections) <= 4


def test_batch_occupancy_and_kv_usage_return_axes(trace, gsm8k_small):
    """Tests that plot_batch_occupancy and plot_kv_usage return an Axes, one line per client plus the limit."""
    ax = plots.plot_batch_occupancy(trace, max_batch=32)
    assert isinstance(ax, Axes) and len(ax.lines) == 3
    ax = plots.plot_kv_usage(trace, capacity=gsm8k_small.clients[0].kv_capacity_tokens)
    assert isinstance(ax, Axes)


def test_makespan_bars_show_lower_bound(single_table):
    """Tests that plot_makespan_bars returns an Axes with one bar per policy and the T_LB line,
    and labels each bar with its makespan at the tables' two decimals."""
    ax = plots.plot_makespan_bars(single_table, lower_bound_s=91.2)
    assert isinstance(ax, Axes)
    assert len(ax.patches) == len(single_table)
    assert any(np.allclose(line.get_xdata(), 91.2) for line in ax.lines)
    labels = [t.get_text() for t in ax.texts]
    assert labels == [f"{v:.2f}" for v in single_table["makespan_s"]]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(single_table["policy"])


def test_makespan_bars_name_each_own_bound_as_the_table_does():
    """Tests that rows measured against another bound get that bound drawn across their bar,
    one mark per bound, each named in the legend by what it covers (the table's bound_model)
    with the value at the tables' decimals; rows on the paper-model bound get none."""
    from hybridsched.reports.tables import with_bound_models

    table = pd.DataFrame(
        {
            "policy": ["baseline", "hybrid", "chunked", "hybrid-chunked", "vllm"],
            "admission": ["reservation"] * 4 + ["on-demand"],
            "makespan_s": [104.0, 93.1, 90.5, 89.4, 90.5],
            "lower_bound_s": [91.2, 91.2, 81.4619, 81.4619, 78.951],
        }
    )
    ax = plots.plot_makespan_bars(with_bound_models(table), lower_bound_s=91.2)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "T_LB = 91.20 s",
        "T_LB with mixed iterations = 81.46 s",
        "T_LB with mixed iterations, on-demand admission = 78.95 s",
    ]
    segs = [c.get_segments() for c in ax.collections if len(c.get_segments())]
    assert [len(s) for s in segs] == [2, 1]
    assert np.allclose([s[0][0, 0] for s in segs], [81.4619, 78.951])
    ax2 = plots.plot_makespan_bars(table.iloc[:2], lower_bound_s=91.2)
    assert len(ax2.get_legend().get_texts()) == 1
    ax3 = plots.plot_makespan_bars(table.drop(columns="admission"), lower_bound_s=91.2)
    assert "own T_LB = 81.46 s" in [t.get_text() for t in ax3.get_legend().get_texts()]


def test_paired_makespan_and_gain_hist(study_cases):
    """Tests that the study plots return an Axes and the paired plot counts the cases below y = x."""
    ax = plots.plot_paired_makespan(study_cases)
    assert isinstance(ax, Axes)
    assert "5 of 6" in ax.get_title()
    assert isinstance(plots.plot_gain_hist(study_cases, paper_pp=8.0), Axes)


def test_paired_makespan_rejects_unknown_policy(study_cases):
    """Tests that plot_paired_makespan names a policy missing from the cases."""
    with pytest.raises(ValueError, match="'c'"):
        plots.plot_paired_makespan(study_cases, y="c")


def test_sensitivity_numeric_and_categorical_x():
    """Tests that plot_sensitivity returns an Axes for numeric x with hue and keeps categorical x in order."""
    df = pd.DataFrame(
        {
            "lam": [0.25, 1, 4] * 2,
            "policy": ["baseline"] * 3 + ["hybrid"] * 3,
            "u": [0.5, 0.5, 0.5, 0.6, 0.62, 0.61],
        }
    )
    ax = plots.plot_sensitivity(df, x="lam", y="u", hue="policy")
    assert isinstance(ax, Axes) and len(ax.lines) == 2
    cat = pd.DataFrame({"sort": ["longest", "fcfs", "random"], "u": [0.6, 0.5, 0.4]})
    ax = plots.plot_sensitivity(cat, x="sort", y="u")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["longest", "fcfs", "random"]


def test_stage_gains_returns_axes(single_table):
    """Tests that plot_stage_gains draws one bar per ablation stage."""
    deltas = ablation_deltas(single_table)
    ax = plots.plot_stage_gains(deltas)
    assert isinstance(ax, Axes) and len(ax.patches) == len(deltas)


def test_missing_columns_are_named():
    """Tests that a plot given a table without its columns names the missing column."""
    with pytest.raises(ValueError, match="num_running"):
        plots.plot_gantt(
            pd.DataFrame({"client": [0], "kind": ["decode"], "start_s": [0.0], "end_s": [1.0]})
        )


def test_load_curves_draw_one_line_per_policy_with_slo_and_units():
    """Tests that plot_load_curves draws a line per policy against the offered rate, the SLO
    as a dotted line, the y = x line for goodput, log axes that read as plain numbers, and
    axis labels with units."""
    runs = pd.DataFrame(
        {
            "policy": ["vllm"] * 3 + ["hybrid-chunked"] * 3,
            "offered_rps": [2.0, 4.0, 8.0] * 2,
            "ttft_p99_s": [0.3, 1.5, 40.0, 0.4, 3.0, 90.0],
            "goodput_rps": [2.0, 3.9, 2.1, 2.0, 3.8, 4.2],
        }
    )
    ax = plots.plot_load_curves(runs, "ttft_p99_s", log=True, limit=2.0)
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["vllm", "hybrid-chunked", "SLO"]
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "TTFT p99 (s)"
    assert ax.get_xlabel() == "offered rate (req/s)"
    ax.figure.canvas.draw()
    ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert ticks and all("10^" not in t and "times" not in t for t in ticks)
    ax2 = plots.plot_load_curves(runs, "goodput_rps", diagonal=True)
    assert [line.get_label() for line in ax2.lines][-1] == "every request within"
