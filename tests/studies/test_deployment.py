"""My deployment (deployment.py and its verdict and text): every policy on one setup over
seeds, the rule that picks the policy, the highest load in the SLO, and the GPUs needed."""

from __future__ import annotations

import pandas as pd
import pytest

from hybridsched.studies import deployment
from hybridsched.studies.deployment_verdict import paired, simplest_first

# A small deployment: 20 s of the conversation trace on one client of Llama-2-70B.
CELL = {
    "model": "llama-2-70b",
    "hardware": "h100-sxm-splitwise2023",
    "clients": 1,
    "tp": 2,
    "max_batch": 16,
    "workload": "azure-conv",
    "window": "0:20",
    "fit_context": "drop",
    "rate_scale": 1.0,
    "slo_ttft": 2.0,
    "slo_tpot": 0.1,
    "time_limit": 2.0,
}


def _runs(per_policy: dict[str, list[tuple[float, float]]], makespan: float = 100.0):
    """A runs table: per policy, one (goodput, TTFT p99) pair per seed."""
    rows = []
    for pol, values in per_policy.items():
        for seed, (g, t) in enumerate(values):
            rows.append(
                {
                    "policy": pol,
                    "seed": seed,
                    "window": f"{20 * seed}:{20 * seed + 20}",
                    "offered_rps": 6.0,
                    "goodput_rps": g,
                    "ttft_p99_s": t,
                    "makespan_s": makespan,
                    "slo_attainment": 0.95,
                    "status": "ok",
                    "error": None,
                }
            )
    return pd.DataFrame(rows)


# The measured case: hybrid-chunked 0.015% more goodput than vllm, its TTFT p99 37% worse
# (0.90 s against 0.66 s), on three seeds of different load.
VLLM = [(5.00, 0.66), (6.00, 0.70), (7.00, 0.62)]
EDGE = [(5.00075, 0.66 * 1.37), (6.0009, 0.70 * 1.37 * 1.01), (7.00105, 0.62 * 1.37 * 0.99)]


def test_compare_gives_one_ok_row_per_policy_with_consistent_metrics():
    """Tests that compare runs every policy on the same requests, goodput <= throughput and
    the attainment is a share."""
    t = deployment.compare(CELL, ["vllm", "baseline"])
    assert list(t["policy"]) == ["vllm", "baseline"]
    assert (t["status"] == "ok").all()
    assert set(deployment.HEADLINE) <= set(t.columns)
    assert (t["goodput_rps"] <= t["throughput_rps"] + 1e-12).all()
    assert t["slo_attainment"].between(0, 1).all()


def test_compare_over_seeds_serves_each_seed_another_window_to_every_policy():
    """Tests that with seeds a replayed trace gives each seed the next window of the same
    length, the same one to every policy, and one row per policy and seed."""
    t = deployment.compare(CELL, ["vllm", "chunked"], seeds=[0, 1])
    assert list(zip(t["policy"], t["seed"], strict=True)) == [
        ("vllm", 0),
        ("chunked", 0),
        ("vllm", 1),
        ("chunked", 1),
    ]
    assert t.groupby("seed")["window"].unique().map(list).tolist() == [["0:20"], ["20:40"]]
    assert t.groupby("seed")["offered_rps"].nunique().eq(1).all()
    assert (t["status"] == "ok").all()


def test_seed_cells_move_the_window_only_when_the_seed_changes_nothing():
    """Tests that a sampled workload keeps its window (the seed draws the sample) and that a
    trace without a bounded window keeps it too."""
    assert [c["window"] for c in deployment.seed_cells(CELL, [0, 2])] == ["0:20", "40:60"]
    sampled = {**CELL, "num_requests": 5}
    assert [c["window"] for c in deployment.seed_cells(sampled, [0, 1])] == ["0:20", "0:20"]
    assert [c["seed"] for c in deployment.seed_cells(sampled, [0, 1])] == [0, 1]
    whole = {**CELL, "window": None}
    assert [c["window"] for c in deployment.seed_cells(whole, [0, 1])] == [None, None]
    assert deployment.seed_cells(CELL) == [CELL]


