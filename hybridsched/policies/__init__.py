"""Policies: what runs next on a client (online rules) and which client serves a request (routers).

- online rules, one per file: ``prefill_first``, ``lagrangian``, ``chunked``,
  ``interval`` (admission by growing length estimates), ``scripted``; their queue
  order in ``queue``;
- routers: ``routers`` (static plans, round-robin, least-work, least-kv,
  power-of-two) and ``rolling`` (the MMBPP re-solved online);
- ``portfolio``: ``hybrid-robust``'s candidate schedules;
- ``registry``: the named policies, rules and routers; an unknown name is an error.

Policies never import a solver: a planner gets its solver passed in (``studies``).
"""
