"""``stream-forecaster retrain``: keeping the model fresh (the ``[train]`` extra).

- ``worker``: the process: history in, candidates trained, the gate, the hand-off.
- ``history``: the bounded history of readings per key.
- ``gate``: the promotion gate.
"""
