"""The request table of an experiment: a workload, an optional seeded sample, predictions."""

from __future__ import annotations

import pandas as pd

from hybridsched.workloads.catalogue import load_workload, workload_info
from hybridsched.workloads.predictors import apply_predictor, parse_predictor, predictor_spec
from hybridsched.workloads.requests import (
    load_gsm8k,
    prompt_texts,
    sample_requests,
    validate_requests,
)


def requests_for(
    requests: pd.DataFrame | str | None,
    num_requests: int | None = None,
    seed: int = 0,
    prediction_sigma: float = 0.0,
    prediction_seed: int = 0,
    workload_options: dict | None = None,
    predictor: str | None = None,
) -> pd.DataFrame:
    """The request table: a DataFrame, a workload name or file path, or GSM8K (``None``).

    A name or path goes through ``workloads.load_workload`` with ``workload_options``
    (window, rate scale, context check, ...; docs/model.md "Workloads"). Optionally a
    seeded sample of ``num_requests``, and the predicted lengths planners see:
    ``predictor`` (a ``predictors.parse_predictor`` spec, seeded by ``prediction_seed``)
    or, the older way, multiplicative lognormal error of ``prediction_sigma`` (=
    ``predictor="noisy:SIGMA"``; not both). Neither: the true lengths, the paper's setting
    (docs/model.md section 8, "Length predictors").
    """
    spec = predictor_spec(predictor, prediction_sigma)
    if requests is None and not workload_options:
        df = load_gsm8k()
    elif isinstance(requests, pd.DataFrame) and workload_options:
        # Shaped as a named workload would be (window, max_requests, a context rule that
        # drops); a table passed in is not refused for its context here (as before).
        opts = dict(workload_options)
        if opts.get("fit_context", "error") == "error":
            opts["max_context"] = None
        df = load_workload(requests, **opts)
    elif isinstance(requests, pd.DataFrame):
        df = validate_requests(requests)
    else:
        df = load_workload("gsm8k" if requests is None else requests, **(workload_options or {}))
    info = workload_info(df)
    chosen = parse_predictor(predictor) if predictor is not None else spec
    texts = prompt_texts(requests, df) if getattr(chosen, "reads_texts", False) else None
    if num_requests is not None and num_requests > len(df):
        raise ValueError(
            f"num_requests: {num_requests} requested, but the workload has {len(df)} requests"
        )
    if num_requests is not None and num_requests < len(df):
        df = sample_requests(df, num_requests, seed)
    if chosen is not None:
        df = apply_predictor(df, chosen, prediction_seed, texts)
    if info:
        df.attrs["workload"] = info
    return df
