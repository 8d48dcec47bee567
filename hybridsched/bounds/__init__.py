"""Lower bounds on the makespan (docs/model.md section 5).

- ``floors``: per-request work floors and critical paths;
- ``lower_bound``: ``T_LB`` and its parts (the MMBPP part is solved in ``studies``).
"""
