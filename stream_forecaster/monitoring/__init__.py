"""Seeing what runs: the metrics, the HTTP endpoints, and the console view.

- ``metrics`` and ``retrain_metrics``: every metric serve and retrain export (serve's are
  written by :mod:`stream_forecaster.serving.recorder`).
- ``histograms``: the buckets, and a histogram that counts a batch at a time.
- ``http``: /metrics, /healthz and /readyz.
- ``console``, ``scrape``, ``quantiles`` and ``latest_forecasts``: ``stream-forecaster watch``.
"""
