"""``check_trace``'s decode invariants: every request emits exactly ``o_i`` tokens, one in
each decoding iteration of its client from its first token to its last (docs/model.md
section 9), and the context each decode reads (for the duration check).

A request's decodes are numbered by its client's decoding rows (``after``: decoding
rows up to and including a row). Without evictions a request's ``t``-th decode must be
the ``t``-th decoding row after its first token, each once; with evictions the same
holds per (request, segment), in time order (one sort). ``c`` is ``check_trace``'s
context (the flat trace ``c.f``, the instance, the evictions).
"""

from __future__ import annotations

import numpy as np

from hybridsched.trace.errors import fail
from hybridsched.trace.flat import groups, min_at, segment_key


def check_decodes(c) -> None:
    """Exactly ``o_i`` tokens, decoded in every decoding iteration from its first token on."""
    f, n = c.f, c.f.n
    d = np.flatnonzero(f.dec)
    ndec = np.bincount(f.row[d], minlength=n)
    out = c.inst.output
    bad = ndec != out - 1 - c.n_ev_run
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        fail(
            "emits exactly o_i tokens",
            f"request {c.ids[i]} emits {1 + ndec[i]} tokens, o_i = {out[i]}",
        )
    # Number each client's decoding iterations (decode rows, mixed rows with a batch).
    lens = np.bincount(f.pos, minlength=f.nrows)
    is_dec = f.is_decode | (f.is_mixed & (lens > 0))
    cum = np.cumsum(is_dec)
    starts = np.flatnonzero(np.r_[True, f.client[1:] != f.client[:-1]])
    base = np.repeat(cum[starts] - is_dec[starts], np.diff(np.r_[starts, f.nrows]))
    c.after = cum - base  # decoding rows of the client up to and including a row
    S = c.S
    # The first-token rows per (request, segment): a request's decodes follow its earliest.
    fr, fp, fs = f.first_token_rows()
    fkey = segment_key(fr, fs, S)
    c.ft = (fr, fp, fs)
    ukey, inv = np.unique(fkey, return_inverse=True)
    first_pos = min_at(len(ukey), inv, fp, f.nrows)
    c.first_key, c.first_after = ukey, c.after[first_pos]
    if S == 1:  # no evictions: no sort needed
        _decode_steps_once(c, d, ndec, lens)
    else:
        _decode_steps(c, d)


def _fail_gap(c, d: np.ndarray, gap: np.ndarray) -> None:
    f = c.f
    e = d[gap][np.argmin(f.pos[d][gap])]
    p = f.pos[e]
    fail(
        "decodes in every decode iteration from prefill to completion",
        f"request {c.ids[f.row[e]]} skips or repeats a decode iteration on client {f.client[p]} "
        f"(iteration {f.iteration[p]})",
    )


def _decode_steps_once(c, d: np.ndarray, ndec: np.ndarray, lens: np.ndarray) -> None:
    """No evictions: request ``i``'s decodes are the decoding rows ``first_i .. first_i +
    ndec_i - 1`` of its client, each once: in range, and no (request, row) twice.

    Elements are in row order, so a row's ``after`` is repeated over its elements rather
    than gathered; the numbers fit int32 (half the memory traffic of int64).
    """
    f = c.f
    first = np.full(f.n, -(2**30), dtype=np.int32)
    first[c.first_key] = c.first_after
    step = np.repeat(c.after.astype(np.int32), lens)[d]
    r = f.row[d]
    step -= 1
    step -= first[r]
    nd = ndec.astype(np.int32)
    gap = (step < 0) | (step >= nd[r])
    if gap.any():
        _fail_gap(c, d, gap)
    # Each step is in range and a request has ndec_i decodes: they are its ndec_i distinct
    # rows unless one (request, slot) is counted twice. There are as many slots as
    # elements (sum ndec_i = |d|), so none is counted twice iff every slot is hit.
    slot = (np.cumsum(ndec) - ndec)[r] + step
    hit = np.zeros(len(d), dtype=bool)
    hit[slot] = True
    if not hit.all():
        _fail_gap(c, d, np.bincount(slot, minlength=len(d))[slot] != 1)
    del hit
    c.dec_groups = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    ctx = np.zeros(len(f.pos), dtype=np.int64)
    step += 1
    ctx[d] = c.prompt[r] + step  # the t-th decode reads s_i + t
    c.context = ctx


def _decode_steps(c, d: np.ndarray) -> None:
    """With evictions: per (request, segment), in time order (one sort)."""
    f, S, ukey = c.f, c.S, c.first_key
    dkey = segment_key(f.row[d], f.seg[d], S)
    o = np.argsort(dkey, kind="stable")
    d, dkey = d[o], dkey[o]
    gstart, step = groups(dkey)
    k = np.searchsorted(ukey, dkey)
    found = (k < len(ukey)) & (ukey[np.minimum(k, len(ukey) - 1)] == dkey)
    expect = np.where(found, c.first_after[np.minimum(k, len(ukey) - 1)], -(2**62))
    gap = (c.after[f.pos[d]] - 1) != expect + step
    if gap.any():
        _fail_gap(c, d, gap)
    c.dec_groups = (dkey[gstart], np.diff(np.r_[gstart, len(d)]))  # per (row, seg): count
    # The t-th decode of a request (over all its segments) reads s_i + t plus one token per
    # recompute before it (an eviction while prefilling is followed by none).
    r = f.row[d]
    _, rstep = groups(r)
    ctx = np.zeros(len(f.pos), dtype=np.int64)
    ctx[d] = c.prompt[r] + rstep + 1 + _recomputes_before(c, dkey)
    c.context = ctx


def _recomputes_before(c, dkey: np.ndarray) -> np.ndarray:
    """Per (request, segment) key: the evictions of a decoding request before the segment."""
    order = np.lexsort((c.ev["iteration"].to_numpy(), c.ev_row))
    rows, run = c.ev_row[order], c.ev_run[order].astype(np.int64)
    starts, rank = groups(rows)
    cum = np.cumsum(run)
    cum -= np.repeat(cum[starts] - run[starts], np.diff(np.r_[starts, len(rows)]))
    keys = segment_key(rows, rank + 1, c.S)  # segment m follows the request's m-th eviction
    k = np.searchsorted(keys, dkey)
    hit = (k < len(keys)) & (keys[np.minimum(k, len(keys) - 1)] == dkey)
    return np.where(hit, cum[np.minimum(k, len(keys) - 1)], 0)
