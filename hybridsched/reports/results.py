"""The result files a notebook writes: ``results_dir``, ``write_results``, JSON-safe values,
the commit that produced them (``repo_commit``) and the one-line claim they carry
(``claim_from``)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import math
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hybridsched.paths import repo_root


def repo_commit(root: Path | None = None) -> str:
    """``git rev-parse HEAD`` of the checkout, or ``"unknown"`` (no git, not a checkout).

    Read-only on purpose (no ``git status``, which may take the index lock): uncommitted
    changes are not flagged.
    """
    root = root or repo_root()
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() if head.returncode == 0 and head.stdout.strip() else "unknown"


def results_dir(out_dir: str | os.PathLike) -> Path:
    """The folder a notebook writes its results to, created if missing.

    A relative ``out_dir`` is taken from the repository root, so a notebook writes to the
    same place whatever its working directory (papermill runs it in ``notebooks/``).
    """
    p = Path(out_dir).expanduser()
    p = p if p.is_absolute() else repo_root() / p
    p.mkdir(parents=True, exist_ok=True)
    return p


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays, enums, paths, dataclasses, DataFrames;
    NaN and infinities become None (JSON has no such numbers)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, (list, tuple, set, np.ndarray, pd.Series)):
        return [to_jsonable(v) for v in (obj.tolist() if hasattr(obj, "tolist") else obj)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_results(
    out_dir: str | os.PathLike,
    name: str,
    payload: Mapping,
    tables: Mapping[str, pd.DataFrame] | None = None,
    parameters: Mapping | None = None,
    figures: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``<name>.json`` (payload + notebook parameters + commit), one CSV per table
    and one PNG per matplotlib figure (the README shows one of them).

    The notebooks' last cell calls this with their result objects' ``to_json()``, which
    carry the run parameters, seeds and package versions.

    Returns
    -------
    The paths written, JSON first.
    """
    out = results_dir(out_dir)
    doc = {
        "name": name,
        "written_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "commit": repo_commit(),
        "notebook_parameters": dict(parameters or {}),
        **payload,
    }
    paths = [out / f"{name}.json"]
    write_atomic(paths[0], json.dumps(to_jsonable(doc), indent=2))
    for key, df in (tables or {}).items():
        p = out / f"{key}.csv"
        df.to_csv(p, index=not isinstance(df.index, pd.RangeIndex))
        paths.append(p)
    for key, fig in (figures or {}).items():
        p = out / f"{key}.png"
        fig.savefig(p, dpi=110, bbox_inches="tight")
        paths.append(p)
    return paths


# A bold label opening a generated paragraph: "**Result.** ".
_LABEL = re.compile(r"^\*\*[^*]+\*\*\s*")
# A sentence ends at ".", "!" or "?" before white space and a capital, a digit or Markdown
# markup; so decimals ("1.5"), versions ("llama-3.1-8b") and ratios ("0.25x") do not.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`*(])")


def claim_from(markdown: str) -> str:
    """The one-line claim a notebook writes into its results JSON (the ``claim`` key the
    reports' index shows): the first sentence of the generated Markdown ``markdown`` (its
    "**Result.**" paragraph), as plain text.

    The paragraph's leading bold label is dropped, code and emphasis marks are removed and
    white space is collapsed. Raises ``ValueError`` when no text is left.
    """
    paragraph = markdown.strip().split("\n\n", 1)[0]
    first = _SENTENCE_END.split(_LABEL.sub("", paragraph, count=1), maxsplit=1)[0]
    claim = " ".join(first.replace("**", "").replace("`", "").split())
    if not claim:
        raise ValueError(f"no sentence to claim in {markdown!r}")
    return claim
