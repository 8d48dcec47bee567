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
