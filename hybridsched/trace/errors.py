"""The error ``check_trace`` raises: which invariant a trace breaks, and where."""

from __future__ import annotations


class TraceError(AssertionError):
    """A trace breaks an invariant; the message names which one and where."""


def fail(invariant: str, detail: str) -> None:
    raise TraceError(f"{invariant}: {detail}")
