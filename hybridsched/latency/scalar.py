"""The latency model's iteration times on Python numbers: the engine's hot calls.

``RooflineLatency``'s methods take scalars or numpy arrays (broadcast), which costs a few
microseconds per call in attribute lookups and numpy dispatch; the engine calls them once
per iteration. ``scalar_decode_time(lat)``, ``scalar_prefill_time(lat)`` and
``scalar_mixed_time(lat)`` return functions of Python numbers that do the roofline's
arithmetic on cached constants, in the methods' order, so their results are bit for bit
the methods' (``tests/latency/test_scalar.py`` checks every shipped profile and the
optional terms). ``KernelLatency`` has its own (``KernelLatency.scalar``, which its methods
use on Python numbers). A latency model or option they do not cover is wrapped instead.
"""

from __future__ import annotations

from hybridsched.latency.kernels import KernelLatency
from hybridsched.latency.roofline import RooflineLatency


def scalar_decode_time(lat):
    """``lat.decode_time`` as a function of two Python numbers returning a float: the engine's hot call.

    For a roofline with the default all-reduce model it is the same arithmetic in the
    same order on cached constants (bit for bit the method's result) without attribute
    lookups or numpy; otherwise it wraps the method.
    """
    if isinstance(lat, KernelLatency):
        return lat.scalar[0]
    if not _plain_roofline(lat):
        return lambda n, c: float(lat.decode_time(n, c))
    m, hw = lat.model, lat.hardware
    c_n, c_c = 2.0 * m.active_params, 4.0 * m.num_layers * m.attention_dim
    wb, kvb, peak, bw, ovh = (
        m.weight_bytes,
        lat.kv_bytes_per_token,
        lat.peak_eff,
        lat.bw_eff,
        lat.overhead,
    )
    per_req = hw.decode_per_request_s
    comm = _scalar_comm(lat)

    def decode_time(n, c):
        a = (c_n * n + c_c * c) / peak
        b = (wb + kvb * c) / bw
        return ovh + (a if a >= b else b if a < b else float("nan")) + comm(n) + per_req * n

    return decode_time


def scalar_prefill_time(lat):
    """``lat.prefill_time`` on two Python numbers, as :func:`scalar_decode_time` (bit for bit)."""
    if isinstance(lat, KernelLatency):
        return lat.scalar[1]
    hw = getattr(lat, "hardware", None)
    if not _plain_roofline(lat) or hw.prefill_floor_s or hw.prefill_per_request_s:
        return lambda s, s2: float(lat.prefill_time(s, s2))
    m = lat.model
    c_s, c_s2 = 2.0 * m.active_params, 2.0 * m.num_layers * m.attention_dim
    wb, kvb, peak, bw, ovh = (
        m.weight_bytes,
        lat.kv_bytes_per_token,
        lat.peak_eff,
        lat.prefill_bw_eff,
        lat.overhead,
    )
    comm = _scalar_comm(lat)

    def prefill_time(s, s2):
        a = (c_s * s + c_s2 * s2) / peak
        b = (wb + kvb * s) / bw
        return ovh + (a if a >= b else b if a < b else float("nan")) + comm(s)

    return prefill_time


def scalar_mixed_time(lat):
    """``lat.mixed_time`` on Python numbers, as :func:`scalar_decode_time` (bit for bit)."""
    if isinstance(lat, KernelLatency):
        return lat.scalar[2]
    hw = getattr(lat, "hardware", None)
    plain = _plain_roofline(lat) and hw.prefill_mbu is None
    if not plain or hw.prefill_floor_s or hw.prefill_per_request_s:
        return lambda n, c, ct, sq, pre: float(lat.mixed_time(n, c, ct, sq, pre))
    m = lat.model
    c_n, c_c, c_sq = (
        2.0 * m.active_params,
        4.0 * m.num_layers * m.attention_dim,
        2.0 * m.num_layers * m.attention_dim,
    )
    wb, kvb, peak, bw, ovh = (
        m.weight_bytes,
        lat.kv_bytes_per_token,
        lat.peak_eff,
        lat.bw_eff,
        lat.overhead,
    )
    per_req = hw.decode_per_request_s
    comm = _scalar_comm(lat)

    def mixed_time(n, c, ct, sq, pre):
        a = (c_n * (n + ct) + c_c * c + c_sq * sq) / peak
        b = (wb + kvb * (c + ct + pre)) / bw
        return ovh + (a if a >= b else b if a < b else float("nan")) + comm(n + ct) + per_req * n

    return mixed_time


def _plain_roofline(lat) -> bool:
    hw = getattr(lat, "hardware", None)
    return (
        isinstance(lat, RooflineLatency)
        and not hw.allreduce_ring
        and hw.allreduce_large_message_bytes is None
    )


def _scalar_comm(lat):
    """``comm_time`` of the default all-reduce model on a Python number."""
    if lat.tp == 1:
        return lambda tokens: 0.0 * tokens
    hw, m = lat.hardware, lat.model
    two_l, lat_s, h, ar_bw = (
        2 * m.num_layers,
        hw.allreduce_latency_s,
        m.hidden_size,
        hw.allreduce_bandwidth,
    )
    return lambda tokens: two_l * (lat_s + tokens * h * 2 / ar_bw)
