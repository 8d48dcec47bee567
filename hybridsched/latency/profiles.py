"""Model and hardware profiles: the constants of the latency model (docs/model.md section 3).

A profile is a YAML file in ``data/profiles/models/`` or ``data/profiles/hardware/`` (or any
path). A model profile states a decoder-only transformer's published architecture; the
parameter count, weight bytes, KV bytes per token and FLOPs per token follow from it:

- attention per layer ``d * (H + 2 H_kv) * h_d + H h_d * d`` (Q, K, V, output),
- a SwiGLU FFN per layer ``3 d ffn``; with ``E`` experts of size ``ffn_e`` it is
  ``E * 3 d ffn_e`` plus a router ``E d``, of which ``k`` experts are active per token,
- two norms per layer ``2d``, a final norm ``d``, embeddings ``V d`` and, unless tied,
  an output head ``V d``.

Weights count every expert; FLOPs count only the active ones. Tensor parallelism is
validated the way vLLM does it (``ModelConfig.get_num_kv_heads`` and ``QKVParallelLinear``):
``tp`` must divide the attention heads; KV heads are split when ``tp`` divides them and
replicated (one per GPU) when ``tp`` is a multiple of them.

Memory sizes may be written with a unit (``80 GiB``, ``141 GB``); a bare number is bytes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path

import yaml

from hybridsched.paths import data_dir

_OPTIONAL_NUMBERS = {
    "nvlink_bandwidth",
    "allreduce_large_message_bytes",
    "allreduce_large_bandwidth",
    "prefill_mbu",
}
_UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


def parse_bytes(value, what: str) -> float:
    """A byte count from a number or a string such as ``"80 GiB"`` (true bytes: 85,899,345,920)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([A-Za-z]*)\s*", value)
        if m:
            unit = (m.group(2) or "B").upper()
            try:
                number = float(m.group(1))
            except ValueError:
                number = None
            if number is not None and unit in _UNITS:
                return number * _UNITS[unit]
    raise ValueError(f"{what} must be a number of bytes or e.g. '80 GiB', got {value!r}")


def _check_int(profile: str, name: str, v, minimum: int = 1) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ValueError(
            f"model profile {profile!r}: {name} must be an integer >= {minimum}, got {v!r}"
        )


