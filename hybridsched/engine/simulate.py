"""The engine's entry point: requests through a router and a rule, with the invariants checked.

``simulate_run`` takes a router, an online rule and an admission mode and returns the
whole ``EngineResult`` (trace, evictions, dispatches, the router's log); ``check=True``
asserts every invariant of docs/model.md section 9 on it. A fixed assignment (the
paper's setting) goes through ``policies/static.py``'s ``simulate``.
"""

from __future__ import annotations

from hybridsched.engine.admission import Admission
from hybridsched.engine.loop import EngineResult, run
from hybridsched.engine.state import OnlineRule
from hybridsched.engine.views import Router
from hybridsched.instance import Instance
from hybridsched.trace.io import check_run


def simulate_run(
    instance: Instance,
    router: Router,
    rule: OnlineRule,
    admission: str | Admission = "reservation",
    check: bool = False,
    progress=None,
) -> EngineResult:
    """Run the engine; with ``check``, assert the invariants on the result."""
    res = run(instance, router, rule, admission, progress)
    if check:
        check_run(res, instance)
    return res
