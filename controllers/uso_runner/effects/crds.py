"""The CRDs of a run: their generations as it begins, their ``status.storedVersions`` once rewritten."""

from __future__ import annotations

from collections.abc import Iterable

from controllers.kube import resources, retry
from controllers.kube.client import JSON, ApiError, Kube
from controllers.uso_runner import logic


async def generations(kube: Kube, names: Iterable[str]) -> dict[str, int]:
    """The generation of each CRD among ``names`` (resources that are no CRD are left out)."""
    wanted = set(names)
    return {
        crd["metadata"]["name"]: int(crd["metadata"].get("generation") or 0)
        for crd in await kube.list_items(resources.CRDS.path())
        if crd["metadata"]["name"] in wanted
    }


async def trim_stored_versions(
    kube: Kube, name: str, *, generation: int
) -> tuple[JSON, logic.StoredVersionsUpdate] | None:
    """Set the CRD's storedVersions to its storage version unless it changed since ``generation``: the CRD
    and what was decided (None when every try met a conflict)."""

    async def attempt() -> tuple[JSON, logic.StoredVersionsUpdate]:
        crd = await kube.get(resources.CRDS.path(name=name))
        update = logic.stored_versions_update(crd=crd, expected_generation=generation)
        if update.stored is not None:
            crd["status"]["storedVersions"] = update.stored
            await kube.replace(resources.CRDS.path(name=name, subresource="status"), crd)
        return crd, update

    try:
        return await retry.call(attempt, policy=retry.CONFLICTS)
    except ApiError as error:
        if not error.conflict:
            raise
        return None
