"""The sentence pages using the kernel profiles carry about their error against real runs."""

from __future__ import annotations

from hybridsched.reports.validation import trust_sentence
from hybridsched.studies import validation
from hybridsched.workloads.real_runs import list_llmservingsim_runs, load_run


def test_trust_sentence_quotes_the_leave_one_run_out_errors():
    """Tests that the sentence's three percentages and its run count are those of
    ``leave_one_run_out`` on the shipped runs (coarse grid, as the smoke renders use)."""
    grid = (0.0, 0.00125)
    text = trust_sentence(grid)
    names = list_llmservingsim_runs()
    table, _ = validation.leave_one_run_out([load_run(n) for n in names], iteration_grid=grid)
    mape = validation.mape_of_means(table)
    assert f"Replaying {len(names)} real vLLM runs" in text
    for m in ("ttft", "tpot", "e2e"):
        assert f"{mape[m]:.1%}" in text
    assert f"{table['e2e_mean_rel_error'].min():+.0%}" in text
