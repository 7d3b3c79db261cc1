"""The model: the network, its bundles, and how versions are kept and handed over.

- ``network``: the founding design's LSTM (Keras, for training).
- ``scaling``: input and target scaling, shared by training and serving.
- ``bundle``: one checksummed file per trained model.
- ``weights``: its weights, read with bounded memory (no zip bomb).
- ``files``: reading the model folder: regular files only, bounded.
- ``untrained``: a bundle with random weights, without TensorFlow.
- ``registry``: the versioned folder (``registry.json``).
- ``folder``: what serve loads from the model folder.
- ``signing``: HMAC-SHA256 signatures of bundles.
- ``topic``: the model topic, published to and followed.
- ``handoff``: signing and publishing a version, in one place.
"""
