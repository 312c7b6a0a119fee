"""addon-updater: switch the cluster's add-on bundle to the one made for the agreed Kubernetes minor."""
