"""Pure helpers on Kubernetes objects shared by every layer: times, Lease expiry, object references."""
