"""Output-length predictors: what planners see of the true output lengths ``o_i``.

A predictor maps a request table (and, if it reads text, the prompts' texts) to a point
prediction ``ô_i`` and an interval ``[lo_i, hi_i]`` around it, all integers with
``1 <= lo_i <= ô_i <= hi_i``. ``apply_predictor`` writes them into the request table as
``predicted_output_tokens``, ``predicted_lo_tokens`` and ``predicted_hi_tokens``;
planners read only those columns, the simulator runs the true ``output_tokens``.

==================  =============================================================  =========
spec                point prediction ``ô_i``                                       interval
==================  =============================================================  =========
``oracle``          ``o_i`` (the paper's setting, the default)                     ``[o_i, o_i]``
``noisy:SIGMA``     ``round(o_i · exp(ε_i))``, ``ε_i ~ N(0, SIGMA²)``, seeded      80%: ``ô_i · exp(∓1.2816 SIGMA)``
``bucket``          the midpoint of the bucket ``o_i`` falls in (edges 64, 128,    the bucket
                    ..., 512 tokens; ``bucket:E1,E2,...`` for others)
``trained``         a linear regression on prompt features, fitted on the GSM8K    80%, from the
                    train split (``hybridsched.length_model``)                      training residuals
==================  =============================================================  =========

``bucket`` is S3-style (Jin et al., 2023: a classifier predicts a length bucket, memory is
reserved for its upper edge), idealized to a classifier that is always right: buckets are
``[1, E1), [E1, E2), ..., [Ek, ∞)``; the open top bucket is predicted as ``[Ek, Ek]``.
``noisy:SIGMA`` gives exactly ``data.with_predictions(requests, SIGMA, seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from hybridsched.workloads.length_model import shipped_length_model, text_features
from hybridsched.workloads.requests import (
    gsm8k_questions,
    load_gsm8k,
    validate_requests,
    with_predictions,
)

PREDICTION_COLUMNS = ["predicted_output_tokens", "predicted_lo_tokens", "predicted_hi_tokens"]
KNOWN = ("oracle", "noisy:SIGMA", "bucket", "bucket:EDGES", "trained")
DEFAULT_BUCKET_EDGES = (64, 128, 192, 256, 320, 384, 448, 512)
NOISY_INTERVAL_Z = NormalDist().inv_cdf(0.9)  # the noisy predictor's interval is nominally 80%


@runtime_checkable
class Predictor(Protocol):
    """``predict`` returns one row per request (same order) with ``PREDICTION_COLUMNS``.

    ``reads_texts``: ``predict`` needs ``texts``, the prompts' texts by ``request_id``.
    """

    name: str
    reads_texts: bool

    def predict(
        self, requests: pd.DataFrame, seed: int = 0, texts: pd.Series | None = None
    ) -> pd.DataFrame: ...


def _number(x: float) -> str:
    """``x`` in the shortest form that reads back exactly (0.5, 2, 1e-05 -> 0.00001)."""
    return np.format_float_positional(float(x), trim="-")


def _frame(point, lo, hi) -> pd.DataFrame:
    values = (np.asarray(v, dtype=np.int64) for v in (point, lo, hi))
    return pd.DataFrame(dict(zip(PREDICTION_COLUMNS, values, strict=True)))


@dataclass(frozen=True)
class Oracle:
    """The true lengths (planners know ``o_i``)."""

    name: str = "oracle"
    reads_texts: bool = False

    def predict(self, requests, seed=0, texts=None):
        o = requests["output_tokens"].to_numpy()
        return _frame(o, o, o)


@dataclass(frozen=True)
class Noisy:
    """Multiplicative lognormal error of ``sigma`` (today's ``with_predictions``)."""

    sigma: float
    reads_texts: bool = False

    @property
    def name(self) -> str:
        return f"noisy:{_number(self.sigma)}"

    def predict(self, requests, seed=0, texts=None):
        point = with_predictions(requests, self.sigma, seed)["predicted_output_tokens"].to_numpy()
        spread = np.exp(NOISY_INTERVAL_Z * self.sigma)
        lo = np.clip(np.floor(point / spread), 1, point)
        hi = np.maximum(np.ceil(point * spread), point)
        return _frame(point, lo, hi)


@dataclass(frozen=True)
class Bucket:
    """The length bucket ``o_i`` falls in: point at its midpoint, interval the bucket."""

    edges: tuple[int, ...] = DEFAULT_BUCKET_EDGES
    reads_texts: bool = False

    @property
    def name(self) -> str:
        return (
            "bucket"
            if self.edges == DEFAULT_BUCKET_EDGES
            else "bucket:" + ",".join(map(str, self.edges))
        )

    def predict(self, requests, seed=0, texts=None):
        o = requests["output_tokens"].to_numpy()
        lows = np.array((1, *self.edges), dtype=np.int64)
        highs = np.array((*(e - 1 for e in self.edges), self.edges[-1]), dtype=np.int64)
        k = np.searchsorted(np.asarray(self.edges), o, side="right")
        lo, hi = lows[k], highs[k]
        return _frame((lo + hi + 1) // 2, lo, hi)


@dataclass(frozen=True)
class Trained:
    """The linear regression of ``hybridsched.length_model``; needs the prompts' texts."""

    name: str = "trained"
    reads_texts: bool = True

    def predict(self, requests, seed=0, texts=None):
        ids = requests["request_id"]
        if texts is None:
            raise ValueError(
                "predictor 'trained' needs the prompts' texts: use the shipped GSM8K workload "
                "or give the request table a prompt_text column"
            )
        missing = ~ids.isin(texts.index)
        if missing.any():
            pos = int(np.flatnonzero(missing.to_numpy())[0])
            raise ValueError(
                f"predictor 'trained': request {ids.iloc[pos]} (row {pos}) has no prompt text"
            )
        feats = text_features(texts.loc[ids.to_numpy()], requests["prompt_tokens"].to_numpy())
        p = shipped_length_model().predict(feats)
        return _frame(p["point"], p["lo"], p["hi"])


def _bad(spec, why: str) -> ValueError:
    return ValueError(f"predictor {spec!r}: {why}; known: {', '.join(KNOWN)}")


def parse_predictor(spec: str | Predictor) -> Predictor:
    """``oracle`` | ``noisy:SIGMA`` | ``bucket`` | ``bucket:E1,E2,...`` | ``trained``."""
    if not isinstance(spec, str) and isinstance(spec, Predictor):
        return spec
    if not isinstance(spec, str):
        raise _bad(spec, "expected a string")
    name, _, arg = spec.strip().partition(":")
    if name in ("oracle", "trained") and not arg:
        return Oracle() if name == "oracle" else Trained()
    if name == "noisy":
        try:
            sigma = float(arg)
        except ValueError:
            raise _bad(spec, f"SIGMA must be a number, got {arg!r}") from None
        if not (np.isfinite(sigma) and sigma >= 0):
            raise _bad(spec, f"SIGMA must be a finite number >= 0, got {arg!r}")
        return Noisy(sigma)
    if name == "bucket":
        if not arg:
            return Bucket()
        try:
            edges = tuple(int(e) for e in arg.split(","))
        except ValueError:
            raise _bad(spec, f"EDGES must be comma-separated integers, got {arg!r}") from None
        if edges[0] < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise _bad(spec, f"EDGES must be increasing integers >= 2, got {arg!r}")
        return Bucket(edges)
    raise _bad(spec, "unknown predictor")


def predictor_spec(predictor: str | None, prediction_sigma: float | None) -> str | None:
    """One spec from the two ways of asking: ``prediction_sigma S`` means ``noisy:S``.

    None when neither is given (or sigma is 0 with no predictor): planners see the truth.
    """
    if predictor is not None and prediction_sigma:
        raise ValueError(
            f"give either predictor ({predictor!r}) or prediction_sigma ({prediction_sigma!r}), not both"
        )
    if predictor is not None:
        return parse_predictor(predictor).name
    return f"noisy:{_number(prediction_sigma)}" if prediction_sigma else None


def apply_predictor(
    requests: pd.DataFrame,
    spec: str | Predictor,
    seed: int = 0,
    texts: pd.Series | None = None,
) -> pd.DataFrame:
    """The validated request table with the predictor's ``PREDICTION_COLUMNS``.

    ``seed`` seeds random predictors; ``texts`` (indexed by ``request_id``) feeds those
    that read prompts.
    """
    predictor = parse_predictor(spec)
    requests = validate_requests(requests)
    pred = predictor.predict(requests, seed=seed, texts=texts)
    if list(pred.columns) != PREDICTION_COLUMNS or len(pred) != len(requests):
        raise ValueError(
            f"predictor {predictor.name}: expected {len(requests)} rows of {PREDICTION_COLUMNS}, "
            f"got {len(pred)} rows of {list(pred.columns)}"
        )
    out = requests.drop(columns=PREDICTION_COLUMNS, errors="ignore")
    return validate_requests(pd.concat([out, pred.set_axis(out.index)], axis=1))


def evaluate_predictor(spec: str | Predictor, seed: int = 0, split: str = "test") -> dict:
    """A predictor's errors on the GSM8K ``split`` (true lengths: the 175B model's outputs).

    ``mae_tokens`` mean absolute error, ``mape`` mean absolute percentage error,
    ``spearman`` rank correlation with the truth (what a longest-first sort depends on),
    ``bias_tokens`` mean of ``ô - o``, ``coverage`` share of true lengths inside
    ``[lo, hi]`` and ``mean_width_tokens`` its mean ``hi - lo``.
    """
    req = load_gsm8k(split)
    pred = apply_predictor(req, spec, seed, texts=gsm8k_questions(split))
    o = pred["output_tokens"].to_numpy(float)
    p = pred["predicted_output_tokens"].to_numpy(float)
    lo, hi = pred["predicted_lo_tokens"].to_numpy(), pred["predicted_hi_tokens"].to_numpy()
    return {
        "predictor": parse_predictor(spec).name,
        "seed": seed,
        "split": split,
        "num_requests": len(pred),
        "mae_tokens": float(np.mean(np.abs(p - o))),
        "mape": float(np.mean(np.abs(p - o) / o)),
        "spearman": float(pd.Series(p).corr(pd.Series(o), method="spearman")),
        "bias_tokens": float(np.mean(p - o)),
        "coverage": float(np.mean((lo <= o) & (o <= hi))),
        "mean_width_tokens": float(np.mean(hi - lo)),
    }
