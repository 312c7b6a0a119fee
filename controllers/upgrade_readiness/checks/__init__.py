"""upgrade-readiness's checks, listed once: ``--checks``, the stores watched, the reads made (apiservers'
/metrics, the next bundle), the metrics' label sets and the Events follow this table. A check is a module here
with a pure ``judge``."""

from __future__ import annotations

from controllers.structs import checking
from controllers.upgrade_readiness.checks import (
    addon_bundle,
    crd_stored_versions,
    drain_blockers,
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
    )
)