def test_compare_keeps_a_failing_policy_as_a_row_with_its_error():
    """Tests that a cluster too small for the model gives failed rows naming the error, and
    verdict then says no policy ran."""
    t = deployment.compare({**CELL, "tp": 1, "hardware": "a100-80gb-sxm"}, ["vllm"])
    assert list(t["status"]) == ["failed"] and t["error"].iloc[0]
    with pytest.raises(ValueError, match="no policy ran: vllm"):
        deployment.verdict(t)


@pytest.mark.parametrize(
    "cell, match",
    [
        ({**CELL, "policy": "vllm"}, "not 'policy'"),
        ({**CELL, "slo_tpot": None}, "slo_ttft and slo_tpot"),
        ({**CELL, "clientz": 2}, "unknown option.*clientz"),
    ],
)
def test_bad_deployment_cell_is_refused_naming_the_field(cell, match):
    """Tests that a cell with a policy, without an SLO or with an unknown option is refused."""
    with pytest.raises(ValueError, match=match):
        deployment.compare(cell, ["vllm"])


# --- the rule ---------------------------------------------------------------------------


def test_a_tiny_goodput_edge_with_a_much_worse_ttft_is_not_a_win():
    """Tests the measured case: a 0.015% goodput edge is a tie (under the 1% threshold), the
    37% worse TTFT p99 is real on every seed, so hybrid-chunked loses and vllm is kept."""
    v = deployment.verdict(_runs({"hybrid-chunked": EDGE, "vllm": VLLM}))
    assert v["winner"] == "vllm" and v["outcome"] == "tie"
    assert v["against_reference"]["hybrid-chunked"] == "loses"
    h = v["headline"]
    assert h["policy"] == "hybrid-chunked" and h["goodput_change"] == pytest.approx(1.5e-4)
    assert h["ttft_p99_change"] == pytest.approx(0.37)


def test_a_real_goodput_gain_at_a_worse_ttft_is_a_trade_off_without_a_winner():
    """Tests that without the threshold the same consistent goodput edge is real, so the
    objectives disagree: the outcome is a trade-off, and the pick stays vllm."""
    v = deployment.verdict(_runs({"vllm": VLLM, "hybrid-chunked": EDGE}), min_effect=0.0)
    assert v["outcome"] == "trade-off" and v["trade_offs"] == ["hybrid-chunked"]
    assert v["winner"] == "vllm"
    assert v["headline"]["policy"] == "hybrid-chunked" and v["headline"]["against"] == "vllm"


def test_a_clear_win_is_a_win():
    """Tests that 20% more goodput and a 10% lower TTFT p99 on every seed win."""
    better = [(g * 1.2, t * 0.9) for g, t in VLLM]
    v = deployment.verdict(_runs({"vllm": VLLM, "chunked": better}))
    assert v["winner"] == "chunked" and v["outcome"] == "win"
    assert v["goodput_ratio"] == pytest.approx(1.2) and v["ttft_p99_ratio"] == pytest.approx(0.9)


def test_identical_results_tie_to_vllm_whatever_the_table_order():
    """Tests that policies with the same results tie, and the tie goes to vllm."""
    v = deployment.verdict(_runs({"hybrid": VLLM, "chunked": VLLM, "vllm": VLLM}))
    assert v["winner"] == "vllm" and v["outcome"] == "tie"
    assert v["tied_with_winner"] == ["chunked", "hybrid"] and v["headline"] is None


def test_a_difference_inside_the_seed_spread_is_a_tie():
    """Tests that a 5% mean goodput gain whose seeds disagree in sign is a tie."""
    noisy = [(5.0 * 0.9, 0.66), (6.0 * 1.25, 0.70), (7.0 * 1.0, 0.62)]
    rel = paired(_runs({"vllm": VLLM, "baseline": noisy}), "baseline", "vllm", "goodput_rps")
    assert rel["rel_low"] < 0 < rel["rel_high"]
    v = deployment.verdict(_runs({"vllm": VLLM, "baseline": noisy}))
    assert v["winner"] == "vllm" and v["against_reference"]["baseline"] == "ties"


