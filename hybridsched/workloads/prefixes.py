"""Which requests share prompt prefixes: what a prefix cache can reuse (docs/model.md section 11).

A request table may carry prefix identity in one of these ways (the first present wins):

- ``prefix_blocks``: space-separated ids of its prompt's blocks of ``PREFIX_BLOCK_TOKENS``
  tokens, equal ids meaning an equal prompt up to that block's end (Mooncake's
  ``hash_ids``: 512-token blocks);
- ``prefix_parent`` and ``shared_prefix_tokens``: an earlier request (its ``request_id``, -1
  for none) whose prompt followed by its output this prompt extends for
  ``shared_prefix_tokens`` tokens (a later turn of a conversation); a parent left out of the
  table (a sample) still shares that part with its other later turns;
- ``prefix_group`` and ``shared_prefix_tokens``: requests of one group share their first
  ``shared_prefix_tokens`` tokens (a common system prompt); with ``prefix_parent`` too, a
  first turn (parent -1) starts with its group's prefix and a later turn extends its parent;
- ``--shared-prefix N`` (``shared_prefix``): every request starts with the same ``N`` tokens.

``prompt_segments`` turns them into one list per request of ``(key, tokens)`` segments: two
requests' prompts agree on their first ``x`` tokens exactly when their segment lists agree up
to ``x`` (a request's own tokens are keyed by it). A request's output tokens are the segment
``("o", request)``, so a later turn that extends prompt and output shares both.

``BlockKeys`` turns segments into block identities, chained as vLLM chains its block
hashes: block ``k``'s id stands for the parent block's id and the segment pieces in block
``k``, so two requests' ``k``-th ids are equal exactly when their tokens agree up to that
block's end. Ids are small integers interned per run; a row's list is built when first asked.
``cacheable_tokens`` bounds, per request, the prompt tokens a prefix cache could supply.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PREFIX_COLUMNS = ("prefix_blocks", "prefix_parent", "prefix_group", "shared_prefix_tokens")
PREFIX_BLOCK_TOKENS = 512  # Mooncake's hash_ids block


def has_prefixes(requests: pd.DataFrame) -> bool:
    return any(c in requests.columns for c in ("prefix_blocks", "prefix_parent", "prefix_group"))


def with_shared_prefix(requests: pd.DataFrame, tokens: int) -> pd.DataFrame:
    """``--shared-prefix N``: every prompt starts with the same ``N`` tokens (or is them)."""
    if has_prefixes(requests):
        raise ValueError(
            "shared_prefix: the workload already says which prompts share prefixes "
            f"({', '.join(c for c in PREFIX_COLUMNS if c in requests.columns)})"
        )
    s = requests["prompt_tokens"].to_numpy(np.int64)
    return requests.assign(prefix_group="shared", shared_prefix_tokens=np.minimum(s, int(tokens)))


def prompt_segments(requests: pd.DataFrame, shared_prefix: int | None = None):
    """Per request, its prompt as ``(key, tokens)`` segments; None without prefix identity."""
    ids = requests["request_id"].tolist()
    s = requests["prompt_tokens"].to_numpy(np.int64)
    if "prefix_blocks" in requests.columns:
        return [
            _blocks(rid, int(n), b)
            for rid, n, b in zip(ids, s, requests["prefix_blocks"], strict=True)
        ]
    roots = _roots(requests, ids, s, shared_prefix)
    if "prefix_parent" in requests.columns:
        return _chains(requests, ids, s, roots)
    return roots if roots is not None else None


def _roots(requests: pd.DataFrame, ids: list, s: np.ndarray, shared_prefix: int | None):
    """Segments of requests that extend no earlier one: a group's common prefix, or their own."""
    if "prefix_group" in requests.columns:
        shared = requests["shared_prefix_tokens"].to_numpy(np.int64)
        groups = requests["prefix_group"].tolist()
        return [
            _split(("g", g), int(k), rid, int(n)) if not _missing(g) else [(("u", rid), int(n))]
            for g, k, rid, n in zip(groups, shared, ids, s, strict=True)
        ]
    if shared_prefix:
        return [
            _split(("g", "shared"), min(int(shared_prefix), int(n)), rid, int(n))
            for rid, n in zip(ids, s, strict=True)
        ]
    return None


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA


def _split(key, shared: int, rid, n: int) -> list:
    out = [(key, shared)] if shared > 0 else []
    return out + ([(("u", rid), n - shared)] if n > shared else [])


def _blocks(rid, n: int, blocks) -> list:
    out, done = [], 0
    for h in str(blocks).split() if isinstance(blocks, str) else []:
        if done >= n:
            break
        k = min(PREFIX_BLOCK_TOKENS, n - done)
        out.append((("m", h), k))  # a chained id: equal ids, equal prefix
        done += k
    return out + ([(("u", rid), n - done)] if n > done else [])


def _chains(requests: pd.DataFrame, ids: list, s: np.ndarray, roots) -> list:
    """Later turns: the parent's prompt and output, cut at ``shared_prefix_tokens``; a first
    turn is its root (its group's prefix, if any)."""
    row_of = {rid: k for k, rid in enumerate(ids)}
    parent = requests["prefix_parent"].tolist()
    shared = requests["shared_prefix_tokens"].to_numpy(np.int64)
    out_tokens = requests["output_tokens"].to_numpy(np.int64)
    segs: list = [None] * len(ids)
    for k, rid in enumerate(ids):
        p = parent[k]
        if p is None or pd.isna(p) or int(p) < 0:
            segs[k] = roots[k] if roots is not None else [(("u", rid), int(s[k]))]
            continue
        j = row_of.get(int(p))
        if j is None:  # the parent is not in this table (a sample): its part is still shared
            full = [(("p", int(p)), int(shared[k]))]
        else:
            full = [*segs[j], (("o", ids[j]), int(out_tokens[j]))]
        segs[k] = _cut(full, int(shared[k])) + (
            [(("u", rid), int(s[k] - shared[k]))] if s[k] > shared[k] else []
        )
    return segs


