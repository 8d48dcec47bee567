"""Where independent work runs: serially, in a process pool or on Dask; results that survive a crash.

- ``executor``: ``Executor`` (serial, processes, Dask);
- ``store``: a sweep's resumable Parquet results;
- ``background``: a read-only job in a forked process beside the caller;
- ``staging``: output folders written all or nothing (``staged_output``).

This package imports nothing of the project: every layer above may use it.
"""
