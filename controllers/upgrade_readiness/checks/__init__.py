"""upgrade-readiness's checks, listed once: ``--checks``, the stores watched, the reads made (apiservers'
/metrics, the next bundle, the release delta), the metrics' label sets and the Events follow this table. A
check is a module here with a pure ``judge``."""

from __future__ import annotations

from controllers.structs import checking
from controllers.upgrade_readiness.checks import (
    addon_bundle,
    alert_metrics,
    component_flags,
    component_versions,
    crd_stored_versions,
    drain_blockers,
    feature_gates,
    kubeadm_config,
    kubelet_skew,
    removed_apis,
)

TABLE = checking.CheckTable(
    (
        removed_apis.CHECK,
        kubelet_skew.CHECK,
        crd_stored_versions.CHECK,
        drain_blockers.CHECK,
        addon_bundle.CHECK,
        feature_gates.CHECK,
        component_flags.CHECK,
        kubeadm_config.CHECK,
        alert_metrics.CHECK,
        component_versions.CHECK,
    )
)