def _cut(segments: list, tokens: int) -> list:
    out, left = [], tokens
    for key, n in segments:
        if left <= 0:
            break
        out.append((key, min(n, left)))
        left -= n
    return out


def check_prefix_columns(out: pd.DataFrame, df: pd.DataFrame, fail) -> None:
    """Copy and check the prefix columns of ``df`` into ``out`` (``fail(out, mask, col, rule)``)."""
    for col in PREFIX_COLUMNS:
        if col in df.columns:
            out[col] = df[col].to_numpy()
    if (
        "prefix_parent" in df.columns or "prefix_group" in df.columns
    ) and "shared_prefix_tokens" not in df.columns:
        raise ValueError("requests: prefix_parent and prefix_group need shared_prefix_tokens")
    if "shared_prefix_tokens" in out.columns:
        v = pd.to_numeric(out["shared_prefix_tokens"], errors="coerce").to_numpy(float)
        fail(
            out, ~np.isfinite(v) | (v != np.round(v)), "shared_prefix_tokens", "must be an integer"
        )
        fail(out, v < 0, "shared_prefix_tokens", "must be >= 0")
        fail(
            out,
            v > out["prompt_tokens"].to_numpy(),
            "shared_prefix_tokens",
            "must be <= prompt_tokens",
        )
        out["shared_prefix_tokens"] = v.astype(np.int64)
    if "prefix_parent" in out.columns:
        p = pd.to_numeric(out["prefix_parent"], errors="coerce").fillna(-1).to_numpy(float)
        fail(out, p != np.round(p), "prefix_parent", "must be a request_id or -1")
        rows = {int(r): k for k, r in enumerate(out["request_id"])}
        later = np.array([x >= 0 and rows.get(int(x), -1) >= k for k, x in enumerate(p)])
        fail(out, later, "prefix_parent", "must name an earlier request (or one not in the table)")
        out["prefix_parent"] = p.astype(np.int64)


class BlockKeys:
    """Row -> its chained block ids over prompt then output (module docstring)."""

    def __init__(self, segments: list, ids: list, output: list, block_size: int) -> None:
        self.segments, self.ids, self.output, self.b = segments, ids, output, block_size
        self.intern: dict[tuple, int] = {}
        self.rows: dict[int, list[int]] = {}

    def __call__(self, i: int) -> list[int]:
        keys = self.rows.get(i)
        if keys is None:
            keys = self.rows[i] = self._build(i)
        return keys

    def _build(self, i: int) -> list[int]:
        segs = [*self.segments[i], (("o", self.ids[i]), self.output[i])]
        b, intern = self.b, self.intern
        out: list[int] = []
        parent, piece, room = -1, [], b
        for key, n in segs:
            at = 0
            while at < n:
                take = min(room, n - at)
                piece.append((key, at, at + take))
                at += take
                room -= take
                if room == 0:
                    node = (parent, tuple(piece))
                    parent = intern.get(node)
                    if parent is None:
                        parent = intern[node] = len(intern)
                    out.append(parent)
                    piece, room = [], b
        return out


def cacheable_tokens(requests: pd.DataFrame, block_size: int) -> np.ndarray | None:
    """Per request, the most prompt tokens a prefix cache could supply: its full blocks
    (at most ``(s_i - 1) // b``: the last token is always computed) that some other request
    also holds. None without prefix identity."""
    segs = prompt_segments(requests)
    if segs is None:
        return None
    ids = requests["request_id"].tolist()
    s = requests["prompt_tokens"].to_numpy(np.int64)
    keys = BlockKeys(segs, ids, requests["output_tokens"].tolist(), block_size)
    count: dict[int, int] = {}
    for i in range(len(ids)):
        for k in set(keys(i)):
            count[k] = count.get(k, 0) + 1
    out = np.zeros(len(ids), dtype=np.int64)
    for i in range(len(ids)):
        for k in keys(i)[: (int(s[i]) - 1) // block_size]:
            if count[k] < 2:
                break  # a chain: no later block can be held elsewhere either
            out[i] += block_size
    return out


def cacheable_any_block(requests: pd.DataFrame, block_size: int = 16) -> np.ndarray | None:
    """``cacheable_tokens`` for every block size at once: what 16-token blocks allow plus
    the rest of the next block (a finer block can share up to ``block_size - 1`` tokens
    more), capped at ``s_i - 1``, for requests whose first segment another request shares
    (else none can be cached). A valid allowance whatever block size the engine runs."""
    segs = prompt_segments(requests)
    if segs is None:
        return None
    exact = cacheable_tokens(requests, block_size)
    first = [seg[0][0] if seg else None for seg in segs]
    count: dict = {}
    for key in first:
        count[key] = count.get(key, 0) + 1
    shared = np.array([k is not None and count[k] > 1 for k in first])
    s = requests["prompt_tokens"].to_numpy(np.int64)
    return np.where(shared, np.minimum(s - 1, exact + block_size - 1), exact)
