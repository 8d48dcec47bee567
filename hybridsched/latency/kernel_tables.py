"""Measured kernel tables: one exported (system, serving backend, version) database, read.

``data/latency/kernels/<system>/<backend>/<version>/`` holds NVIDIA aiconfigurator-core's
measured kernel times, resampled through its own engine (``scripts/export_kernel_tables.py``;
provenance, schemas and licence in ``data/latency/kernels/README.md``): GEMMs, context and
generation attention, all-reduces and mixture-of-experts layers, in milliseconds per call.
``Curve`` and ``Grid`` interpolate what ``kernel_ops`` builds from them, on Python floats
(the engine's calls) or numpy arrays (the bounds').
"""

from __future__ import annotations

import bisect
import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from hybridsched.paths import data_dir

X_MAX = 262_144.0  # tokens: the token-major table's last knot (linear beyond)


@lru_cache(maxsize=32)
def kernel_tables(folder: str) -> KernelTables:
    """The tables of one ``<system>/<backend>/<version>`` folder (read once per process)."""
    return KernelTables(folder)


class KernelTables:
    """One exported (system, serving backend, backend version) database."""

    def __init__(self, folder: str):
        root = data_dir() / "latency" / "kernels"
        path = Path(folder) if Path(folder).is_absolute() else root / folder
        meta = path / "meta.json"
        if not meta.is_file():
            raise ValueError(f"kernel tables {folder!r}: no meta.json in {path.name}")
        self.path, self.folder = path, folder
        self.meta = json.loads(meta.read_text())
        gpu = self.meta["system_spec"]["gpu"]
        self.mem_bw = float(gpu["mem_bw"]) * float(gpu.get("mem_bw_empirical_scaling_factor", 1.0))
        self.mem_const = float(gpu.get("mem_empirical_constant_latency", 0.0))
        self._frames: dict[str, pd.DataFrame] = {}

    def frame(self, name: str) -> pd.DataFrame:
        if name not in self._frames:
            self._frames[name] = pd.read_parquet(self.path / f"{name}.parquet")
        return self._frames[name]

    def memop_ms(self, nbytes) -> np.ndarray:
        """An element-wise operator moving ``nbytes``: bandwidth-bound plus a launch constant."""
        return (np.asarray(nbytes, dtype=float) / self.mem_bw + self.mem_const) * 1e3

    def gemm_curve(self, quant: str, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(m, t_ms)`` of one GEMM shape: exact where exported, else from the generic grid."""
        sh = self.frame("gemm_shapes")
        sel = sh[(sh["quant"] == quant) & (sh["n"] == n) & (sh["k"] == k)].sort_values("m")
        if len(sel) and sel["t_ms"].notna().all():
            return sel["m"].to_numpy(float), sel["t_ms"].to_numpy(float)
        return self._gemm_grid(quant, n, k)

    def _gemm_grid(self, quant: str, n: int, k: int):
        d = self.frame("gemm")
        d = d[d["quant"] == quant]
        if d.empty:
            raise ValueError(f"kernel tables {self.folder}: no GEMM data for {quant}")
        ms, ns, ks = (np.sort(d[c].unique()).astype(float) for c in ("m", "n", "k"))
        cube = np.full((len(ms), len(ns), len(ks)), np.nan)
        cube[
            np.searchsorted(ms, d["m"]), np.searchsorted(ns, d["n"]), np.searchsorted(ks, d["k"])
        ] = d["t_ms"]
        i, wn = _bracket(ns, n)
        j, wk = _bracket(ks, k)
        logt, wsum = np.zeros(len(ms)), np.zeros(len(ms))
        for a, b, w in ((i, j, (1 - wn) * (1 - wk)), (i + 1, j, wn * (1 - wk)),
                        (i, j + 1, (1 - wn) * wk), (i + 1, j + 1, wn * wk)):  # fmt: skip
            col = cube[:, a, b]
            ok = np.isfinite(col)
            logt[ok] += w * np.log(col[ok])
            wsum[ok] += w
        t = np.exp(logt / np.where(wsum > 0, wsum, np.nan))
        t *= max(n / ns[-1], 1.0) * max(k / ks[-1], 1.0)  # beyond the grid: ~ n k
        if np.isnan(t).any():
            raise ValueError(f"kernel tables {self.folder}: GEMM n={n} k={k} outside the data")
        return ms, t

    def attention_grid(self, table: str, heads: float, **keys):
        """``(batch, length, t_ms)`` of an attention table at ``heads`` query heads per GPU."""
        d = self.frame(table)
        for c, v in keys.items():
            d = d[d[c] == v]
        if d.empty:
            raise ValueError(f"kernel tables {self.folder}: {table} has no data for {keys}")
        hs, bs, ss = (np.sort(d[c].unique()).astype(float) for c in ("heads", "b", "s"))
        cube = np.full((len(hs), len(bs), len(ss)), np.nan)
        cube[
            np.searchsorted(hs, d["heads"]),
            np.searchsorted(bs, d["b"]),
            np.searchsorted(ss, d["s"]),
        ] = d["t_ms"]
        if len(hs) == 1 or heads <= hs[0] or heads >= hs[-1]:
            e = 0 if len(hs) == 1 or heads <= hs[0] else -1
            return bs, ss, cube[e] * heads / hs[e]
        i = int(np.searchsorted(hs, heads, side="right") - 1)
        w = (heads - hs[i]) / (hs[i + 1] - hs[i])
        return bs, ss, cube[i] * (1 - w) + cube[i + 1] * w

    def allreduce_curve(self, tp: int):
        d = self.frame("allreduce")
        d = d[d["tp"] == tp].sort_values("elems")
        if d.empty:
            raise ValueError(f"kernel tables {self.folder}: no all-reduce data for tp={tp}")
        return d["elems"].to_numpy(float), d["t_ms"].to_numpy(float)

    def moe_curve(self, quant, hidden, inter, topk, experts, moe_tp, moe_ep):
        d = self.frame("moe")
        sel = d[(d["quant"] == quant) & (d["dist"] == "power_law_1.2") & (d["hidden"] == hidden)
                & (d["inter"] == inter) & (d["topk"] == topk) & (d["experts"] == experts)
                & (d["moe_tp"] == moe_tp) & (d["moe_ep"] == moe_ep)].sort_values("tokens")  # fmt: skip
        if sel.empty:
            raise ValueError(
                f"kernel tables {self.folder}: no MoE data for {experts} experts of {inter} "
                f"(top {topk}) at tp={moe_tp}, ep={moe_ep}"
            )
        return sel["tokens"].to_numpy(float), sel["t_ms"].to_numpy(float)


def _bracket(axis: np.ndarray, v: float) -> tuple[int, float]:
    """Index and log-weight of ``v`` between two axis values (clamped to the ends)."""
    i = int(np.clip(np.searchsorted(axis, v, side="right") - 1, 0, len(axis) - 2))
    a, b = math.log(axis[i]), math.log(axis[i + 1])
    return i, (math.log(v) - a) / (b - a)


class Curve:
    """Piecewise linear in ``x``, linear beyond both ends; scalars (bisect) or arrays."""

    __slots__ = ("xs", "ys", "ax", "ay", "n")

    def __init__(self, xs, ys):
        self.ax, self.ay = np.asarray(xs, float), np.asarray(ys, float)
        self.xs, self.ys, self.n = self.ax.tolist(), self.ay.tolist(), len(self.ax)

    def at(self, x: float) -> float:
        """The value at one Python float (the engine's calls)."""
        xs, ys = self.xs, self.ys
        i = min(max(bisect.bisect_right(xs, x) - 1, 0), self.n - 2)
        return ys[i] + (ys[i + 1] - ys[i]) * (x - xs[i]) / (xs[i + 1] - xs[i])

    def __call__(self, x):
        if type(x) is float:
            return self.at(x)
        x = np.asarray(x, float)
        i = np.clip(np.searchsorted(self.ax, x, side="right") - 1, 0, self.n - 2)
        x0, y0, y1 = self.ax[i], self.ay[i], self.ay[i + 1]
        return y0 + (y1 - y0) * (x - x0) / (self.ax[i + 1] - x0)


class Grid:
    """``f(b, s)``: linear in ``b``, power law in ``s`` between knots; scalars or arrays."""

    def __init__(self, bs, ss, grid):
        self.ab, self.als = np.asarray(bs, float), np.log(np.asarray(ss, float))
        self.alf = np.log(np.maximum(np.asarray(grid, float), 1e-12))
        self.bs, self.ls, self.lf = self.ab.tolist(), self.als.tolist(), self.alf.tolist()
        self.nb, self.ns = len(self.bs), len(self.ls)

    def __call__(self, b, s):
        if type(b) is float and type(s) is float:
            return self.at(b, s)
        b, ls = np.asarray(b, float), np.log(np.maximum(np.asarray(s, float), 1e-9))
        i = np.clip(np.searchsorted(self.ab, b, side="right") - 1, 0, self.nb - 2)
        j = np.clip(np.searchsorted(self.als, ls, side="right") - 1, 0, self.ns - 2)
        wb = (b - self.ab[i]) / (self.ab[i + 1] - self.ab[i])
        ws = (ls - self.als[j]) / (self.als[j + 1] - self.als[j])
        f0 = np.exp(self.alf[i, j] + (self.alf[i, j + 1] - self.alf[i, j]) * ws)
        f1 = np.exp(self.alf[i + 1, j] + (self.alf[i + 1, j + 1] - self.alf[i + 1, j]) * ws)
        return f0 + (f1 - f0) * wb

    def at(self, b: float, s: float) -> float:
        """The value at one pair of Python floats (the engine's calls)."""
        bs, ls = self.bs, self.ls
        i = min(max(bisect.bisect_right(bs, b) - 1, 0), self.nb - 2)
        x = math.log(s) if s > 0 else -20.7
        j = min(max(bisect.bisect_right(ls, x) - 1, 0), self.ns - 2)
        wb = (b - bs[i]) / (bs[i + 1] - bs[i])
        ws = (x - ls[j]) / (ls[j + 1] - ls[j])
        r0, r1 = self.lf[i], self.lf[i + 1]
        f0 = math.exp(r0[j] + (r0[j + 1] - r0[j]) * ws)
        f1 = math.exp(r1[j] + (r1[j + 1] - r1[j]) * ws)
        return f0 + (f1 - f0) * wb

    def lower_envelope_in_s(self) -> Curve:
        """``min_s f(b, s)`` at each tabulated ``b`` (linear between): a floor over lengths."""
        return Curve(self.ab, np.exp(self.alf).min(axis=1))
