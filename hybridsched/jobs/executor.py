"""Where independent jobs run: in this process, a process pool, or a Dask cluster.

``Executor(kind, workers, scheduler)`` is a context manager with one method,
``map(fn, jobs, shared=None, on_result=None)``: it calls ``fn(job, shared)`` for every
job and returns the results in job order. ``shared`` (a large input such as a workload
table) reaches each worker once: scattered to every Dask worker (``broadcast=True``), or
handed to each pool process by its initializer. ``on_result(index, result)`` is called as
each job finishes (in completion order), so callers can save results while the rest runs.

========================  =================================================================
``serial``                one job after the other in this process
``processes``             ``concurrent.futures.ProcessPoolExecutor`` with ``workers`` processes,
                          kept across ``map`` calls with the same ``shared`` input
``dask``                  ``dask.distributed``: with ``scheduler=None`` a ``LocalCluster`` of
                          ``workers`` single-threaded worker processes started and stopped by
                          the engine; with an address (``tcp://host:8786``), that running
                          cluster (``dask scheduler`` and ``dask worker ADDRESS`` on other
                          machines, or any Dask deployment)
========================  =================================================================

``Client(scheduler)`` waits ``CONNECT_TIMEOUT_S`` (5 s) for the scheduler to answer; then
``ValueError`` says in one line that it cannot be reached. On Ctrl-C (``KeyboardInterrupt``)
leaving the ``with`` block stops the local workers at once and closes the cluster
without its shutdown log; worker processes ignore SIGINT (a terminal sends it to every
process of the foreground group), so only the caller stops them.

A job that raises does not stop the others: its result is a ``JobError`` with the
message. The engine never changes a result: jobs are independent and seeded, and every
solver runs one thread, so results are identical for every engine and worker count.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent import futures as cf
from dataclasses import dataclass

ENGINES = ("serial", "processes", "dask")
CONNECT_TIMEOUT_S = 5.0  # how long a running Dask scheduler has to answer (--scheduler)


@dataclass(frozen=True)
class JobError:
    """A job that raised (or whose worker died): the exception's type and message."""

    error: str


def default_workers() -> int:
    return os.cpu_count() or 1


_SHARED = None  # a pool process's copy of ``shared``


def _init_shared(shared) -> None:
    global _SHARED
    _SHARED = shared
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller stops the pool on Ctrl-C


def _call_shared(fn: Callable, job):
    return fn(job, _SHARED)


