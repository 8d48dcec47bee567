"""Report tables for reading: pandas Stylers with units, integers, percentages and blanks.

The notebooks compute their tables with ``report`` and ``sweep``; these helpers only
change how a table is shown (its CSV file keeps the raw numbers):

- ``show(df)``: one row per item, columns formatted by name (``labels.LABELS``:
  ``utilization`` as ``87.3%``, ``num_prefill_iterations`` as ``1,137``), headers in
  words, the index folded into columns, NaN blank;
- ``show_metrics(df)``: one row per metric (``paper_vs_ours``, ``study_vs_paper``), each
  row formatted by the unit in its label (``(%)``, ``(pp)``, ``(s)``, counts); a paper
  cell with no number reads "not reported";
- ``show_wide(df, keys)``: a wide table (the study summary) transposed, one column per
  ``keys`` combination, so it fits the page;
- ``show_params(df)``: one row per profile parameter, each in its unit (GB/s, µs/ms/s,
  percentages of peak);
- ``single_case_table(results)``: the policy table with, for the chunked-prefill rows,
  their own (mixed-iteration) bound and gap beside the paper-model ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from hybridsched.reports.labels import fmt, kind, label

NOT_REPORTED = "not reported"


def _integral(col: pd.Series) -> bool:
    vals = pd.to_numeric(col, errors="coerce").dropna()
    return (
        pd.api.types.is_numeric_dtype(col)
        and not pd.api.types.is_bool_dtype(col)
        and len(vals) > 0
        and bool(np.all(np.isclose(vals, np.round(vals))))
    )


def column_kind(name: str, col: pd.Series) -> str | None:
    """How a column's values print: its ``labels`` kind, else a count when every value is an
    integer, two decimals for other numbers, else None (each value by its own type)."""
    how = kind(name)
    if how is None and _integral(col):
        return "count"
    if how is None and pd.api.types.is_float_dtype(col):
        return "number"
    if how == "seconds":  # one number of decimals per column: 4 below a second, else 2
        vals = pd.to_numeric(col, errors="coerce").abs()
        return "seconds-fine" if vals.max() < 1 else "seconds-coarse"
    return how


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    """The index as leading columns, unless it is a plain unnamed 0..n-1 range."""
    if not isinstance(df.index, pd.RangeIndex) or df.index.name is not None:
        df = df.reset_index()
    return df


def _header(col: Any) -> tuple[str, str]:
    """(label, name whose kind applies) of a column; a pivot's ``(value, key)`` column reads
    as ``"<label of value>, <key>"``."""
    if isinstance(col, tuple):
        head, rest = str(col[0]), [str(c) for c in col[1:] if str(c)]
        return ", ".join([label(head), *rest]), head
    return label(str(col)), str(col)


def show(
    df: pd.DataFrame,
    caption: str | None = None,
    formats: Mapping[str, str] | None = None,
    digits: int = 1,
) -> Any:
    """``df`` as a Styler for reading (see the module docstring).

    ``formats`` overrides the kind of named columns (``{"gap": "fraction"}``);
    ``digits`` is the number of decimals of percentages.
    """
    df = _flat(df)
    heads = [_header(c) for c in df.columns]
    kinds = [
        (formats or {}).get(name, column_kind(name, df.iloc[:, k]))
        for k, (_, name) in enumerate(heads)
    ]
    shown = pd.DataFrame(
        {k: [_cell(v, kinds[k], digits) for v in df.iloc[:, k]] for k in range(len(heads))}
    )
    shown.columns = _unique([h for h, _ in heads])
    styler = shown.style.hide(axis="index")
    text = [shown.columns[k] for k in range(len(heads)) if _is_text(df.iloc[:, k], kinds[k])]
    if text:  # left-aligned, and long text (an error message) wraps inside the page
        wrap = {"text-align": "left", "white-space": "normal", "overflow-wrap": "break-word"}
        styler = styler.set_properties(subset=text, **wrap)
    return styler.set_caption(caption) if caption else styler


def _is_text(col: pd.Series, how: str | None) -> bool:
    return how == "text" or not (
        pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)
    )


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def _cell(v: Any, how: str | None, digits: int = 1) -> str:
    return fmt(v, how, digits) if _is_num(v) else _txt(v)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _txt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


def metric_kind(metric: str) -> str | None:
    """The unit a metric row's label states: ``(%)`` percent, ``(pp)``, ``(s)``, a count."""
    m = str(metric)
    if m.endswith("(%)"):
        return "percent"
    if m.endswith("(pp)"):
        return "pp"
    if m.endswith("(s)"):
        return "seconds"
    if re.search(r"\bcases\b|iterations|requests", m):
        return "count"
    return None


def _metric_cell(v: Any, how: str | None, blank: str) -> str:
    if not _is_num(v) or not math.isfinite(float(v)):
        return blank if (v is None or (_is_num(v) and not math.isfinite(float(v)))) else _txt(v)
    return fmt(v, how, 1) if how else f"{float(v):,.2f}"


def metrics_frame(df: pd.DataFrame, paper: str = "paper") -> pd.DataFrame:
    """A metric-by-row table as strings: each row in its unit, the paper's missing cells
    "not reported", other missing cells blank. The row labels become a ``metric`` column."""
    out = pd.DataFrame(index=df.index)
    for c in df.columns:
        blank = NOT_REPORTED if c == paper else ""
        out[c] = [_metric_cell(v, metric_kind(i), blank) for i, v in df[c].items()]
    return out.rename_axis(df.index.name or "metric").reset_index()


