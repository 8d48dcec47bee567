"""The trained output-length model: a linear regression from the prompt to the output length.

Features (``text_features``) come from the prompt's text and its token count only: no
tokenizer or language model is needed. The point prediction is an ordinary least-squares
fit (scikit-learn ``LinearRegression``) of the output length on those features; the
interval multiplies the point prediction by the 10% and 90% quantiles of the training
ratios ``o / ô``, so it has 80% coverage on data like the training set.

Training data: the GSM8K *train* split (7,473 problems), target ``reference_answer_tokens``
(the reference solution's length, the only output length the train split has). The
workbook's true lengths are the 175B model's solutions on the *test* split, which are kept
for evaluation only (docs/model.md, "Length predictors"). The fit is deterministic (a
least-squares solve, no random state). Its coefficients are shipped in
``data/length_model.json``, made by ``python -m hybridsched.length_model``, so a run reads
them instead of fitting (tests check they equal a fresh fit); scikit-learn is needed only
to fit.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from hybridsched.paths import data_dir
from hybridsched.workloads.requests import GSM8K_CSV, gsm8k_questions

# (feature, regular expression counted in the text); ``(?i)`` is case-insensitive.
_COUNTS = {
    "numbers": r"\d+(?:[.,]\d+)*",
    "number_words": r"(?i)\b(?:half|twice|double|triple|thrice|quarter|third|one|two|three|four"
    r"|five|six|seven|eight|nine|ten|eleven|twelve|dozen|hundred|thousand)\b",
    "sentences": r"[.!?](?:\s|$)",
    "question_marks": r"\?",
    "percents": r"(?i)%|\bpercent",
    "dollars": r"\$",
    "commas": r",",
    "fractions": r"\d+/\d+",
    "decimals": r"\d\.\d",
    "rate_words": r"(?i)\b(?:each|per|every)\b",
}
FEATURES = [
    "prompt_tokens",
    "question_chars",
    "question_words",
    *_COUNTS,
    "longest_number_digits",
]
INTERVAL_QUANTILES = (0.1, 0.9)  # the interval [lo, hi] is nominally 80%
TRAIN_SPLIT, TRAIN_TARGET = "train", "reference_answer_tokens"
SHIPPED_JSON = "length_model.json"


def text_features(texts: pd.Series, prompt_tokens: np.ndarray) -> pd.DataFrame:
    """One row of ``FEATURES`` per prompt: its token count and counts read off its text."""
    texts = pd.Series(texts, dtype=str).reset_index(drop=True)
    out = pd.DataFrame(
        {
            "prompt_tokens": np.asarray(prompt_tokens, dtype=float),
            "question_chars": texts.str.len().astype(float),
            "question_words": texts.str.split().str.len().astype(float),
        }
    )
    for name, pattern in _COUNTS.items():
        out[name] = texts.str.count(pattern).astype(float)
    digits = texts.str.findall(r"\d+").map(lambda ns: max((len(n) for n in ns), default=0))
    out["longest_number_digits"] = digits.astype(float)
    return out[FEATURES]


@dataclass(frozen=True)
class LengthModel:
    """A fitted model: ``ô = intercept + coef · features``, interval ``ô · ratio_lo .. ô · ratio_hi``."""

    intercept: float
    coef: tuple[float, ...]
    ratio_lo: float
    ratio_hi: float
    train_rows: int

    def point(self, features: pd.DataFrame) -> np.ndarray:
        """The point prediction in tokens (real-valued, at least 1)."""
        x = features[FEATURES].to_numpy(float)
        return np.maximum(1.0, self.intercept + x @ np.asarray(self.coef))

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Integer ``point``, ``lo`` and ``hi`` tokens with ``1 <= lo <= point <= hi``."""
        p = self.point(features)
        point = np.maximum(1, np.round(p)).astype(np.int64)
        lo = np.clip(np.floor(p * self.ratio_lo), 1, point).astype(np.int64)
        hi = np.maximum(np.ceil(p * self.ratio_hi), point).astype(np.int64)
        return pd.DataFrame({"point": point, "lo": lo, "hi": hi})

    def to_dict(self) -> dict:
        return {
            "features": FEATURES,
            "intercept": self.intercept,
            "coef": dict(zip(FEATURES, self.coef, strict=True)),
            "ratio_lo": self.ratio_lo,
            "ratio_hi": self.ratio_hi,
            "interval_quantiles": INTERVAL_QUANTILES,
            "train": f"gsm8k-{TRAIN_SPLIT}:{TRAIN_TARGET}",
            "train_rows": self.train_rows,
        }

    @classmethod
    def from_dict(cls, d: dict) -> LengthModel:
        if list(d["coef"]) != FEATURES:
            raise ValueError(f"length model: features {list(d['coef'])} != {FEATURES}")
        coef = tuple(float(d["coef"][f]) for f in FEATURES)
        return cls(
            float(d["intercept"]),
            coef,
            float(d["ratio_lo"]),
            float(d["ratio_hi"]),
            int(d["train_rows"]),
        )


def training_table() -> tuple[pd.DataFrame, np.ndarray]:
    """The features and targets of the GSM8K train split."""
    tok = pd.read_csv(data_dir() / GSM8K_CSV)
    tok = tok[tok["split"] == TRAIN_SPLIT].sort_values("index")
    texts = gsm8k_questions(TRAIN_SPLIT).loc[tok["index"].to_numpy()]
    return text_features(texts, tok["prompt_tokens"].to_numpy()), tok[TRAIN_TARGET].to_numpy(float)


def fit_length_model(features: pd.DataFrame, target: np.ndarray) -> LengthModel:
    """Least squares on ``features``; interval ratios from the training residuals."""
    from sklearn.linear_model import LinearRegression

    reg = LinearRegression().fit(features[FEATURES].to_numpy(float), target)
    model = LengthModel(
        float(reg.intercept_), tuple(float(c) for c in reg.coef_), 1.0, 1.0, len(target)
    )
    ratios = target / model.point(features)
    lo, hi = np.quantile(ratios, INTERVAL_QUANTILES)
    return LengthModel(model.intercept, model.coef, float(lo), float(hi), len(target))


def fresh_length_model() -> LengthModel:
    """The model fitted now on the GSM8K train split (needs scikit-learn, about a second)."""
    return fit_length_model(*training_table())


@lru_cache(maxsize=1)
def shipped_length_model() -> LengthModel:
    """The model of ``data/length_model.json`` (read once per process)."""
    return LengthModel.from_dict(json.loads((data_dir() / SHIPPED_JSON).read_text()))


def main(argv: list[str] | None = None) -> None:
    """Fit on the GSM8K train split and write the coefficients to --out (to refresh the shipped
    model: --out data/length_model.json)."""
    p = argparse.ArgumentParser(
        prog="python -m hybridsched.workloads.length_model", description=main.__doc__
    )
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = p.parse_args(argv)
    args.out.write_text(json.dumps(fresh_length_model().to_dict(), indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":  # pragma: no cover
    main()
