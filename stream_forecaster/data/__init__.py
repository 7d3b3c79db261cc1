"""Sensor history as data: CSV tables, series, one-step-ahead samples, and the samples
shipped with the package.

- ``tables``: reading a CSV into series.
- ``series``: series and their (window -> next target) samples.
- ``samples``: the two real data sets, with their provenance.
"""
