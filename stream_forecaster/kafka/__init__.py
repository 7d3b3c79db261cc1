"""Everything that talks to the Kafka client library.

- ``clients``: the clients configured from the settings (consumer, producer, TLS/SASL).
- ``protocols``: what serve needs of its clients, as typed Protocols (the seam for fakes).
- ``topics``: the one place that creates topics.
- ``probe``: the background check that the brokers answer, and the input's end offsets.
- ``errors``: what the cluster could not do (:class:`ClusterError`).
- ``availability``: waiting for the cluster at start-up, saying why it does not answer.
- ``transactions``: the transactional producer's blocking calls, each with a bound.
"""
