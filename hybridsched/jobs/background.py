"""A read-only job (the bound, ``check_run``) on the other core, while the caller goes on.

``start(fn, *args)`` runs ``fn(*args)`` in the background and returns a handle whose
``result()`` waits for it and returns its value or raises what it raised. Where the OS
can fork (Linux, macOS), the job runs in a ``multiprocessing`` process of the ``fork``
context: it reads the caller's memory as it was at the start (copy on write; the
arguments are not pickled, only the outcome is, through a pipe), and runs in parallel
with the caller's Python code (a thread would share its interpreter lock). A process
that dies without an outcome (killed, out of memory) is a ``BackgroundError``, never a
pass. Without ``fork``, or with ``processes=False``, the job runs in a thread.
``cancel()`` stops a job whose result is no longer wanted.

A job must not change what the caller reads later (a forked process's writes stay its
own, a thread's would not).
"""

from __future__ import annotations

import multiprocessing
import pickle
import warnings
from concurrent.futures import Future, ThreadPoolExecutor


class BackgroundError(RuntimeError):
    """The background job ended without an outcome (killed, or out of memory)."""


def start(fn, *args, processes: bool = True):
    """Run ``fn(*args)`` in the background (module docstring)."""
    if processes and "fork" in multiprocessing.get_all_start_methods():
        return _Forked(fn, args)
    return _Threaded(fn, args)


class _Threaded:
    def __init__(self, fn, args):
        pool = ThreadPoolExecutor(max_workers=1)
        self._future: Future = pool.submit(fn, *args)
        pool.shutdown(wait=False)

    def result(self):
        return self._future.result()

    def cancel(self) -> None:
        self._future.cancel()


class _Forked:
    def __init__(self, fn, args):
        ctx = multiprocessing.get_context("fork")
        self._recv, send = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_job, args=(fn, args, send), daemon=True)
        with warnings.catch_warnings():
            # Python 3.12+ warns when a process with native threads (numpy's BLAS pool)
            # forks; the job runs in the child's one thread and touches no lock of theirs.
            warnings.simplefilter("ignore", DeprecationWarning)
            self.process.start()
        send.close()  # the child holds the only send end: its death is an EOF here

    def result(self):
        try:
            ok, outcome = self._recv.recv()
        except EOFError:
            self.process.join()
            code = self.process.exitcode
            how = (
                f"killed by signal {-code}"
                if code is not None and code < 0
                else f"exit code {code}"
            )
            raise BackgroundError(
                f"the background job (process {self.process.pid}) ended without a result ({how})"
            ) from None
        finally:
            self._recv.close()
        self.process.join()
        if not ok:
            raise outcome
        return outcome

    def cancel(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self._recv.close()


def _job(fn, args, send) -> None:
    """In the child: run the job, send ``(True, value)`` or ``(False, exception)``."""
    try:
        message = (True, fn(*args))
    except BaseException as e:  # noqa: BLE001 - every outcome goes back to the caller
        message = (False, e)
        try:
            pickle.loads(pickle.dumps(e))  # an exception that pickles but cannot be rebuilt
        except Exception:
            message = (False, RuntimeError(f"{type(e).__name__}: {e}"))
    send.send(message)
    send.close()
