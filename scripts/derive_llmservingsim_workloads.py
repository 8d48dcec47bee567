"""Derive the compact workload tables of the shipped LLMServingSim runs from their token ids.

The runs' workload files (LLMServingSim's flat-request JSONL, 7.7 MB with every prompt's
token ids) are not shipped; what a replay needs from them is, per request, its arrival,
lengths, and which earlier request's prompt it extends (a later turn of a conversation
repeats the earlier turns, so a prefix cache can reuse them). This script writes one CSV
per workload into ``data/validation/llmservingsim/workloads/``: ``request_id`` (the line),
``arrival_s`` (the workload's ``arrival_time_ns`` / 1e9), ``prompt_tokens``,
``output_tokens``, ``prefix_parent`` (the earlier request whose prompt shares the longest
run of leading tokens with this one, -1 for none; the first such request on a tie) and
``shared_prefix_tokens`` (that run's length; 0 with no parent). A run shorter than one
16-token KV block counts as none: every Llama-3 prompt starts with the same BOS token, and
a prefix cache reuses whole blocks only. Only the prompts' token ids are compared: vLLM
generated its own output tokens, not the workload's recorded replies.

Usage (the runs' upstream folder holds ``workloads/*.jsonl``; the sha256 printed for each
is the ``dataset_hash`` in the runs' ``meta.json``)::

    python scripts/derive_llmservingsim_workloads.py UPSTREAM_RUNS_DIR
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "data" / "validation" / "llmservingsim" / "workloads"


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


def derive(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = []
    for i, r in enumerate(rows):
        ids = r["input_tok_ids"]
        best, parent = 0, -1
        for j in range(i):
            k = common_prefix(ids, rows[j]["input_tok_ids"])
            if k > best:
                best, parent = k, j
        shared = best if best >= 16 else 0  # less than one block: nothing to reuse
        out.append(
            {
                "request_id": i,
                "arrival_s": r["arrival_time_ns"] / 1e9,
                "prompt_tokens": r["input_toks"],
                "output_tokens": r["output_toks"],
                "prefix_parent": parent if shared else -1,
                "shared_prefix_tokens": shared,
            }
        )
    return out


def main(upstream: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(upstream, "workloads").glob("*.jsonl")):
        rows = derive(path)
        dst = OUT / (path.stem + ".csv")
        with dst.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        hits = sum(r["shared_prefix_tokens"] for r in rows)
        total = sum(r["prompt_tokens"] for r in rows)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{dst.name}: {len(rows)} requests, {hits / total:.1%} of prompt tokens shared")
        print(f"  from {path.name}, sha256 {sha}")


if __name__ == "__main__":
    main(sys.argv[1])
