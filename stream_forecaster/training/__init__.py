"""Offline training and evaluation (the ``[train]`` extra).

- ``fit``: training the network on series, with early stopping.
- ``backtest``: walk-forward evaluation against persistence, and its plot.
"""
