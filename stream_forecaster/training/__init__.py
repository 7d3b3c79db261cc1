"""Offline training and evaluation (the ``[train]`` extra).

- ``fit``: training the network on series, with early stopping.
- ``backtest``: walk-forward evaluation against the baselines, and its plot.
- ``baselines``: persistence, seasonal naive and ridge, scored beside the model.
"""
