"""The ``stream-forecaster`` command line.

- ``commands``: the parser of every command, and :func:`~stream_forecaster.cli.commands.main`.
- one module per command (``serve``, ``retrain``, ``train``, ``backtest``, ``simulate``,
  ``watch``, ``models``, ``config``, ``doctor``, ``bench``): its parser, and its run, which
  imports what the command needs only when it runs.
- ``arguments``: what the commands share (argument types, help layout, signals).
"""
