"""Online accuracy of the served forecasts, and their prediction intervals.

- ``online``: the scorer: forecasts held until their actual, scored per model version.
- ``figures``: the scored points and their sliding windows, and the offline recomputation.
- ``conformal``: split conformal intervals, one width or per key.
- ``key_scales``: each key's recent error scale and interval coverage.
- ``checks``: what the scorer is given, checked.
"""
