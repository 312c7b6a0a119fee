"""upgrade-readiness: is the cluster ready for the next minor? A read-only gate, judged continuously."""