def test_of_two_winners_that_tie_the_simpler_is_picked():
    """Tests that two policies beating vllm by the same margin tie, and hybrid-chunked
    (simpler than hybrid) is picked even with the slightly higher goodput of hybrid."""
    a = [(g * 1.3, t) for g, t in VLLM]
    b = [(g * 1.3001, t) for g, t in VLLM]
    v = deployment.verdict(_runs({"vllm": VLLM, "hybrid": b, "hybrid-chunked": a}))
    assert v["winner"] == "hybrid-chunked" and v["outcome"] == "win"
    assert v["tied_with_winner"] == ["hybrid"]


def test_one_seed_separates_policies_by_the_threshold_only():
    """Tests that with one seed a gain over the threshold counts and one under it ties."""
    assert (
        deployment.verdict(_runs({"vllm": [(5, 1)], "chunked": [(5.2, 1)]}))["winner"] == "chunked"
    )
    assert deployment.verdict(_runs({"vllm": [(5, 1)], "chunked": [(5.02, 1)]}))["winner"] == "vllm"


def test_a_failed_reference_is_replaced_by_the_simplest_policy_that_ran():
    """Tests that when the reference failed the simplest policy that ran is the reference."""
    runs = _runs({"vllm": VLLM, "hybrid": VLLM, "baseline": VLLM})
    runs.loc[runs["policy"] == "vllm", "status"] = "failed"
    v = deployment.verdict(runs)
    assert v["reference"] == "baseline" and v["winner"] == "baseline"
    assert simplest_first(["x", "hybrid", "vllm", "chunked"]) == ["vllm", "chunked", "hybrid", "x"]


def test_tradeoff_table_and_view_give_means_ranges_and_intervals():
    """Tests the trade-off table: simplest first, the seeds' mean and range, the change
    against the reference inside its interval, and the view's standing words."""
    runs = _runs({"hybrid-chunked": EDGE, "vllm": VLLM})
    v = deployment.verdict(runs)
    t = deployment.tradeoff_table(runs, v)
    assert list(t["policy"]) == ["vllm", "hybrid-chunked"]
    r = t.set_index("policy").loc["hybrid-chunked"]
    assert r["ttft_p99_s_min"] == pytest.approx(0.8409, abs=1e-4)
    assert r["ttft_p99_s_max"] == pytest.approx(0.9686, abs=1e-4)
    assert r["ttft_p99_change_low"] < r["ttft_p99_change"] < r["ttft_p99_change_high"]
    view = deployment.tradeoff_view(t, v).set_index("policy")
    assert view.loc["vllm", "standing"] == "the pick"
    assert view.loc["hybrid-chunked", "standing"] == "worse than vllm"
    assert view.loc["hybrid-chunked", "TTFT p99 vs vllm (90% interval)"].startswith("+37.0% (+3")
    assert "90% t-interval" in deployment.rule_text(
        v
    ) and "vllm, hybrid-chunked" in deployment.rule_text(v)


# --- loads, overload and words -------------------------------------------------------------


def test_max_load_brackets_the_slo_threshold():
    """Tests that the load found holds (attainment >= target when rerun) and the upper end
    of the bracket misses, within the tolerance."""
    target = 0.9
    r = deployment.max_load(CELL, "vllm", target=target, rel_tol=0.2, max_doublings=5)
    assert r["error"] is None and not r["capped"]
    lo, hi = r["max_rate_scale"], r["rate_scale_upper"]
    assert 0 < lo < hi and hi - lo <= 0.2 * hi
    at = deployment.compare({**CELL, "rate_scale": lo}, ["vllm"]).iloc[0]
    above = deployment.compare({**CELL, "rate_scale": hi}, ["vllm"]).iloc[0]
    assert at["slo_attainment"] >= target > above["slo_attainment"]
    assert r["max_rate_rps"] == pytest.approx(lo * deployment.base_rate(CELL))


