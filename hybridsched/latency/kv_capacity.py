"""How many KV blocks a serving engine keeps: vLLM's sizing of its KV cache.

vLLM (``Worker.determine_available_memory``, ``docs/vllm_scheduler.md`` section 9) takes
``gpu_memory_utilization`` of each GPU's memory, subtracts what profiling its largest step
consumed (weights, activations, CUDA graphs, the CUDA context and communication buffers) and
divides the rest into blocks. Here: per GPU, ``u x memory - weights / tp - reserve``, where
``reserve`` is the hardware profile's ``engine_reserve_bytes`` (a per-GPU constant; see each
profile for how it was set), divided by a block's bytes per GPU (``block_size`` tokens of the
model's KV heads held on that GPU).
"""

from __future__ import annotations

import math

from hybridsched.latency.profiles import HardwareProfile, ModelProfile


def vllm_kv_blocks(
    model: ModelProfile,
    hardware: HardwareProfile,
    tp: int,
    gpu_memory_utilization: float = 0.9,
    block_size: int = 16,
) -> int:
    """The KV blocks of ``block_size`` tokens one replica of ``tp`` GPUs holds (0 if none fit)."""
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(
            f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization!r}"
        )
    free = (
        gpu_memory_utilization * hardware.memory_bytes
        - model.weight_bytes / tp
        - hardware.engine_reserve_bytes
    )
    per_block = block_size * model.kv_bytes_per_token_tp(tp) / tp
    return max(0, math.floor(free / per_block))
