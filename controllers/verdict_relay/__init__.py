"""verdict-relay: the upgrade gate in a Cluster API management cluster (docs/upgrade-gate.md)."""
