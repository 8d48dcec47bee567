"""Record NVIDIA aiconfigurator's own capacity answer for notebook 08's case(s).

A maintenance script, like ``export_kernel_tables.py``: not part of the hybridsched package
and not imported by it or by the tests; aiconfigurator is not a dependency of the project,
which reads only the file written here (``hybridsched.studies.analytic_reference``; columns,
provenance and how aiconfigurator's model differs from ours: ``data/planning/README.md``).

For each target rate it runs, as a subprocess, ``aiconfigurator cli recommend`` (aggregated
and disaggregated serving; the fewest GPUs for the rate under the TTFT/TPOT targets) and
keeps rank 1 of each mode (``<save-dir>/*/{agg,disagg}/best_config_topn.csv``). With
``--estimate-batch B`` (default 32, notebook 08's ``max_batch``) it also runs ``aiconfigurator
cli estimate`` of one aggregated worker per tp of ``--estimate-tp`` at batch ``B`` (context
tokens per step = ISL, its default) and sizes it for the rate by recommend's own rule
(``replicas = ceil(rate / seq/s)``). Inputs all come from the project:

- ISL/OSL: the mean prompt and output length of ``--workload`` over ``--window`` (default:
  the whole trace, as notebook 08 uses it), rounded to the nearest token, computed by
  ``analytic_reference.workload_lengths`` with our loader (the exact means are recorded too);
- the model: a config.json built from ``data/profiles/models/<model>.yaml`` by
  ``kernel_reference_estimates.hf_config`` (so aiconfigurator prices exactly our
  architecture), in a temporary folder passed as ``--model-path``;
- system, backend and its perf-database version: the ``kernels`` field of our hardware
  profile ``data/profiles/hardware/<hardware>.yaml`` (``h100-sxm-vllm`` ->
  ``h100_sxm/vllm/0.24.0``), the database our latency model was exported from.

Build the venv (outside the repo; no GPU; Python 3.11-3.13; the ``aiconfigurator`` wheel
carries the CLI and pulls ``aiconfigurator-core``, numpy, pandas, scipy, pyyaml, which is
all hybridsched's workload loader needs)::

    python3 -m venv /tmp/aic
    /tmp/aic/bin/pip install aiconfigurator==0.12.0

Then, from the checkout (about 30 s; the script puts the checkout on ``sys.path`` itself)::

    cd <checkout>
    /tmp/aic/bin/python scripts/aiconfigurator_recommend.py

which is, with every default spelled out::

    /tmp/aic/bin/python scripts/aiconfigurator_recommend.py --workload azure-conv \
        --model llama-3.1-8b --hardware h100-sxm-vllm --rates 20,10 --ttft-ms 1000 \
        --tpot-ms 50 --database-mode HYBRID --estimate-batch 32 --estimate-tp 1,2,4,8 \
        --out data/planning/aiconfigurator_recommend.csv

aiconfigurator 0.12.0 warns that its ``aiconfigurator cli`` distribution moves to ``aisimulate``
in 0.13.0 (same command and arguments); with the pinned 0.12.0 the warning is harmless.
``--aiconfigurator PATH`` picks the CLI (default: the one beside this Python);
``--raw-dir DIR`` keeps aiconfigurator's own output folders; ``--date`` sets ``run_date``.
Licence of the recorded numbers: aiconfigurator is Apache-2.0 (NVIDIA).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

from kernel_reference_estimates import hf_config  # noqa: E402

from hybridsched.paths import data_dir  # noqa: E402
from hybridsched.studies.analytic_reference import COLUMNS, workload_lengths  # noqa: E402

# aiconfigurator's column -> ours (data/planning/README.md); per replica unless named.
RECOMMEND_MAP = {
    "total_gpus_needed": "gpus",
    "replicas_needed": "replicas",
    "num_total_gpus": "gpus_per_replica",
    "concurrency": "concurrency_per_replica",
    "ttft": "ttft_ms",
    "tpot": "tpot_ms",
    "request_latency": "request_latency_ms",
    "seq/s": "replica_rate_rps",
    "seq/s/gpu": "rate_per_gpu_rps",
    "tokens/s/gpu": "output_tokens_per_s_per_gpu",
    "tokens/s/user": "output_tokens_per_s_per_user",
}
AGG_MAP = {"tp": "tp", "pp": "pp", "dp": "dp", "bs": "batch_size"}
DISAGG_MAP = {
    "(p)workers": "prefill_workers",
    "(p)tp": "prefill_tp",
    "(p)bs": "prefill_batch_size",
    "(d)workers": "decode_workers",
    "(d)tp": "decode_tp",
    "(d)bs": "decode_batch_size",
}
INT_COLUMNS = ("requests", "isl_tokens", "osl_tokens", "gpus", "replicas", "gpus_per_replica")
INT_COLUMNS += ("tp", "pp", "dp", "batch_size", "concurrency_per_replica", *DISAGG_MAP.values())
# ``cli estimate`` prints its result as "  Label:   value [unit]" lines.
ESTIMATE_FIELDS = {
    "TTFT": "ttft_ms",
    "TPOT": "tpot_ms",
    "Request Latency": "request_latency_ms",
    "tokens/s/gpu": "output_tokens_per_s_per_gpu",
    "tokens/s/user": "output_tokens_per_s_per_user",
    "seq/s": "replica_rate_rps",
    "Concurrency": "concurrency_per_replica",
}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", default="azure-conv")
    ap.add_argument("--window", default="", help="START:END seconds; empty: the whole trace")
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--hardware", default="h100-sxm-vllm", help="our hardware profile")
    ap.add_argument("--rates", default="20,10", help="target request rates, req/s")
    ap.add_argument("--ttft-ms", type=float, default=1000.0)
    ap.add_argument("--tpot-ms", type=float, default=50.0)
    ap.add_argument("--database-mode", default="HYBRID", help="recommend's default")
    ap.add_argument("--estimate-batch", type=int, default=32, help="0: no estimate rows")
    ap.add_argument("--estimate-tp", default="1,2,4,8")
    ap.add_argument("--aiconfigurator", default=str(Path(sys.executable).parent / "aiconfigurator"))
    ap.add_argument("--out", default=str(data_dir() / "planning" / "aiconfigurator_recommend.csv"))
    ap.add_argument("--raw-dir", default=None, help="keep aiconfigurator's output folders here")
    ap.add_argument("--date", default=datetime.datetime.now(datetime.UTC).date().isoformat())
    return ap.parse_args(argv)


def target(hardware: str) -> dict:
    """aiconfigurator's system, backend and version of our hardware profile's kernel tables."""
    prof = yaml.safe_load((data_dir() / "profiles" / "hardware" / f"{hardware}.yaml").read_text())
    if not prof.get("kernels"):
        raise SystemExit(f"{hardware}: no kernels field, not derived from aiconfigurator tables")
    system, backend, version = prof["kernels"].split("/")
    return {"hardware": hardware, "system": system, "backend": backend, "backend_version": version}


def model_dir(model: str, folder: Path) -> Path:
    """``folder/<model>/config.json`` built from our model YAML."""
    y = yaml.safe_load((data_dir() / "profiles" / "models" / f"{model}.yaml").read_text())
    out = folder / model
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(hf_config(y), indent=1))
    return out


def run(cmd: list[str]) -> str:
    """Run one aiconfigurator command; its stdout and stderr together (it logs to both)."""
    print("$", shlex.join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    text = p.stdout + "\n" + p.stderr
    if p.returncode != 0:
        print(text[-4000:], file=sys.stderr)
        raise SystemExit(f"aiconfigurator exited with {p.returncode}")
    return text


def version_of(log: str) -> str:
    m = re.search(r"Loading AIConfigurator version: (\S+)", log)
    if not m:
        raise SystemExit("aiconfigurator did not print its version; is this its CLI?")
    return m.group(1)


def flags(pairs: dict) -> list[str]:
    return [str(x) for kv in pairs.items() for x in kv]


def common_args(args, tgt: dict, path: Path, lengths: dict) -> list[str]:
    """The flags every command shares: the model, the target, the database, ISL and OSL."""
    return flags(
        {
            "--model-path": path,
            "--system": tgt["system"],
            "--backend": tgt["backend"],
            "--backend-version": tgt["backend_version"],
            "--database-mode": args.database_mode,
            "--isl": lengths["isl_tokens"],
            "--osl": lengths["osl_tokens"],
        }
    )


def recommend_rows(args, tgt, path, lengths, rate: float, save: Path) -> list[dict]:
    """Rank 1 of ``cli recommend``'s aggregated and disaggregated answers at ``rate``."""
    cmd = [args.aiconfigurator, "cli", "recommend", *common_args(args, tgt, path, lengths)]
    cmd += ["--target-request-rate", f"{rate:g}", "--ttft", f"{args.ttft_ms:g}"]
    cmd += ["--tpot", f"{args.tpot_ms:g}", "--save-dir", str(save)]
    log = run(cmd)
    rows = []
    for mode, extra in (("agg", AGG_MAP), ("disagg", DISAGG_MAP)):
        found = sorted(save.glob(f"*/{mode}/best_config_topn.csv"))
        if len(found) != 1:
            raise SystemExit(f"expected one {mode}/best_config_topn.csv under {save}: {found}")
        best = pd.read_csv(found[0]).iloc[0]
        row = {ours: best[theirs] for theirs, ours in {**RECOMMEND_MAP, **extra}.items()}
        row.update(selection="recommend", serving_mode=mode, aiconfigurator_version=version_of(log))
        rows.append(row)
    return rows


