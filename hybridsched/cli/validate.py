"""``validate``: a real serving run replayed through the engine, compared request by request."""

from __future__ import annotations

import argparse

from hybridsched.cli.argcheck import nonnegative_float_arg
from hybridsched.cli.outputs import Outputs


def cmd_validate(args) -> None:
    from hybridsched.provenance import versions
    from hybridsched.reports.validation import plot_cdfs, png, summary_sentence
    from hybridsched.studies.validation import Overheads, validate
    from hybridsched.workloads.real_runs import load_run

    run = load_run(args.run, args.format)
    overheads = Overheads(args.iteration_overhead, args.request_overhead)
    v = validate(run, args.model, args.hardware, overheads)
    out = Outputs(args.out)
    out.add("requests.csv", v.requests)
    out.add("summary.csv", v.summary)
    out.add(
        "metrics.json",
        {
            "run": v.run,
            "source": run.source,
            "model": v.model,
            "hardware": v.hardware,
            "iteration_overhead_s": overheads.iteration_s,
            "request_overhead_s": overheads.request_s,
            "requests": len(v.requests),
            **v.errors,
            "settings": v.settings,
            "versions": versions(),
        },
    )
    out.add("cdf.png", png(plot_cdfs(v.requests, f"{v.run}: {v.model} on {v.hardware}")))
    out.commit()
    print(summary_sentence(v.run, v.errors))


def add_validate(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "validate",
        help="replay a real serving run's requests and compare TTFT, TPOT and E2E",
    )
    p.add_argument(
        "--run",
        required=True,
        help="a `vllm bench serve --save-result --save-detailed` JSON, a run folder "
        "(meta.json + requests.jsonl), or a shipped run such as RTX4090/Llama-3.1-8B",
    )
    p.add_argument(
        "--format",
        choices=["vllm-bench", "llmservingsim"],
        default=None,
        help="the run's format (default: from the file)",
    )
    p.add_argument("--model", default=None, help="model profile (default: from the run)")
    p.add_argument(
        "--hardware", default=None, help="hardware profile (default: from the run's GPU)"
    )
    p.add_argument(
        "--iteration-overhead",
        type=nonnegative_float_arg,
        default=None,
        metavar="S",
        help="host time per iteration, s (default: the hardware profile's)",
    )
    p.add_argument(
        "--request-overhead",
        type=nonnegative_float_arg,
        default=None,
        metavar="S",
        help="API time per request, s (default: the hardware profile's)",
    )
    p.add_argument(
        "--out", required=True, help="folder for requests.csv, summary.csv, metrics.json, cdf.png"
    )
    return p