@dataclass(frozen=True)
class ModelProfile:
    """A decoder-only transformer, as far as its cost matters.

    ``num_kv_heads`` defaults to ``num_heads`` (full multi-head attention), ``head_dim``
    to ``hidden_size / num_heads``, ``expert_ffn_size`` to ``ffn_size``; ``max_context``
    (the context length) is optional. ``num_experts = 1`` is a dense model.
    """

    name: str
    num_layers: int
    hidden_size: int
    ffn_size: int
    num_heads: int
    vocab_size: int
    bytes_per_param: int = 2
    kv_bytes_per_value: int = 2
    num_kv_heads: int | None = None
    head_dim: int | None = None
    max_context: int | None = None
    num_experts: int = 1
    experts_per_token: int = 1
    expert_ffn_size: int | None = None
    tie_word_embeddings: bool = False
    qk_norm: bool = False  # RMSNorm on queries and keys (Qwen3): element-wise work per prefill
    published_params: float | None = field(default=None, compare=False)
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for name in (
            "num_layers",
            "hidden_size",
            "ffn_size",
            "num_heads",
            "vocab_size",
            "bytes_per_param",
            "kv_bytes_per_value",
            "num_experts",
            "experts_per_token",
        ):
            _check_int(self.name, name, getattr(self, name))
        for name in ("num_kv_heads", "head_dim", "max_context", "expert_ffn_size"):
            if getattr(self, name) is not None:
                _check_int(self.name, name, getattr(self, name))
        if not isinstance(self.tie_word_embeddings, bool):
            raise ValueError(
                f"model profile {self.name!r}: tie_word_embeddings must be true or false, "
                f"got {self.tie_word_embeddings!r}"
            )
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise ValueError(
                f"model profile {self.name!r}: hidden_size {self.hidden_size} is not a multiple of "
                f"num_heads {self.num_heads}; state head_dim"
            )
        if self.num_heads % self.kv_heads:
            raise ValueError(
                f"model profile {self.name!r}: num_heads {self.num_heads} must be a multiple of "
                f"num_kv_heads {self.kv_heads}"
            )
        if self.experts_per_token > self.num_experts:
            raise ValueError(
                f"model profile {self.name!r}: experts_per_token {self.experts_per_token} exceeds "
                f"num_experts {self.num_experts}"
            )

    # --- architecture ------------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads if self.head_dim is None else self.head_dim

    @property
    def attention_dim(self) -> int:
        """``H * h_d``: the width of the queries (``d`` for the classic layout)."""
        return self.num_heads * self.head_size

    @property
    def expert_ffn(self) -> int:
        return self.ffn_size if self.expert_ffn_size is None else self.expert_ffn_size

    def _layer_params(self, experts: int) -> int:
        d, hd = self.hidden_size, self.head_size
        attn = d * (self.num_heads + 2 * self.kv_heads) * hd + self.attention_dim * d
        if self.num_experts == 1:
            ffn = 3 * d * self.ffn_size
        else:
            ffn = experts * 3 * d * self.expert_ffn + self.num_experts * d  # experts + router
        return attn + ffn + 2 * d

    @cached_property
    def num_params(self) -> int:
        """Every weight: ``L * layer + V d (1 + untied head) + d`` (module docstring)."""
        heads = 1 if self.tie_word_embeddings else 2
        return (
            self.num_layers * self._layer_params(self.num_experts)
            + heads * self.vocab_size * self.hidden_size
            + self.hidden_size
        )

    @cached_property
    def active_params(self) -> int:
        """The weights one token multiplies: only ``experts_per_token`` experts per layer."""
        if self.num_experts == 1:
            return self.num_params
        heads = 1 if self.tie_word_embeddings else 2
        return (
            self.num_layers * self._layer_params(self.experts_per_token)
            + heads * self.vocab_size * self.hidden_size
            + self.hidden_size
        )

    @cached_property
    def weight_bytes(self) -> int:
        return self.num_params * self.bytes_per_param

    @cached_property
    def kv_bytes_per_token(self) -> int:
        """Keys and values of every layer: ``2 * L * H_kv * h_d * bytes`` (no replication)."""
        return 2 * self.num_layers * self.kv_heads * self.head_size * self.kv_bytes_per_value

    # --- tensor parallelism --------------------------------------------------------------------
    def check_tp(self, tp: int) -> None:
        """Raise unless ``tp`` splits this model the way vLLM splits it (module docstring)."""
        if self.num_heads % tp:
            raise ValueError(
                f"tp={tp}: {self.name} has {self.num_heads} attention heads, which do not split "
                f"{tp} ways; tp must divide num_heads"
            )
        kv = self.kv_heads
        if tp <= kv and kv % tp:
            raise ValueError(f"tp={tp}: {self.name}'s {kv} KV heads do not split {tp} ways")
        if tp > kv and tp % kv:
            raise ValueError(
                f"tp={tp}: {self.name}'s {kv} KV heads cannot be replicated evenly over {tp} GPUs"
            )

    def kv_replicas(self, tp: int) -> int:
        """How many copies of each KV head a replica of ``tp`` GPUs holds (1 unless ``tp > H_kv``)."""
        return max(1, tp // self.kv_heads)

    def kv_bytes_per_token_tp(self, tp: int) -> int:
        """KV bytes per token a replica of ``tp`` GPUs stores, replicas included."""
        return self.kv_bytes_per_token * self.kv_replicas(tp)


@dataclass(frozen=True)
class HardwareProfile:
    """One accelerator (per-GPU figures) plus the achieved efficiencies.

    Beyond the roofline's constants, terms the measurements demand (docs/model.md 3), all
    off by default: ``overhead_per_extra_gpu_s`` (fixed cost per iteration per GPU beyond
    the first), ``decode_per_request_s`` (cost per request of a decode step),
    ``allreduce_ring`` (the ring factor ``2 (tp - 1) / tp`` on all-reduce bytes) and
    ``allreduce_large_bandwidth`` for the bytes of a message beyond
    ``allreduce_large_message_bytes``. Three prefill terms (an iteration with prompt
    tokens): ``prefill_mbu`` (its memory side's bandwidth efficiency; default ``mbu``),
    ``prefill_floor_s`` (a floor under its roofline's max) and ``prefill_per_request_s``
    (cost per prompt).
    ``calibration`` records how a fitted profile was made.
    """

    name: str
    peak_flops: float
    memory_bandwidth: float
    memory_bytes: float
    usable_memory_fraction: float = 0.9
    allreduce_bandwidth: float = 300e9
    allreduce_latency_s: float = 10e-6
    mfu: float = 0.5
    mbu: float = 0.75
    iteration_overhead_s: float = 3e-3
    overhead_per_extra_gpu_s: float = 0.0
    decode_per_request_s: float = 0.0
    allreduce_ring: bool = False
    allreduce_large_message_bytes: float | None = None
    allreduce_large_bandwidth: float | None = None
    prefill_mbu: float | None = None
    prefill_floor_s: float = 0.0
    prefill_per_request_s: float = 0.0
    nvlink_bandwidth: float | None = field(default=None, compare=False)
    # A profile of measured kernels (latency/kernels.py): the tables' folder under
    # data/latency/kernels/, the time a request spends outside the engine (API server,
    # tokenization, streaming: added before it reaches the scheduler), and the memory a
    # serving engine keeps beside weights and KV cache per GPU (activations of the largest
    # step, CUDA graphs, the CUDA context and communication buffers; vLLM's sizing).
    kernels: str | None = None
    # A GPU without its own tables: the sibling's tables (``kernels``) rescaled by a layer
    # profile measured on this GPU, a folder under data/latency/measured/ (measured_scale.py).
    kernel_scale: str | None = None
    async_scheduling: bool = False  # the serving stack plans an iteration ahead (vLLM >= 0.19)
    request_overhead_s: float = 0.0
    engine_reserve_bytes: float = 0.0
    source: str = field(default="", compare=False)
    calibration: dict | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.allreduce_ring, bool):
            raise ValueError(
                f"hardware profile {self.name!r}: allreduce_ring must be true or false, got {self.allreduce_ring!r}"
            )
        for f in fields(self):
            if f.name in (
                "name",
                "source",
                "calibration",
                "allreduce_ring",
                "kernels",
                "kernel_scale",
                "async_scheduling",
            ):
                continue
            v = getattr(self, f.name)
            if v is None and f.name in _OPTIONAL_NUMBERS:
                continue
            if (
                not isinstance(v, (int, float))
                or isinstance(v, bool)
                or not math.isfinite(v)
                or v < 0
            ):
                raise ValueError(
                    f"hardware profile {self.name!r}: {f.name} must be a finite number >= 0, got {v!r}"
                )
        for name in (
            "peak_flops",
            "memory_bandwidth",
            "memory_bytes",
            "allreduce_bandwidth",
            "mfu",
            "mbu",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(
                    f"hardware profile {self.name!r}: {name} must be > 0, got {getattr(self, name)!r}"
                )
        for name in ("usable_memory_fraction", "mfu", "mbu"):
            if getattr(self, name) > 1:
                raise ValueError(
                    f"hardware profile {self.name!r}: {name} must be <= 1, got {getattr(self, name)!r}"
                )
        large = (self.allreduce_large_message_bytes, self.allreduce_large_bandwidth)
        if (large[0] is None) != (large[1] is None):
            raise ValueError(
                f"hardware profile {self.name!r}: allreduce_large_message_bytes and "
                "allreduce_large_bandwidth go together"
            )
        if large[1] is not None and not 0 < large[1] <= self.allreduce_bandwidth:
            # A slower large-message bandwidth keeps comm convex in the tokens, which the
            # per-token floors of section 5 rely on.
            raise ValueError(
                f"hardware profile {self.name!r}: allreduce_large_bandwidth must be in "
                f"(0, allreduce_bandwidth], got {large[1]!r}"
            )
        if self.prefill_mbu is not None and not 0 < self.prefill_mbu <= self.mbu:
            # No faster than a decode step's weight read: keeps the prefill floors of
            # section 5 (which use ``mbu``) lower bounds.
            raise ValueError(
                f"hardware profile {self.name!r}: prefill_mbu must be in (0, mbu = {self.mbu!r}], "
                f"got {self.prefill_mbu!r}"
            )
        if self.calibration is not None and not isinstance(self.calibration, dict):
            raise ValueError(f"hardware profile {self.name!r}: calibration must be a mapping")


_PROFILE_FOLDERS = {"model": "models", "hardware": "hardware"}
# Former names of renamed profiles, still loaded (to the renamed profile) but not listed.
ALIASES = {
    "model": {},
    "hardware": {
        "h100-80gb-sxm-measured": "h100-sxm-splitwise2023",
        "a100-80gb-sxm-measured": "a100-sxm-splitwise2023",
    },
}
_NUMBER_FIELDS = {
    "model": {"published_params"},
    "hardware": {f.name for f in fields(HardwareProfile)}
    - {"name", "source", "calibration", "allreduce_ring", "kernels", "kernel_scale"}
    - {"async_scheduling"},
}


def profile_names(kind: str) -> list[str]:
    """The shipped profiles of a kind (``model`` or ``hardware``), by current name (a former
    name in ``ALIASES`` still loads but is not listed)."""
    folder = data_dir() / "profiles" / _PROFILE_FOLDERS[kind]
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _profile_path(kind: str, name: str) -> Path:
    name = ALIASES[kind].get(name, name)
    path = data_dir() / "profiles" / _PROFILE_FOLDERS[kind] / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"unknown {kind} profile {name!r}; known: {', '.join(profile_names(kind))}"
        )
    return path