def parse_estimate(text: str) -> dict:
    out = {}
    for label, col in ESTIMATE_FIELDS.items():
        m = re.search(rf"^\s*{re.escape(label)}:\s+([\d,.]+)", text, re.M)
        if not m:
            raise SystemExit(f"cli estimate printed no {label!r} line")
        out[col] = float(m.group(1).replace(",", ""))
    return out


def estimate_row(args, tgt, path, lengths, tp: int) -> dict:
    """``cli estimate`` of one aggregated worker (tp, batch ``--estimate-batch``, context
    tokens per step = ISL); no rate in it (``sized`` sizes it for one)."""
    cmd = [args.aiconfigurator, "cli", "estimate", *common_args(args, tgt, path, lengths)]
    cmd += flags({"--estimate-mode": "agg", "--tp-size": tp, "--batch-size": args.estimate_batch})
    log = run(cmd)
    row = parse_estimate(log)
    row.update(
        selection="estimate",
        serving_mode="agg",
        aiconfigurator_version=version_of(log),
        tp=tp,
        pp=1,
        dp=1,
        batch_size=args.estimate_batch,
        gpus_per_replica=tp,
        rate_per_gpu_rps=row["replica_rate_rps"] / tp,
    )
    return row


def sized(row: dict, rate: float) -> dict:
    """An estimate row sized for ``rate`` by recommend's rule: ``ceil(rate / seq/s)``
    replicas (at least one)."""
    replicas = max(1, math.ceil(rate / row["replica_rate_rps"] - 1e-12))
    return {**row, "replicas": replicas, "gpus": replicas * row["gpus_per_replica"]}


