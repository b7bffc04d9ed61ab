"""Cluster mode (DESIGN §13): several daemons over one NATS JetStream cluster.
Imported only when the configuration has `[cluster]`: the single-machine daemon
never imports this package, nor nats-py."""