def show_metrics(df: pd.DataFrame, caption: str | None = None, paper: str = "paper") -> Any:
    """A metric-by-row table (``report.paper_vs_ours``) as a Styler (see ``metrics_frame``)."""
    frame = metrics_frame(df, paper)
    styler = frame.style.hide(axis="index")
    styler = styler.set_properties(subset=[frame.columns[0]], **{"text-align": "left"})
    styler = styler.set_properties(subset=[paper], **{"color": "#555"}) if paper in df else styler
    return styler.set_caption(caption) if caption else styler


def param_kind(name: str) -> str | None:
    """How a profile parameter's values read, by its name: a bandwidth in GB/s, a time
    (``..._s``) in s, ms or µs, an efficiency or share (``mfu``, ``mbu``, ``..._share``)
    as a percentage; else the column's ``labels`` kind, else None (a plain number)."""
    n = str(name)
    if "bandwidth" in n:
        return "bandwidth"
    if n.endswith("_s"):
        return "duration"
    if n in ("mfu", "mbu") or n.endswith("_share") or n.endswith(("_mfu", "_mbu")):
        return "fraction"
    return kind(n)


def show_params(df: pd.DataFrame, caption: str | None = None, first: str = "parameter") -> Any:
    """A parameter-by-row table (a profile's constants, one column per profile) as a
    Styler: each row formatted in its unit (``param_kind``: ``300.0 GB/s``, ``50 µs``,
    ``9.09 ms``, ``69.1%``), the row names in a leading ``first`` column."""
    rows = [
        [str(name), *[_param_cell(v, param_kind(name)) for v in df.loc[name].tolist()]]
        for name in df.index
    ]
    out = pd.DataFrame(rows, columns=[first, *map(str, df.columns)])
    styler = out.style.hide(axis="index").set_properties(subset=[first], **{"text-align": "left"})
    return styler.set_caption(caption) if caption else styler


def _param_cell(v: Any, how: str | None) -> str:
    if not _is_num(v):
        return _txt(v)
    return fmt(v, how) if how else fmt(v, None)


def show_wide(df: pd.DataFrame, keys: Iterable[str], caption: str | None = None) -> Any:
    """A wide table transposed: one column per ``keys`` combination (``"2x tp4 / hybrid"``),
    one row per other column, each row formatted by its column's kind."""
    keys = list(keys)
    rows = []
    for c in [c for c in df.columns if c not in keys]:
        how = column_kind(str(c), df[c])
        rows.append([label(str(c))] + [_cell(v, how) for v in df[c].tolist()])
    names = [" / ".join(str(v) for v in r) for r in df[keys].itertuples(index=False)]
    out = pd.DataFrame(rows, columns=["", *names])
    styler = out.style.hide(axis="index")
    return styler.set_caption(caption) if caption else styler


SINGLE_CASE_SHOWN = [
    "config",
    "policy",
    "makespan_s",
    "utilization",
    "mean_batch",
    "num_prefill_iterations",
    "prefill_share",
    "imbalance",
]


def single_case_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """One row per config and policy: the main metrics, the gap to the paper-model ``T_LB``
    (prefill or decode per iteration) and the share of the baseline's gap it closes, and
    for policies measured against another bound (chunked prefill: the mixed-iteration
    ``T_LB``; on-demand admission: the bound without the reservation share) what that bound
    also covers (``tables.bound_model``), its value and the gap and share against it,
    blank for the others.

    ``results`` maps a config name to a ``SingleCaseResult`` (``.table``, ``.bound``).
    """
    from hybridsched.reports.tables import with_bound_models

    parts = []
    for name, r in results.items():
        t = r.table.copy()
        lb = float(r.bound.lower_bound_s)
        base = float(t.loc[t["policy"] == "baseline", "makespan_s"].iloc[0])
        own = t["lower_bound_s"].astype(float)
        other = ~np.isclose(own, lb)
        part = t.assign(config=name)
        part["paper-model T_LB (s)"] = lb
        part["gap to paper-model T_LB"] = (t["makespan_s"] - lb) / lb
        part["share of the gap closed (paper model)"] = (
            (base - t["makespan_s"]) / (base - lb) if base > lb else np.nan
        )
        models = with_bound_models(t, getattr(r.bound, "admission", "reservation"))
        part["own T_LB: also covers"] = models["bound_model"].where(other)
        part["own T_LB (s)"] = own.where(other)
        part["gap to own T_LB"] = t["gap_to_lb"].where(other)
        part["share closed (own T_LB)"] = t["gap_closed"].where(other)
        parts.append(part)
    df = pd.concat(parts, ignore_index=True)
    extra = [c for c in df.columns if "T_LB" in c or "closed (" in c or "gap closed" in c]
    return df[[*SINGLE_CASE_SHOWN, *[c for c in extra if c not in SINGLE_CASE_SHOWN]]]


SINGLE_CASE_FORMATS = {
    "paper-model T_LB (s)": "seconds",
    "gap to paper-model T_LB": "fraction",
    "share of the gap closed (paper model)": "fraction",
    "own T_LB: also covers": "text",
    "own T_LB (s)": "seconds",
    "gap to own T_LB": "fraction",
    "share closed (own T_LB)": "fraction",
}
