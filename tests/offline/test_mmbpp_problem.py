"""Tests for hybridsched.mmbpp_problem: input checks, loads and the trivial bound."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridsched.offline.mmbpp_problem import capacity_mask, make_problem, trivial_bound


def brute_force(sizes, initial, allowed):
    """Optimum of the MMBPP with initial loads and a mask, by enumeration."""
    sizes = np.asarray(sizes, dtype=float)
    n, m = sizes.shape
    best = np.inf
    choices = [np.flatnonzero(allowed[i]).tolist() for i in range(n)]
    for a in itertools.product(*choices):
        loads = np.array(initial, dtype=float)
        for i, j in enumerate(a):
            loads[j] += sizes[i, j]
        best = min(best, loads.max())
    return best


@st.composite
def instances(draw):
    n = draw(st.integers(1, 6))
    m = draw(st.integers(1, 3))
    sizes = np.array(
        [draw(st.lists(st.integers(1, 9), min_size=m, max_size=m)) for _ in range(n)], float
    )
    if draw(st.booleans()):
        sizes = np.tile(sizes[:, :1], (1, m))
    initial = np.array(draw(st.lists(st.integers(0, 12), min_size=m, max_size=m)), float)
    allowed = np.array(
        [draw(st.lists(st.booleans(), min_size=m, max_size=m)) for _ in range(n)], bool
    )
    allowed[np.arange(n), draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n))] = True
    return sizes, initial, allowed


@settings(max_examples=80, deadline=None)
@given(inst=instances())
def test_trivial_bound_is_valid_with_loads_and_mask(inst):
    """Tests that the trivial bound never exceeds the brute-force optimum with initial
    loads and a mask, and that it is at least the largest initial load."""
    sizes, initial, allowed = inst
    lb = trivial_bound(sizes, initial_loads=initial, allowed=allowed)
    assert lb <= brute_force(sizes, initial, allowed) + 1e-9
    assert lb >= initial.max()


def test_trivial_bound_water_level_hand_example():
    """Tests the water level: with loads (0, 0, 10) the bound is the initial 10; with
    (0, 0, 1) and work 4 + 4 it is the largest request on an empty client, 4."""
    sizes = np.array([4.0, 4.0])
    assert trivial_bound(sizes, initial_loads=[0.0, 0.0, 10.0]) == 10.0
    assert trivial_bound(sizes, initial_loads=[0.0, 0.0, 1.0]) == 4.0
    # work 9 over loads (0, 0, 1): level 10 / 3 (the optimum is 4)
    assert trivial_bound(np.array([3.0, 3.0, 3.0]), initial_loads=[0.0, 0.0, 1.0]) == 10 / 3


def test_identical_columns_are_stored_once():
    """Tests that a 2-D array with equal columns becomes 1-D (identical clients) and that
    1-D sizes need the number of clients."""
    p = make_problem(np.tile([[1.0], [2.0]], (1, 3)))
    assert p.identical and p.num_clients == 3 and p.sizes.tolist() == [1.0, 2.0]
    assert make_problem([1.0, 2.0], num_clients=4).num_clients == 4
    assert make_problem([1.0, 2.0], initial_loads=[0, 0, 0]).num_clients == 3


def test_capacity_mask():
    """Tests allowed[i, j] = reservation_i <= capacity_j."""
    mask = capacity_mask([10, 50, 100], [60, 100])
    assert mask.tolist() == [[True, True], [True, True], [False, True]]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"allowed": np.array([[True, False], [False, False], [True, True]])},
            "request 1 fits no client",
        ),
        ({"allowed": np.ones((2, 2), bool)}, r"allowed: expected shape \(3, 2\)"),
        ({"allowed": np.ones((3, 2))}, "allowed: expected booleans"),
        ({"initial_loads": [0.0, -1.0]}, "initial_loads: client 1"),
        ({"initial_loads": [0.0]}, r"initial_loads: expected shape \(2,\)"),
        ({"initial_loads": [0.0, np.inf]}, "initial_loads: client 1"),
    ],
)
def test_bad_inputs_name_field_and_row(kwargs, match):
    """Tests that a bad mask or bad initial loads raise ValueError naming field and row."""
    with pytest.raises(ValueError, match=match):
        make_problem(np.ones((3, 2)), **kwargs)


def test_forbidden_sizes_may_be_infinite():
    """Tests that sizes are only checked where allowed (inf marks a client that cannot
    hold the request), while an allowed non-finite size is rejected by row."""
    sizes = np.array([[1.0, np.inf], [2.0, 3.0]])
    allowed = np.isfinite(sizes)
    assert trivial_bound(sizes, allowed=allowed) == 2.0
    with pytest.raises(ValueError, match="sizes: request 0 .* client 1"):
        make_problem(sizes)
