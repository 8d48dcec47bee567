"""Admission modes: when a client may start a request, and how its KV memory is counted.

=================  =======================================================================
``reservation``    the paper's rule (docs/model.md 7.4): a request reserves ``s_i + ô_i``
                   KV tokens at admission; the reserved total stays ``<= M``. A request
                   that outgrows its reservation (``o_i > ô_i``) is an error
                   (``KVOverflowError``): the paper's model has no preemption.
``on-demand``      vLLM's (``KVCacheManager.allocate_slots``, vLLM 0.33): KV is held in
                   blocks of ``block_size`` tokens, a request holding ``c`` computed tokens
                   holding ``ceil(c / block_size)`` of them; a request is admitted when its
                   whole prompt's blocks (a resumed one: prompt and output so far) plus the
                   watermark are free, and only its first chunk is allocated; a running
                   request takes a new block when its next token starts one; when the
                   running requests' next step would not fit, the most recently admitted
                   is preempted by recompute until it does (``preemption.py``), and an
                   iteration that preempted admits nobody (docs/model.md section 11).
=================  =======================================================================

The engine counts on-demand KV in *token slots*: a request's blocks times ``block_size``,
so that one currency (tokens) serves both modes and every rule; ``block_size = 1`` is the
token-level model. The watermark is ``int(watermark x (N + 1))`` blocks for ``N`` blocks
(vLLM counts its null block), kept free for admissions while any request holds KV; it never
blocks an empty client. ``async_scheduling``: the next iteration is planned before the
current one's sampled tokens return (vLLM's default engine loop), so a request that emitted
its last token keeps its slot and blocks through one more iteration. ``prefix_caching``
(on demand, with a workload that says which prompts share prefixes): vLLM's automatic
prefix cache (``prefix_cache.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hybridsched.instance import ADMISSIONS

DEFAULT_BLOCK_SIZE = 16  # vLLM's default --block-size


@dataclass(frozen=True)
class Admission:
    """An admission mode; for ``on-demand``, vLLM's block size, watermark and engine loop."""

    name: str = "reservation"
    watermark: float = 0.0
    block_size: int = DEFAULT_BLOCK_SIZE
    async_scheduling: bool = False
    prefix_caching: bool = False

    def __post_init__(self) -> None:
        if self.name not in ADMISSIONS:
            raise ValueError(f"admission must be one of {', '.join(ADMISSIONS)}, got {self.name!r}")
        if not (math.isfinite(self.watermark) and 0 <= self.watermark < 1):
            raise ValueError(f"watermark must be in [0, 1), got {self.watermark!r}")
        if not (isinstance(self.block_size, int) and self.block_size >= 1):
            raise ValueError(f"block_size must be an integer >= 1, got {self.block_size!r}")

    @property
    def on_demand(self) -> bool:
        return self.name == "on-demand"

    @property
    def unit(self) -> int:
        """Tokens per KV unit: ``block_size`` on demand, 1 for reservations."""
        return self.block_size if self.on_demand else 1

    def slots(self, tokens: int) -> int:
        """The token slots of the blocks that hold ``tokens`` KV tokens."""
        b = self.unit
        return -(-tokens // b) * b

    def capacity(self, kv_capacity_tokens: int) -> int:
        """``M`` in token slots: whole blocks only (``N x block_size``)."""
        b = self.unit
        return int(kv_capacity_tokens) // b * b

    def watermark_slots(self, kv_capacity_tokens: int) -> int:
        """The watermark in token slots: ``int(watermark x (N + 1))`` blocks, on demand."""
        if not self.on_demand:
            return 0
        n = int(kv_capacity_tokens) // self.block_size
        return int(self.watermark * (n + 1)) * self.block_size

    def kv_limit(self, kv_capacity_tokens: int) -> int:
        """The token slots admissions may take while a client holds KV: capacity - watermark."""
        return self.capacity(kv_capacity_tokens) - self.watermark_slots(kv_capacity_tokens)

    def fits_alone(self, prompt: int, predicted: int, kv_capacity_tokens: int) -> bool:
        """Whether a request, by its predicted length, can run alone on a client.

        ``s_i + ô_i <= M`` (in whole blocks on demand). The watermark keeps headroom for
        running requests; it never blocks an empty client, so it does not enter here.
        """
        return self.slots(prompt + predicted) <= self.capacity(kv_capacity_tokens)


def parse_admission(spec: str | Admission | None) -> Admission:
    """``reservation``, ``on-demand`` or ``on-demand:WATERMARK`` (share of the blocks, default 0)."""
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
