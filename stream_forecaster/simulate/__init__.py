"""``stream-forecaster simulate``: a live sensor feed from real or synthetic data.

- ``sources``: the Beijing data, the house's rooms, any CSV, or synthetic series.
- ``feed``: the readings in send order.
- ``malformed``: records wrong in one way each, for the dead-letter path.
- ``pacing``: each record sent when it is due.
- ``replay``: the sending, with progress and a summary.
"""