def test_max_load_refuses_a_bad_target():
    """Tests that a target share outside (0, 1] is refused naming it."""
    with pytest.raises(ValueError, match="target"):
        deployment.max_load(CELL, "vllm", target=1.5)


def test_load_summary_keeps_the_load_held_on_every_seed():
    """Tests that the summary takes the lowest seed's load, its mean, and sums simulations."""
    loads = pd.DataFrame(
        [
            {
                "policy": "vllm",
                "seed": 0,
                "max_rate_scale": 2.0,
                "max_rate_rps": 8.0,
                "rate_scale_upper": 2.5,
                "capped": False,
                "simulations": 5,
                "base_rps": 4.0,
                "error": None,
            },
            {
                "policy": "vllm",
                "seed": 1,
                "max_rate_scale": 1.0,
                "max_rate_rps": 6.0,
                "rate_scale_upper": 1.5,
                "capped": False,
                "simulations": 6,
                "base_rps": 6.0,
                "error": None,
            },
        ]
    )
    s = deployment.load_summary(loads).iloc[0]
    assert s["max_rate_scale"] == 1.0 and s["max_rate_scale_mean"] == 1.5
    assert s["max_rate_rps"] == pytest.approx(5.0) and s["simulations"] == 11
    assert s["rate_scale_upper"] == 1.5 and not s["capped"]


def _summary(*pairs):
    return pd.DataFrame(
        [
            {"policy": p, "max_rate_scale": x, "capped": False, "max_rate_rps": 3 * x}
            for p, x in pairs
        ]
    )


def test_capacity_need_scales_replicas_by_the_overload_and_checks_the_estimate():
    """Tests the GPU estimate: the load is 4x what the best policy holds on one replica of
    tp=2, so 4 replicas (8 GPUs), checked by running vllm on them."""
    cell = {**CELL, "rate_scale": 2.0}
    need = deployment.capacity_need(cell, _summary(("vllm", 0.5), ("chunked", 0.25)))
    assert need["overloaded"] and need["reason"] == "load"
    assert (need["replicas"], need["gpus"], need["gpus_now"]) == (4, 8, 2)
    assert need["basis_policy"] == "vllm" and 0 <= need["check_attainment"] <= 1
    assert not deployment.capacity_need(cell, _summary(("vllm", 2.0)))["overloaded"]


def test_capacity_need_says_when_more_replicas_cannot_help():
    """Tests that an SLO no request meets even on an idle cluster gives no GPU count."""
    cell = {**CELL, "slo_ttft": 1e-4}
    need = deployment.capacity_need(cell, _summary(("vllm", 0.0)), max_doublings=1, deeper=1)
    assert need["overloaded"] and need["reason"] == "latency" and need["gpus"] is None
    assert need["lowest_searched"] == pytest.approx(1 / 8)


def test_reading_of_the_measured_case_names_vllm_and_why_the_other_loses():
    """Tests the generated reading: vllm is the pick, hybrid-chunked is worse with its
    intervals, the seeds' windows, and the highest load without a zero load."""
    runs = _runs({"vllm": VLLM, "hybrid-chunked": EDGE})
    v = deployment.verdict(runs)
    loads = _summary(("vllm", 1.25), ("hybrid-chunked", 0.0))
    need = {"overloaded": False}
    text = deployment.reading(runs, v, loads, need, CELL, 0.9)
    assert (
        "**vllm is the pick**" in text and "no policy beats vllm beyond the seeds' spread" in text
    )
    assert "hybrid-chunked is worse than vllm: goodput +0.015%" in text
    assert "TTFT p99 +37.0% (90% interval +3" in text and "90% interval" in text
    assert "windows 0:20, 20:40, 40:60 s" in text
    assert "rate_scale 1.25 (about 3.75 req/s), held by vllm" in text
    assert "hybrid-chunked held it at no load searched" in text
    assert "reached by" not in text and " 0 req/s" not in text
    claim = deployment.claim(v, loads, need, CELL)
    assert "no policy beats vllm beyond the seeds' spread, so vllm is kept" in claim
    assert "hybrid-chunked: goodput +0.015%, TTFT p99 +37.0%" in claim


