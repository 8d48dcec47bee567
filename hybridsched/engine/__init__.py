"""The serving engine: a global clock over a cluster of clients (docs/model.md sections 2, 11).

Rooms: ``schema`` (trace columns, actions, errors), ``state`` (a client's state as the
online rule sees it, and the rule protocol), ``admission`` (reservation and on-demand KV
admission), ``client`` (one client's iterations, KV accounting and preemption),
``routers`` (the router protocol, the cluster view and the simple routers), ``rolling``
(the MMBPP re-solved online; its solver is passed in) and ``loop`` (the clock).
"""

from hybridsched.engine.admission import ADMISSIONS, Admission, parse_admission
from hybridsched.engine.loop import EngineResult, run
from hybridsched.engine.rolling import RollingMMBPP, lpt_with_loads
from hybridsched.engine.routers import (
    ROUTERS,
    ClusterView,
    LeastKV,
    LeastWork,
    PowerOfTwo,
    RequestView,
    RoundRobin,
    Router,
    StaticRouter,
)
from hybridsched.engine.schema import (
    DECODE,
    EVICTION_COLUMNS,
    TRACE_COLUMNS,
    Action,
    KVOverflowError,
    PolicyError,
)
from hybridsched.engine.state import ClientState, Decider, OnlineRule

__all__ = [
    "ADMISSIONS",
    "DECODE",
    "EVICTION_COLUMNS",
    "ROUTERS",
    "TRACE_COLUMNS",
    "Action",
    "Admission",
    "ClientState",
    "ClusterView",
    "Decider",
    "EngineResult",
    "KVOverflowError",
    "LeastKV",
    "LeastWork",
    "OnlineRule",
    "PolicyError",
    "PowerOfTwo",
    "RequestView",
    "RollingMMBPP",
    "RoundRobin",
    "Router",
    "StaticRouter",
    "lpt_with_loads",
    "parse_admission",
    "run",
]
