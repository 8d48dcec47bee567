"""A read-only job (``check_run`` on a finished run) on the other core, while the caller goes on.

``start(fn, *args)`` runs ``fn(*args)`` in the background and returns a handle whose
``result()`` waits for it and raises what it raised. Where the OS can fork (Linux,
macOS), the job runs in a forked child process: it reads the parent's memory as it was
at the fork (copy on write, nothing pickled), holds no lock the parent needs, and runs
in parallel with the parent's Python code (a thread would share its interpreter lock).
The child sends back only its outcome (``None`` or the exception, pickled) through a
pipe and leaves with ``os._exit``, so it flushes none of the parent's buffers and runs
none of its exit handlers. Without ``fork``, or with ``processes=False``, the job runs
in a thread. ``cancel()`` stops a job whose result is no longer wanted.

The job must not write what the parent reads (a forked child's writes stay its own)
and must not start threads of its own (a forked child has one).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import warnings
from concurrent.futures import Future, ThreadPoolExecutor


class BackgroundError(RuntimeError):
    """The background job died without an outcome (killed, or out of memory)."""


def start(fn, *args, processes: bool = True):
    """Run ``fn(*args)`` in the background (module docstring)."""
    if processes and hasattr(os, "fork"):
        return _Forked(fn, args)
    return _Threaded(fn, args)


class _Threaded:
    def __init__(self, fn, args):
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._future: Future = self._pool.submit(fn, *args)
        self._pool.shutdown(wait=False)

    def result(self):
        return self._future.result()

    def cancel(self) -> None:
        self._future.cancel()


class _Forked:
    def __init__(self, fn, args):
        sys.stdout.flush()
        sys.stderr.flush()
        read, write = os.pipe()
        with warnings.catch_warnings():
            # Python 3.12+ warns when a process with native threads (numpy's BLAS pool)
            # forks; the child runs one job in its one thread and leaves with os._exit.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: run, report, leave
            os.close(read)
            _child(fn, args, write)
        os.close(write)
        self.pid, self._read, self._done = pid, read, False

    def result(self):
        with os.fdopen(self._read, "rb") as fh:
            payload = fh.read()
        _, status = os.waitpid(self.pid, 0)
        self._done = True
        if not payload:
            raise BackgroundError(
                f"the background check (process {self.pid}) ended without a result "
                f"({_describe(status)})"
            )
        outcome = pickle.loads(payload)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def cancel(self) -> None:
        if self._done:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self._read)
        self._done = True


def _child(fn, args, write: int) -> None:
    code = 0
    try:
        outcome = fn(*args)
        payload = pickle.dumps(outcome)
    except BaseException as e:  # noqa: BLE001 - every outcome goes back to the parent
        code = 1
        try:
            payload = pickle.dumps(e)
            pickle.loads(payload)  # an exception that pickles but cannot be rebuilt
        except Exception:
            payload = pickle.dumps(RuntimeError(f"{type(e).__name__}: {e}"))
    try:
        sys.stdout.flush()  # what the job printed (os._exit flushes nothing)
        sys.stderr.flush()
        with os.fdopen(write, "wb") as fh:
            fh.write(payload)
    finally:
        os._exit(code)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
