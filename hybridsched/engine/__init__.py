"""The serving engine: a global clock over a cluster of clients (docs/model.md sections 2, 11).

Reading guide, in the order a request meets them:

- ``views``: what a router sees (``ClusterView``, ``RequestView``) and the ``Router`` protocol;
- ``loop``: the global clock: arrivals, routing, every client's iterations in time order;
- ``client``: one client's iterations: execute a rule's action, account KV memory, write
  the trace;
- ``admission``: when a client may start a request (reservation, on-demand) and how KV
  memory is counted;
- ``preemption``: which running request is evicted when KV memory runs out (the victim
  choice) and what evicting it undoes;
- ``state``: a client as the online rule sees it, and the ``OnlineRule`` protocol;
- ``request_state``: per-request state every client reads and updates;
- ``checks``: a rule's decision against slots, memory and token budget;
- ``schema``: actions and errors; ``trace_buffer``: the trace as it is written;
- ``simulate``: the entry points (a fixed assignment, or any router).

The engine imports no solver and no policy: rules and routers come in through their
protocols, and iteration times through the latency model's scalar form.
"""
