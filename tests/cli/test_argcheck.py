"""Tests of hybridsched.argcheck: argument converters, path checks and plain messages."""

from __future__ import annotations

import argparse

import pytest

from hybridsched.cli import argcheck


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN", "infinity"])
def test_finite_float_refuses_nan_and_inf(text):
    """Tests that NaN and infinities are refused with the value in the message."""
    with pytest.raises(argparse.ArgumentTypeError, match="finite number"):
        argcheck.finite_float_arg(text)


def test_converters_accept_good_values():
    """Tests that ordinary values pass through unchanged."""
    assert argcheck.finite_float_arg("-2.5") == -2.5
    assert argcheck.nonnegative_float_arg("0") == 0.0
    assert argcheck.positive_int_arg("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="integer >= 1, got '2.5'"):
        argcheck.positive_int_arg("2.5")


def test_plain_rewrites_numpy_reprs():
    """Tests that numpy scalar reprs in a message are shown as plain values."""
    msg = "got np.float64(100.5) and np.int64(-3), not np.str_('x'); keep f(1)"
    assert argcheck.plain_message(msg) == "got 100.5 and -3, not 'x'; keep f(1)"


def test_check_out_dir_accepts_existing_and_creatable_folders(tmp_path):
    """Tests that an existing folder and a not-yet-existing one below it pass, and nothing is created."""
    assert argcheck.check_out_dir(tmp_path) == tmp_path
    assert argcheck.check_out_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "text, value",
    [
        ("n=3", 3),
        ("x=0.5", 0.5),
        ("grid=[1, 2]", [1, 2]),
        ("opt=None", None),
        ("flag=True", True),
        ("name=hello world", "hello world"),
        ("configs={'a': {'clients': 2}}", {"a": {"clients": 2}}),
    ],
)
def test_parameter_arg_parses_literals_else_strings(text, value):
    """Tests that `-p NAME=VALUE` values are Python literals when they parse, else strings."""
    assert argcheck.parameter_arg(text) == (text.split("=")[0], value)


@pytest.mark.parametrize("text", ["novalue", "=3", "a b=1"])
def test_parameter_arg_refuses_malformed(text):
    """Tests that a missing name or '=' is refused."""
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
        argcheck.parameter_arg(text)


def test_parameter_arg_refuses_infinite_literal():
    """Tests that a literal that overflows to infinity is refused by name; 'nan' stays a string."""
    with pytest.raises(argparse.ArgumentTypeError, match="x: must be a finite number, got 1e999"):
        argcheck.parameter_arg("x=1e999")
    assert argcheck.parameter_arg("x=nan") == ("x", "nan")
