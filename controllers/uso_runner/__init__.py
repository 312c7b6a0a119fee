"""uso-runner: rewrite stored objects whose storage version changed, once all masters agree."""
