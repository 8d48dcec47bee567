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
- ``--shared-prefix N`` (``with_shared_prefix``): every request starts with the same ``N``
  tokens, written as the group columns above.

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


def prompt_segments(requests: pd.DataFrame):
    """Per request, its prompt as ``(key, tokens)`` segments; None without prefix identity."""
    ids = requests["request_id"].tolist()
    s = requests["prompt_tokens"].to_numpy(np.int64)
    if "prefix_blocks" in requests.columns:
        return [
            _blocks(rid, int(n), b)
            for rid, n, b in zip(ids, s, requests["prefix_blocks"], strict=True)
        ]
    roots = _roots(requests, ids, s)
    if "prefix_parent" in requests.columns:
        return _chains(requests, ids, s, roots)
    return roots if roots is not None else None


def _roots(requests: pd.DataFrame, ids: list, s: np.ndarray):
    """Segments of requests that extend no earlier one: a group's common prefix, or their own."""
    if "prefix_group" in requests.columns:
        shared = requests["shared_prefix_tokens"].to_numpy(np.int64)
        groups = requests["prefix_group"].tolist()
        return [
            _split(("g", g), int(k), rid, int(n)) if not _missing(g) else [(("u", rid), int(n))]
            for g, k, rid, n in zip(groups, shared, ids, s, strict=True)
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
    """Row -> its chained block ids over prompt then output (module docstring).

    A row's segments are a path in a trie of segment keys (``nodes``); a block ending at
    offset ``t`` of the segment at trie node ``v`` gets the id of ``(v, t)``. Two rows reach
    the same node only through the same segments, all of them whole but the last (a cut
    segment is followed by the row's own tokens, a key no other row has), so equal ids mean
    equal tokens up to the block's end, as chained hashes do.
    """

    def __init__(self, segments: list, ids: list, output: list, block_size: int) -> None:
        self.segments, self.ids, self.output, self.b = segments, ids, output, block_size
        self.nodes: dict[tuple, int] = {}
        self.intern: dict[tuple, int] = {}
        self.rows: dict[int, list[int]] = {}

    def __call__(self, i: int) -> list[int]:
        keys = self.rows.get(i)
        if keys is None:
            keys = self.rows[i] = self._build(i)
        return keys

    def _build(self, i: int) -> list[int]:
        b, nodes, intern = self.b, self.nodes, self.intern
        out: list[int] = []
        parent, pos, end = -1, 0, b  # the trie node, tokens so far, the next block's end
        for key, n in [*self.segments[i], (("o", self.ids[i]), self.output[i])]:
            node = nodes.setdefault((parent, key), len(nodes))
            stop = pos + n
            while end <= stop:
                k = (node, end - pos)
                v = intern.get(k)
                if v is None:
                    v = intern[k] = len(intern)
                out.append(v)
                end += b
            parent, pos = node, stop
        return out


def shared_prompt_tokens(requests: pd.DataFrame) -> np.ndarray | None:
    """Per request, the leading tokens of its prompt that some other request also holds
    (its prompt, or its prompt and output), by whole segments: at least what is really
    shared (a segment another request holds only in part counts whole). None without
    prefix identity."""
    segs = prompt_segments(requests)
    if segs is None:
        return None
    ids, out = requests["request_id"].tolist(), requests["output_tokens"].tolist()
    nodes: dict[tuple, int] = {}
    count: dict[int, int] = {}
    paths = []
    for i, seg in enumerate(segs):
        parent, path = -1, []
        for key, n in [*seg, (("o", ids[i]), out[i])]:
            parent = nodes.setdefault((parent, key), len(nodes))
            path.append((parent, n))
        for node in {p for p, _ in path}:
            count[node] = count.get(node, 0) + 1
        paths.append(path[: len(seg)])
    shared = np.zeros(len(segs), dtype=np.int64)
    for i, path in enumerate(paths):
        for node, n in path:
            if count[node] < 2:
                break  # a path: nothing after an unshared segment is shared either
            shared[i] += n
    return shared


def cacheable_tokens(requests: pd.DataFrame, block_size: int) -> np.ndarray | None:
    """Per request, the most prompt tokens a prefix cache of ``block_size``-token blocks
    could supply: whole blocks (at most ``(s_i - 1) // b``: the last token is always
    computed) of the prefix another request also holds. None without prefix identity."""
    shared = shared_prompt_tokens(requests)
    if shared is None:
        return None
    s = requests["prompt_tokens"].to_numpy(np.int64)
    b = int(block_size)
    return np.minimum((s - 1) // b, shared // b) * b


def cacheable_any_block(requests: pd.DataFrame) -> np.ndarray | None:
    """``cacheable_tokens`` for every block size at once (one-token blocks: at most the
    shared prefix, at most ``s_i - 1``): valid whatever block size the engine runs."""
    return cacheable_tokens(requests, 1)
