"""The model: the network, its bundles, and how versions are kept and handed over.

- ``network``: the founding design's LSTM (Keras, for training).
- ``scaling``: input and target scaling, shared by training and serving.
- ``calendar``: hour-of-day and day-of-week inputs, computed from reading times.
- ``bundle``: one checksummed file per trained model.
- ``weights``: its weights, read with bounded memory (no zip bomb).
- ``files``: reading the model folder: regular files only, bounded.
- ``untrained``: a bundle with random weights, without TensorFlow.
- ``registry``: the versioned folder (``registry.json``).
- ``registry_manifest``: what ``registry.json`` holds; promote and rollback as pure changes.
- ``folder``: what serve loads from the model folder.
- ``keys``: Ed25519 key files (signing key, trusted keys, key ids).
- ``signing``: signed release statements: Ed25519 (or HMAC), bound to name and version.
- ``topic``: the model topic, published to and followed.
- ``handoff``: signing and publishing a version, in one place.
"""
