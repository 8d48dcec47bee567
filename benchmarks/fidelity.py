"""Fidelity targets: ``vllm`` against vLLM's own scheduler, and the engine against real vLLM
runs (``make bench``; the figures the README and notebook 10 quote). The kernel model
against its database is ``kernel_accuracy.py``."""

from __future__ import annotations

import json
import time


def bench_vllm() -> None:
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from tests.engine.test_vllm_fixtures import FIXTURES, engine_steps, recorded_steps, replay

    print("== vllm policy vs vLLM 0.33's recorded Scheduler/AsyncScheduler, step by step ==")
    for path in sorted(FIXTURES.glob("*.json")):
        fx = json.loads(path.read_text())
        want = {k: dict(s) for k, s in enumerate(recorded_steps(fx)) if s}
        got = engine_steps(replay(fx))
        same = sum(1 for k in want if got.get(k) == {r: n for r, n in want[k].items()})
        print(f"  {path.stem:18s}: {same:5d} of {len(want):5d} steps equal")


def bench_real() -> None:
    from hybridsched.studies.validation import leave_one_run_out, mape_of_means
    from hybridsched.workloads.real_runs import list_llmservingsim_runs, load_run

    print(
        "== engine vs real vLLM runs (LLMServingSim's 4 runs), overheads fitted leave-one-run-out =="
    )
    t0 = time.perf_counter()
    runs = [load_run(n) for n in list_llmservingsim_runs()]
    table, _ = leave_one_run_out(runs)
    for r in table.itertuples():
        print(
            f"  {r.run:40s} TTFT mean {r.ttft_mean_rel_error:+7.1%}  TPOT mean "
            f"{r.tpot_mean_rel_error:+7.1%}  E2E mean {r.e2e_mean_rel_error:+7.1%}  "
            f"(fitted on the others: {r.fitted_iteration_overhead_s * 1e3:.2f} ms/iteration)"
        )
    m = mape_of_means(table)
    print(
        f"  MAPE of the means: TTFT {m['ttft']:.1%} (aim <= 25%), TPOT {m['tpot']:.1%}, "
        f"E2E {m['e2e']:.1%} (aim <= 10%); {time.perf_counter() - t0:.0f} s"
    )