def finish(rows: list[tuple[dict, dict]]) -> pd.DataFrame:
    """The table (one ``(case, result)`` pair a row) in ``COLUMNS`` order, with the cluster
    rate and the SLA check."""
    df = pd.DataFrame([{**case, **r} for case, r in rows], columns=list(COLUMNS))
    df["cluster_rate_rps"] = df["replicas"] * df["replica_rate_rps"]
    df["meets_sla"] = (df["ttft_ms"] <= df["ttft_sla_ms"]) & (df["tpot_ms"] <= df["tpot_sla_ms"])
    for c in ("prompt_mean_tokens", "output_mean_tokens"):
        df[c] = df[c].round(6)
    for c in ("cluster_rate_rps", "rate_per_gpu_rps"):
        df[c] = df[c].round(3)
    for c in INT_COLUMNS:  # counts, written without ".0" (blank where they do not apply)
        df[c] = df[c].astype("Int64")
    return df


def main(argv=None) -> None:
    args = parse_args(argv)
    tgt = target(args.hardware)
    lengths = workload_lengths(args.workload, args.window)
    print(f"{args.workload} [{args.window or 'whole trace'}]: {lengths}")
    base = {"run_date": args.date, "workload": args.workload, "window": args.window, **lengths}
    base.update(model=args.model, **tgt, database_mode=args.database_mode)
    base.update(ttft_sla_ms=args.ttft_ms, tpot_sla_ms=args.tpot_ms)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(args.raw_dir) if args.raw_dir else Path(tmp)
        path = model_dir(args.model, Path(tmp) / "models")
        tps = [int(t) for t in args.estimate_tp.split(",")] if args.estimate_batch > 0 else []
        estimates = [estimate_row(args, tgt, path, lengths, tp) for tp in tps]
        for rate in (float(r) for r in args.rates.split(",")):
            case = {**base, "target_rate_rps": rate}
            save = raw / f"recommend_{rate:g}rps"
            rows += [(case, r) for r in recommend_rows(args, tgt, path, lengths, rate, save)]
            rows += [(case, sized(e, rate)) for e in estimates]
    df = finish(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    show = ["target_rate_rps", "selection", "serving_mode", "gpus", "replicas", "tp"]
    show += ["batch_size", "ttft_ms", "tpot_ms", "replica_rate_rps", "meets_sla"]
    print(df[show].to_string(index=False))
    print(f"{len(df)} rows -> {out}")


if __name__ == "__main__":
    main()
