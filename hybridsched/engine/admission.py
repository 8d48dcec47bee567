"""Admission modes: when a client may start a request, and how KV memory is counted.

=================  =======================================================================
``reservation``    the paper's rule (docs/model.md 7.4): a request reserves ``s_i + ô_i``
                   KV tokens at admission; the reserved total stays ``<= M``. A request
                   that outgrows its reservation (``o_i > ô_i``) is an error
                   (``KVOverflowError``): the paper's model has no preemption.
``on-demand``      vLLM's rule: admit while the KV held plus the prompt (plus one token)
                   fits under ``M - w``, ``w = ceil(watermark * M)``; KV grows by one token
                   per decode step; when the next step would not fit, preempt by
                   recompute the most recently admitted running request, until it fits
                   (docs/model.md section 11).
=================  =======================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hybridsched.instance import ADMISSIONS


@dataclass(frozen=True)
class Admission:
    """An admission mode: ``name`` and, for ``on-demand``, the watermark share of ``M``."""

    name: str = "reservation"
    watermark: float = 0.01

    def __post_init__(self) -> None:
        if self.name not in ADMISSIONS:
            raise ValueError(f"admission must be one of {', '.join(ADMISSIONS)}, got {self.name!r}")
        if not (math.isfinite(self.watermark) and 0 <= self.watermark < 1):
            raise ValueError(f"watermark must be in [0, 1), got {self.watermark!r}")

    @property
    def on_demand(self) -> bool:
        return self.name == "on-demand"

    def kv_limit(self, kv_capacity_tokens: int) -> int:
        """The KV tokens admission may take: ``M``, or ``M - ceil(watermark M)`` on demand."""
        if not self.on_demand:
            return int(kv_capacity_tokens)
        return int(kv_capacity_tokens) - math.ceil(self.watermark * kv_capacity_tokens)

    def fits_alone(self, prompt: int, predicted: int, kv_capacity_tokens: int) -> bool:
        """Whether a request, by its predicted length, can run alone on a client.

        Under either mode: ``s_i + ô_i <= M``. The watermark keeps headroom for running
        requests; it never blocks an empty client (section 11), so it does not enter here.
        """
        return prompt + predicted <= kv_capacity_tokens


def parse_admission(spec: str | Admission | None) -> Admission:
    """``reservation``, ``on-demand`` or ``on-demand:WATERMARK`` (share of ``M``, default 0.01)."""
    if isinstance(spec, Admission):
        return spec
    if spec is None:
        return Admission()
    name, _, arg = str(spec).partition(":")
    if not arg:
        return Admission(name)
    try:
        w = float(arg)
    except ValueError:
        raise ValueError(
            f"admission: watermark must be a number, got {arg!r} in {spec!r}"
        ) from None
    return Admission(name, w)
