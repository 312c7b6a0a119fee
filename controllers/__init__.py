"""kube-upgrade-controllers: five controllers that act once all masters agree on a version (or, for
upgrade-readiness, judge whether the cluster is ready for the next one), and the commands that ask them."""
