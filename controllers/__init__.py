"""kube-upgrade-controllers: four controllers that act once all masters agree on a version."""