def _load_yaml(path: Path, cls: type, kind: str):
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{kind} profile {path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{kind} profile {path}: expected a mapping of constants")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{kind} profile {path}: unknown field(s) {', '.join(unknown)}")
    for name in ("memory_bytes", "engine_reserve_bytes"):
        if kind == "hardware" and name in raw:
            try:
                raw[name] = parse_bytes(raw[name], name)
            except ValueError as e:
                raise ValueError(f"{kind} profile {path}: {e}") from None
    # YAML 1.1 reads "312e12" as a string; accept it as the number it plainly is.
    for name in _NUMBER_FIELDS[kind]:
        if isinstance(raw.get(name), str):
            try:
                raw[name] = float(raw[name])
            except ValueError:
                raise ValueError(
                    f"{kind} profile {path}: {name} must be a number, got {raw[name]!r}"
                ) from None
    try:
        return cls(**{"name": path.stem, **raw})
    except TypeError as e:  # a missing constant
        raise ValueError(f"{kind} profile {path}: {e}") from None


def _resolve(kind: str, name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise ValueError(f"{kind} profile {p}: no such file")
        return p
    return _profile_path(kind, str(name_or_path))


def load_model_profile(name_or_path: str | Path) -> ModelProfile:
    """A model profile by name (data/profiles/models/NAME.yaml) or by path."""
    return _load_yaml(_resolve("model", name_or_path), ModelProfile, "model")


def load_hardware_profile(name_or_path: str | Path) -> HardwareProfile:
    """A hardware profile by name (data/profiles/hardware/NAME.yaml, or a former name in
    ``ALIASES``, which loads the renamed profile) or by path."""
    return _load_yaml(_resolve("hardware", name_or_path), HardwareProfile, "hardware")
