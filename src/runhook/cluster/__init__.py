"""Cluster mode (docs/cluster.md): several daemons over one NATS JetStream cluster.
The parts a cluster node supplies to the daemon's lifecycle (app/cluster.py composes
them); imports the rooms below it (sources and down), never web or app. Imported
only when the configuration has `[cluster]`: the single-machine daemon never
imports this package, nor nats-py."""
