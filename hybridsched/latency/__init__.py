"""Latency: how long one iteration of a client takes (docs/model.md section 3).

- ``profiles``: model and hardware profiles (YAML in data/profiles/);
- ``roofline``: the roofline model ``RooflineLatency`` and the ``LatencyModel`` protocol;
- ``scalar``: the same iteration times on Python numbers, the engine's hot calls;
- ``linear``: the exact MIP's linear model and its fit to the roofline;
- ``measurements``, ``calibration``, ``calibration_vidur``, ``holdout``: fitting a
  hardware profile to measured iteration or operator times, and how well it transfers.
"""
