"""The iteration trace: its columns, its invariants and the metrics computed from it.

- ``schema``: the trace's and the eviction table's columns;
- ``flat``: the trace's id columns as flat arrays;
- ``check`` (with ``decodes``, ``preemption``, ``errors``): ``check_trace``, every
  invariant of docs/model.md sections 9 and 11;
- ``metrics``: metrics and the request table (TTFT, TPOT, ...), from the trace alone;
- ``io`` and ``csv_writer``: trace files.
"""
