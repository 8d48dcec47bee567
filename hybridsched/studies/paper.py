"""The paper's reported numbers (Pang et al., arXiv:2502.15763): the single case and the study.

Reports and result files put ours beside these; makespans are on the paper's hardware.
"""

PAPER = {
    "baseline_utilization": 0.802,
    "hybrid_utilization": 0.891,
    "baseline_makespan_s": 201.00,
    "hybrid_makespan_s": 190.58,
    "lower_bound_s": 180.0,
    "study_mean_utilization_gain_pp": 8.0,
}
