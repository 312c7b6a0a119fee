"""node-tainter: taint workers still below the agreed control-plane version; untaint when upgraded."""
