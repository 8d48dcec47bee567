"""Figures and sentences of a validation against real runs (``studies/validation.py``)."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

LABELS = {"ttft": "TTFT (s)", "tpot": "TPOT (s)", "e2e": "end-to-end latency (s)"}


def plot_cdfs(per_request: pd.DataFrame, title: str = ""):
    """Real and simulated CDFs of TTFT, TPOT and E2E side by side; the figure."""
    fig, axes = plt.subplots(1, 3, figsize=(11.0, 3.4), layout="constrained")
    for ax, m in zip(axes, ("ttft", "tpot", "e2e"), strict=True):
        for col, style, name in ((f"{m}_real_s", "-", "real"), (f"{m}_sim_s", "--", "simulated")):
            x = np.sort(per_request[col].dropna().to_numpy(float))
            if len(x):
                ax.step(x, np.arange(1, len(x) + 1) / len(x), style, where="post", label=name)
        ax.set_xlabel(LABELS[m])
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of requests")
    axes[0].legend(loc="lower right", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def png(fig) -> bytes:
    """The figure as PNG bytes (closed afterwards)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def summary_sentence(name: str, errors: dict) -> str:
    """One line a reader can quote: the relative errors of the means and the MAPE."""
    parts = [
        f"{label} {errors[f'{m}_mean_rel_error']:+.1%} (MAPE {errors[f'{m}_mape']:.1%})"
        for m, label in (("ttft", "TTFT"), ("tpot", "TPOT"), ("e2e", "E2E"))
    ]
    return f"{name}: mean " + ", ".join(parts)


def trust_sentence(iteration_grid=None) -> str:
    """How far the kernel profiles' latencies are from real vLLM runs, for a page that uses
    them: every shipped real run replayed with the host overhead fitted on the others (as
    notebook 10 does), in one sentence. ``iteration_grid``: the overheads tried (s; default
    notebook 10's)."""
    from hybridsched.studies import validation
    from hybridsched.workloads.real_runs import list_llmservingsim_runs, load_run

    grid = validation.ITERATION_GRID_S if iteration_grid is None else tuple(iteration_grid)
    runs = [load_run(n) for n in list_llmservingsim_runs()]
    table, _ = validation.leave_one_run_out(runs, iteration_grid=grid)
    mape = validation.mape_of_means(table)
    e2e = table["e2e_mean_rel_error"]
    return (
        f"**How far to trust these latencies.** Replaying {len(table)} real vLLM runs "
        f"(notebook 10; host overhead fitted on the other runs), the same latency model "
        f"misses the mean TTFT by {mape['ttft']:.1%}, TPOT by {mape['tpot']:.1%} and "
        f"end-to-end latency by {mape['e2e']:.1%} on average (per run, E2E from "
        f"{e2e.min():+.0%} to {e2e.max():+.0%}). None of those runs is of this page's GPU "
        "and model: read its absolute latencies and rates as carrying about that error, "
        "while policies compared on one profile share it."
    )