def test_reading_of_a_trade_off_names_no_winner():
    """Tests that a trade-off reads as no single winner with both changes."""
    runs = _runs({"vllm": VLLM, "hybrid-chunked": EDGE})
    v = deployment.verdict(runs, min_effect=0.0)
    text = deployment.reading(runs, v, _summary(("vllm", 1.0)), {}, CELL, 0.9)
    assert (
        "**No single winner**" in text and "hybrid-chunked against vllm has goodput +0.015%" in text
    )
    assert "wins" not in text
    assert deployment.claim(v, _summary(("vllm", 1.0)), {}, CELL).count("no single winner") == 1


def test_reading_at_overload_says_the_cluster_cannot_serve_it_and_the_gpus_needed():
    """Tests the overload sentence: no policy serves the load, about N GPUs, how N is
    estimated; and never a highest load of 0."""
    runs = _runs({"vllm": VLLM, "chunked": VLLM})
    v = deployment.verdict(runs)
    loads = _summary(("vllm", 0.0), ("chunked", 0.0))
    need = {
        "overloaded": True,
        "reason": "load",
        "rate_scale": 1.0,
        "gpus_now": 2,
        "tp": 2,
        "replicas": 7,
        "gpus": 14,
        "basis_policy": "vllm",
        "basis_load": 0.15,
        "lowest_searched": 0.03,
        "check_attainment": 0.97,
        "check_holds": True,
    }
    text = deployment.reading(runs, v, loads, need, CELL, 0.9)
    assert (
        "the cluster cannot serve this load under the SLO with any policy; it needs about 14 GPUs"
        in text
    )
    assert "1 replicas x 1 / 0.15, rounded up to whole replicas" in text
    assert "highest load within the SLO" not in text and "reached by" not in text
    claim = deployment.claim(v, loads, need, CELL)
    assert claim.endswith(
        "cannot serve this load under the SLO with any policy; it needs about 14 GPUs."
    )


def test_load_line_counts_brackets_that_overlap_as_the_same_load():
    """Tests that a policy whose load search cannot be told apart from the top one's (their
    brackets overlap) is named as within the search's resolution, not as behind it."""
    runs = _runs({"vllm": VLLM, "chunked": [(g * 1.2, t * 0.9) for g, t in VLLM]})
    v = deployment.verdict(runs)
    loads = pd.DataFrame(
        [
            {"policy": "vllm", "max_rate_scale": 1.656, "rate_scale_upper": 1.72},
            {"policy": "chunked", "max_rate_scale": 1.688, "rate_scale_upper": 1.719},
        ]
    )
    text = deployment.reading(runs, v, loads, {}, CELL, 0.9)
    assert "held by chunked (vllm within the search's resolution of it)" in text
    assert "chunked holds the SLO up to rate_scale 1.69: the same load as vllm" in text


def test_reading_says_when_the_seeds_gave_no_spread():
    """Tests that identical seeds and a single seed are said to give no spread."""
    same = _runs({"vllm": [(5.0, 0.6)] * 3, "chunked": [(5.2, 0.6)] * 3})
    text = deployment.reading(same, deployment.verdict(same), _summary(), {}, CELL, 0.9)
    assert "gave identical results (the same requests), so the spread is 0" in text
    one = _runs({"vllm": [(5.0, 0.6)], "chunked": [(5.2, 0.6)]})
    text = deployment.reading(one, deployment.verdict(one), _summary(), {}, CELL, 0.9)
    assert "One seed (0): no spread is known, so only the 1% threshold" in text