class Executor:
    """Runs jobs on one of ``ENGINES`` (module docstring); use it as a context manager."""

    def __init__(
        self,
        kind: str = "dask",
        workers: int | None = None,
        scheduler: str | None = None,
        progress: bool = False,
    ):
        if kind not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {kind!r}")
        if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        if scheduler and kind != "dask":
            raise ValueError(f"a scheduler address needs the dask engine, got engine {kind!r}")
        self.kind = kind
        self.workers = int(workers) if workers else default_workers()
        self.scheduler = scheduler
        self.progress = progress
        self.client = None
        self._cluster = None
        self._pool = None  # (pool, shared) kept across map calls with the same shared input
        self._scattered = None  # (shared, its future) likewise

    def __enter__(self) -> Executor:
        if self.kind == "dask":
            try:
                self._start_dask()
            except BaseException:
                self.__exit__(*sys.exc_info())
                raise
        return self

    def _start_dask(self) -> None:
        import dask
        from dask.distributed import Client, LocalCluster

        if self.scheduler:
            self.client = _connect(self.scheduler)
            return
        _start_quiet_resource_tracker()
        # The workers' statistical profiler samples the running cell every 10 ms:
        # 10-20% of a CPU-bound cell's time when measured, for nothing we read.
        with (
            dask.config.set({"distributed.worker.profile.enabled": False}),
            _children_ignore_sigint(),
        ):
            self._cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # no dashboard; any free port, no warning if 8787 is taken
                scheduler_kwargs={"dashboard": False},
            )
            self.client = Client(self._cluster)

    def __exit__(self, *exc) -> None:
        interrupted = isinstance(exc[1], KeyboardInterrupt)
        with _quiet(interrupted):
            if interrupted:
                self._kill_workers()
            self._close(errors=(Exception,) if interrupted else ())

    def _close(self, errors: tuple) -> None:
        """Shut the pool, the client and the local cluster down (``errors`` ignored)."""
        if self._pool is not None:
            with contextlib.suppress(*errors):
                self._pool[0].shutdown(cancel_futures=True)
            self._pool = None
        self._scattered = None
        if self.client is not None:
            with contextlib.suppress(*errors):
                self.client.close()
            self.client = None
        if self._cluster is not None:
            with contextlib.suppress(*errors):
                self._cluster.close()
            self._cluster = None

    def _kill_workers(self) -> None:
        """On Ctrl-C: end this engine's local worker processes now (their jobs are lost)."""
        kill = getattr(signal, "SIGKILL", signal.SIGTERM)
        if self._pool is not None:
            for p in list((getattr(self._pool[0], "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    p.kill()
        if self._cluster is not None:
            for nanny in list(self._cluster.workers.values()):
                with contextlib.suppress(Exception):
                    nanny.close_gracefully()  # its worker is not restarted
                    os.kill(nanny.pid, kill)

    def describe(self) -> dict:
        """What ran the jobs (recorded in outputs)."""
        return {"engine": self.kind, "workers": self.workers, "scheduler": self.scheduler}

    def map(
        self,
        fn: Callable,
        jobs: Sequence,
        shared=None,
        on_result: Callable[[int, object], None] | None = None,
        desc: str = "jobs",
        failed: Callable[[object], bool] | None = None,
    ) -> list:
        """``[fn(job, shared) for job in jobs]`` on this engine (module docstring).

        ``failed(result)`` tells the progress bar which results count as failures
        (``JobError`` always does).
        """
        from tqdm import tqdm  # plain text bar: the widget bar needs ipywidgets in the kernel

        jobs = list(jobs)
        results: list = [None] * len(jobs)
        # On a terminal only: a log or a pipe gets no bar.
        bar = tqdm(total=len(jobs), desc=desc, disable=None if self.progress else True)
        n_failed = 0

        def done(i: int, r) -> None:
            nonlocal n_failed
            results[i] = r
            if isinstance(r, JobError) or (failed is not None and failed(r)):
                n_failed += 1
            if on_result is not None:
                on_result(i, r)
            bar.set_postfix(failed=n_failed, remaining=len(jobs) - bar.n - 1, refresh=False)
            bar.update(1)

        try:
            if not jobs:
                return results
            if self.kind == "serial":
                for i, j in enumerate(jobs):
                    done(i, _guarded(fn, j, shared))
            elif self.kind == "processes":
                self._map_pool(fn, jobs, shared, done)
            else:
                self._map_dask(fn, jobs, shared, done)
        finally:
            bar.close()
        return results

    def _map_pool(self, fn, jobs, shared, done) -> None:
        if self._pool is None or self._pool[1] is not shared:
            if self._pool is not None:
                self._pool[0].shutdown()
            pool = cf.ProcessPoolExecutor(
                max_workers=self.workers, initializer=_init_shared, initargs=(shared,)
            )
            self._pool = (pool, shared)
        index = {self._pool[0].submit(_call_shared, fn, j): i for i, j in enumerate(jobs)}
        try:
            for f in cf.as_completed(index):
                done(index[f], _outcome(f))
        finally:
            for f in index:
                f.cancel()

    def _map_dask(self, fn, jobs, shared, done) -> None:
        from dask.distributed import as_completed

        if self.client is None:
            raise RuntimeError("the dask engine must be entered (with Executor(...) as e) first")
        if shared is None:
            sh = None
        elif self._scattered is not None and self._scattered[0] is shared:
            sh = self._scattered[1]
        else:
            sh = self.client.scatter(shared, broadcast=True, hash=False)
            self._scattered = (shared, sh)
        fs = self.client.map(fn, jobs, [sh] * len(jobs), pure=False)
        index = {f.key: i for i, f in enumerate(fs)}
        cancel = True
        try:
            for f in as_completed(fs):
                done(index[f.key], _outcome(f))
                f.release()
        except KeyboardInterrupt:
            cancel = self._cluster is None  # a local cluster is stopped whole by __exit__
            raise
        finally:
            if cancel:
                self.client.cancel(fs)


def _connect(address: str):
    """A client of the running scheduler at ``address``; ValueError when it does not answer
    within ``CONNECT_TIMEOUT_S``."""
    from dask.distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as e:  # no answer, refused, or no such host
        why = str(e).splitlines()[0] if str(e) else ""
        why = f"no answer within {CONNECT_TIMEOUT_S:g} s" if "imed out" in why or not why else why
        raise ValueError(f"scheduler {address}: cannot be reached ({why})") from None
    except ValueError as e:  # not an address
        raise ValueError(f"scheduler {address}: {e}") from None


def _start_quiet_resource_tracker() -> None:
    """Workers killed on Ctrl-C leave the semaphores of their imports (Pyomo's) to
    multiprocessing's resource tracker, which removes them and would warn on stderr: the
    tracker is started here, if it is not running yet, without that warning."""
    from multiprocessing import resource_tracker

    quiet = "ignore:resource_tracker:UserWarning"
    env = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = f"{env},{quiet}" if env else quiet
    try:
        resource_tracker.ensure_running()
    finally:
        if env is None:
            del os.environ["PYTHONWARNINGS"]
        else:
            os.environ["PYTHONWARNINGS"] = env


@contextlib.contextmanager
def _children_ignore_sigint():
    """Worker processes started in the block ignore SIGINT (they inherit it; a Ctrl-C in
    that second is lost), and SIGTERM waits for the end of the block; main thread only."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    if previous is None:  # not the main thread, or a handler Python did not install
        yield
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    held = None
    if hasattr(signal, "pthread_sigmask"):
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


@contextlib.contextmanager
def _quiet(on: bool):
    """When ``on`` (stopping after Ctrl-C): no logging in the block (the cluster's shutdown
    messages), and a second Ctrl-C does not cut the shutdown short (main thread only)."""
    if not on:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    main = threading.current_thread() is threading.main_thread()
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        yield
    finally:
        logging.disable(previous)
        if handler is not None:
            signal.signal(signal.SIGINT, handler)


def _guarded(fn, job, shared):
    try:
        return fn(job, shared)
    except Exception as e:
        return JobError(f"{type(e).__name__}: {e}")


def _outcome(f):
    try:
        return f.result()
    except Exception as e:  # a job that raised, or a worker that died
        return JobError(f"{type(e).__name__}: {e}")
