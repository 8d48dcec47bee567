"""Workloads: the requests a run serves (docs/model.md, "Workloads").

- ``requests``: request tables: load, check and draw them (GSM8K, CSV files);
- ``formats``: request file formats (Vidur, SplitwiseSim, Azure, Mooncake);
- ``catalogue``: named workloads and their options (window, rate scale, context fit);
- ``arrivals``: arrival processes; ``predictors`` and ``length_model``: the output
  lengths planners see; ``tables``: an experiment's request table in one call.
"""
