"""The files a command writes, all at the end, each by atomic rename (``Outputs``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "value"):
        return o.value
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class Outputs:
    """Collects output files and writes them all at the end, each by atomic rename."""

    def __init__(self, out: str | Path):
        self.dir = Path(out)
        self.files: dict[str, object] = {}

    def add(self, name: str, content) -> None:
        self.files[name] = content

    def commit(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = []
        for name, content in self.files.items():
            path = self.dir / (name + ".partial")
            if isinstance(content, pd.DataFrame):
                if name.startswith("trace"):
                    from hybridsched.trace import write_trace

                    write_trace(content, path)
                else:
                    content.to_csv(path, index=False)
            else:
                path.write_text(json.dumps(content, indent=2, default=_json_default) + "\n")
            tmp.append((path, self.dir / name))
        for src, dst in tmp:
            os.replace(src, dst)
        for _, dst in tmp:
            print(dst)
