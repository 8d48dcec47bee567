"""The MMBPP instance: sizes, initial loads, the allowed mask; its checks, loads and bound.

MODEL.md (6), second part: request ``i`` goes to exactly one client ``j``; client ``j``'s
load is ``initial_loads[j] + sum of the sizes assigned to it``; minimize the largest load.

- ``sizes`` is either 1-D, shape (n,), for identical clients (then the number of clients
  comes from ``num_clients``, ``initial_loads`` or ``allowed``), or 2-D, shape (n, J),
  for per-client (unrelated) sizes. A 2-D array whose columns are all equal is stored as
  1-D: identical clients allow the fast heuristics, with the same results.
- ``initial_loads`` (length J, seconds, >= 0, default 0): work already committed to each
  client, fixed.
- ``allowed`` (n x J booleans, default all): request ``i`` may only go to the clients
  where it is True (a KV reservation larger than a client's memory, see
  :func:`capacity_mask`). Sizes where ``allowed`` is False are never read (they may be
  inf). A request allowed nowhere is a ValueError naming its row.

Memory is O(n + J) for identical clients without a mask, O(n J) otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Problem", "capacity_mask", "check_client_indices", "make_problem", "trivial_bound"]


@dataclass(frozen=True, eq=False)
class Problem:
    """A checked MMBPP instance (see the module docstring)."""

    sizes: np.ndarray  # (n,) identical clients, or (n, J)
    num_clients: int
    initial: np.ndarray  # (J,)
    allowed: np.ndarray | None  # (n, J) bool, None = every pair

    @property
    def n(self) -> int:
        return int(self.sizes.shape[0])

    @property
    def identical(self) -> bool:
        return self.sizes.ndim == 1

    def cost(self, rows: np.ndarray, j: int) -> np.ndarray:
        """Sizes of requests ``rows`` on client ``j``."""
        return self.sizes[rows] if self.identical else self.sizes[rows, j]

    def min_size(self) -> np.ndarray:
        """``w_i``: the smallest size of request ``i`` over the clients it may go to."""
        if self.identical:
            return self.sizes
        arr = self.sizes if self.allowed is None else np.where(self.allowed, self.sizes, np.inf)
        return arr.min(axis=1)

    def loads(self, assignment: np.ndarray) -> np.ndarray:
        """Per-client load of ``assignment`` (initial load plus the assigned sizes)."""
        own = self.sizes if self.identical else self.sizes[np.arange(self.n), assignment]
        loads = np.bincount(assignment, weights=own, minlength=self.num_clients)
        return loads + self.initial if self.initial.any() else loads

    def makespan(self, assignment: np.ndarray) -> float:
        return float(self.loads(assignment).max())

    def check_allowed(self, assignment: np.ndarray, name: str) -> None:
        if self.allowed is None:
            return
        bad = ~self.allowed[np.arange(self.n), assignment]
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name}: request {i} is on client {int(assignment[i])}, which allowed forbids"
            )


def _float_array(values: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot convert to a float array ({exc})") from None


def _num_clients(arr, num_clients, initial_loads, allowed) -> int:
    if arr.ndim == 2:
        return int(arr.shape[1])
    if num_clients is not None:
        if int(num_clients) != num_clients or num_clients < 1:
            raise ValueError(f"num_clients must be an integer >= 1, got {num_clients!r}")
        return int(num_clients)
    if initial_loads is not None:
        return int(np.size(initial_loads))
    if allowed is not None and np.ndim(allowed) == 2:
        return int(np.shape(allowed)[1])
    raise ValueError("num_clients: needed with 1-D sizes (or give initial_loads or allowed)")


def _check_allowed(allowed: Any, n: int, num_clients: int) -> np.ndarray | None:
    if allowed is None:
        return None
    mask = np.asarray(allowed)
    if mask.shape != (n, num_clients):
        raise ValueError(f"allowed: expected shape ({n}, {num_clients}), got {mask.shape}")
    if mask.dtype != bool:
        raise ValueError(f"allowed: expected booleans, got dtype {mask.dtype}")
    nowhere = ~mask.any(axis=1)
    if nowhere.any():
        i = int(np.flatnonzero(nowhere)[0])
        raise ValueError(f"allowed: request {i} fits no client (its row is all False)")
    return None if mask.all() else mask


def _check_initial(initial_loads: Any, num_clients: int) -> np.ndarray:
    if initial_loads is None:
        return np.zeros(num_clients)
    init = _float_array(initial_loads, "initial_loads")
    if init.shape != (num_clients,):
        raise ValueError(f"initial_loads: expected shape ({num_clients},), got {init.shape}")
    bad = ~np.isfinite(init) | (init < 0)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(f"initial_loads: client {j} has {init[j]!r}, expected a finite value >= 0")
    return init


def make_problem(
    sizes: Any,
    num_clients: int | None = None,
    initial_loads: Any = None,
    allowed: Any = None,
) -> Problem:
    """Check the inputs and return a :class:`Problem`; ValueErrors name the field and row."""
    arr = _float_array(sizes, "sizes")
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"sizes: expected a 1-D (identical clients) or 2-D array (requests x clients), "
            f"got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError("sizes: no requests")
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise ValueError("sizes: no clients (shape has 0 columns)")
    num = _num_clients(arr, num_clients, initial_loads, allowed)
    mask = _check_allowed(allowed, arr.shape[0], num)
    used = np.ones(arr.shape, dtype=bool) if mask is None or arr.ndim == 1 else mask
    bad = used & (~np.isfinite(arr) | (arr <= 0))
    if bad.any():
        where = np.argwhere(bad)[0]
        i = int(where[0])
        on = f" on client {int(where[1])}" if arr.ndim == 2 else ""
        raise ValueError(
            f"sizes: request {i} has a non-positive or non-finite size{on}: {arr[tuple(where)]!r}"
        )
    if arr.ndim == 2 and (num == 1 or np.array_equal(arr, arr[:, [0] * num])):
        arr = np.ascontiguousarray(arr[:, 0])
    return Problem(arr, num, _check_initial(initial_loads, num), mask)


def check_client_indices(
    assignment: Any, n: int, m: int, name: str = "assignment", integral_floats: bool = True
) -> np.ndarray:
    """Return ``assignment`` as int64 client indices or raise a ValueError naming the row.

    One client index per request, each in ``0..m-1``; floats that are whole numbers pass
    when ``integral_floats`` (a solver's answer), else the dtype must be an integer.
    """
    arr = np.asarray(assignment)
    if arr.shape != (n,):
        raise ValueError(
            f"{name}: expected one client per request, shape ({n},), got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        whole = np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
        if not (integral_floats and whole):
            raise ValueError(f"{name}: client indices must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= m)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}: request row {i} goes to client {int(arr[i])}, but clients are 0..{m - 1}"
        )
    return arr.astype(np.int64)


def capacity_mask(reservation_tokens: Any, kv_capacity_tokens: Any) -> np.ndarray:
    """``allowed[i, j] = reservation_tokens[i] <= kv_capacity_tokens[j]`` (n x J booleans)."""
    res = np.asarray(reservation_tokens, dtype=float).reshape(-1)
    cap = np.asarray(kv_capacity_tokens, dtype=float).reshape(-1)
    return res[:, None] <= cap[None, :]


def _problem_bound(p: Problem) -> float:
    w = p.min_size()
    if not p.initial.any():
        return float(max(w.max(), w.sum() / p.num_clients))
    # Each request adds at least w_i on top of its client's initial load, and the room
    # sum_j max(0, C - init_j) under C must hold all the work: water-filling gives C.
    if p.allowed is None and p.identical:
        single = float(w.max() + p.initial.min())
    else:
        base = p.initial[None, :] + (p.sizes[:, None] if p.identical else p.sizes)
        if p.allowed is not None:
            base = np.where(p.allowed, base, np.inf)
        single = float(base.min(axis=1).max())
    init = np.sort(p.initial)
    total = w.sum() + np.cumsum(init)
    levels = total / np.arange(1, p.num_clients + 1)  # C if the k lowest clients take it all
    k = int(np.flatnonzero(np.append(levels[:-1] <= init[1:], True))[0])
    return float(max(single, levels[k], init[-1]))


def trivial_bound(
    sizes: Any,
    num_clients: int | None = None,
    initial_loads: Any = None,
    allowed: Any = None,
) -> float:
    """Lower bound on the MMBPP optimum, valid for unrelated clients, loads and masks.

    Each request costs at least ``w_i = min_{j allowed} sizes[i, j]`` wherever it goes, so
    the makespan is at least the largest such cost and at least their total spread over
    the ``J`` clients: ``max(max_i w_i, sum_i w_i / J)``. With initial loads it is the
    largest of ``max_j init_j``, ``max_i min_{j allowed} (init_j + sizes[i, j])`` and the
    water level ``C`` with ``sum_j max(0, C - init_j) = sum_i w_i``. HiGHS's dual bound
    never rose above it on P||Cmax (SOLVERS.md). O(n) memory for identical clients.
    """
    return _problem_bound(make_problem(sizes, num_clients, initial_loads, allowed))
