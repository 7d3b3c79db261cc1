"""``stream-forecaster serve``: from readings to published forecasts.

- ``service``: the process, from start-up to shutdown.
- ``loop``: the main loop, poll -> assignment -> process -> deliver -> checkpoint.
- ``delivery`` and ``checkpoint``: the delivery guarantees (at least once, exactly once).
- ``partitions``: the windows follow the assigned partitions.
- ``recovery``: back to a consistent state after a failed checkpoint.
- ``pipeline``, ``forecasting`` and ``batch``: one batch, records in, forecasts out.
- ``engine`` and ``onnx_graph``: the batched inference on ONNX Runtime.
- ``model_intake`` and ``hot_swap``: new models from the folder and the topic, swapped in.
- ``health``: what /healthz and /readyz answer.
- ``doctor``: the checks of ``stream-forecaster doctor`` (brokers, topics, ACLs, model).
- ``recorder``: the one writer of serve's metrics.
"""
