"""The background job that ``simulate --check`` runs beside the file writing."""

from __future__ import annotations

import multiprocessing
import os
import signal

import numpy as np
import pytest

from hybridsched.jobs import background
from hybridsched.trace.errors import TraceError

FORK = "fork" in multiprocessing.get_all_start_methods()
MODES = [True, False] if FORK else [False]


def _total(a: np.ndarray) -> float:
    return float(a.sum())


def _raise_trace_error(msg: str) -> None:
    raise TraceError(msg)


class _Unpicklable(Exception):
    def __init__(self, a, b):  # pickle rebuilds it with one argument: it cannot
        super().__init__(f"{a}/{b}")


def _raise_unpicklable() -> None:
    raise _Unpicklable("x", "y")


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _write(a: np.ndarray) -> None:
    a[:] = -1.0


@pytest.mark.parametrize("processes", MODES)
def test_result_is_the_jobs_return_value(processes):
    """Tests that the job reads the caller's data as it was at the start and returns its value."""
    a = np.arange(1_000_000, dtype=float)
    job = background.start(_total, a, processes=processes)
    assert job.result() == float(a.sum())


@pytest.mark.parametrize("processes", MODES)
def test_the_jobs_exception_is_raised_with_its_type_and_message(processes):
    """Tests that a failing check fails the caller with the check's own error."""
    job = background.start(_raise_trace_error, "invariant: row 7", processes=processes)
    with pytest.raises(TraceError, match="invariant: row 7"):
        job.result()


@pytest.mark.skipif(not FORK, reason="needs fork")
def test_an_exception_that_cannot_be_rebuilt_still_fails_with_its_message():
    job = background.start(_raise_unpicklable)
    with pytest.raises(RuntimeError, match="_Unpicklable: x/y"):
        job.result()


@pytest.mark.skipif(not FORK, reason="needs fork")
def test_a_child_that_dies_fails_the_caller():
    """Tests that a check process killed before it reports is an error, never a pass."""
    job = background.start(_kill_self)
    with pytest.raises(background.BackgroundError, match="signal 9"):
        job.result()


@pytest.mark.skipif(not FORK, reason="needs fork")
def test_a_forked_job_cannot_change_the_callers_data():
    a = np.ones(10)
    background.start(_write, a).result()
    assert (a == 1.0).all()


@pytest.mark.skipif(not FORK, reason="needs fork")
def test_cancel_stops_the_child_and_reaps_it():
    import time

    job = background.start(time.sleep, 60)
    t0 = time.perf_counter()
    job.cancel()
    assert time.perf_counter() - t0 < 30
    assert not job.process.is_alive() and job.process.exitcode == -signal.SIGKILL
    job.cancel()  # twice is harmless
