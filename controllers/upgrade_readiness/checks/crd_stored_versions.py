"""crd-stored-versions: CRDs whose storedVersions list a version no longer served."""

from __future__ import annotations

from collections.abc import Iterable

from controllers.structs import checking
from controllers.upgrade_readiness.checks import interface


def crd_stored_versions(crds: Iterable[interface.CrdView]) -> interface.Judgement:
    """CRDs whose storedVersions list a version no longer served: objects may still be stored at it, and a
    release that drops it cannot read them (uso-runner migrates them and clears the list)."""
    findings = []
    for crd in sorted(crds, key=lambda c: c.name):
        unserved = [v for v in crd.stored if v not in crd.served]
        if unserved:
            message = (
                f"storedVersions {list(crd.stored)} include {', '.join(unserved)}, no longer served: "
                "migrate the stored objects (uso-runner) so that only served versions remain"
            )
            findings.append(
                interface.Finding("crd-stored-versions", f"CustomResourceDefinition {crd.name}", message)
            )
    return interface.Judgement("crd-stored-versions", tuple(findings))


def judge(observed: interface.Evidence) -> interface.Judgement:
    return crd_stored_versions(observed.crds)


CHECK = checking.Check(name="crd-stored-versions", needs=frozenset({"crds"}), judge=judge)
