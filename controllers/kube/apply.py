"""Server-side apply of arbitrary objects, and the discovery it needs (kind → resource, what can be listed).

Used by the addon-updater's apply target: find the REST resource of each document's apiVersion/kind, apply
it with a field manager (dry-run first), list objects of every kind by label, delete by UID precondition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from controllers.kube import discovery, resources
from controllers.kube.client import JSON, ApiError, Kube

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Discovery:
    """What the apiserver serves, from one round of discovery."""

    resources: tuple[discovery.ApiResource, ...]
    preferred: frozenset[tuple[str, str]]  # (group, version) pairs that are their group's preferred version

    def lookup(self, *, api_version: str, kind: str) -> discovery.ApiResource | None:
        for item in self.resources:
            if item.resource.api_version == api_version and item.kind == kind:
                return item
        return None

    def listable(self) -> tuple[discovery.ApiResource, ...]:
        """One version per group and kind (the preferred one when served there) that can be listed and
        deleted: enough to find every object once."""
        chosen: dict[tuple[str, str], discovery.ApiResource] = {}
        for item in self.resources:
            if not {"list", "delete"} <= item.verbs:
                continue
            key = (item.group, item.kind)
            if key not in chosen or (
                (item.group, item.version) in self.preferred
                and (chosen[key].group, chosen[key].version) not in self.preferred
            ):
                chosen[key] = item
        return tuple(chosen.values())


async def discover(kube: Kube) -> Discovery:
    """Every resource (no subresources) of every served group version, not only the preferred ones (a
    bundle may name any served version). A group version that fails to answer (an aggregated API that is
    down) is skipped with a warning."""
    core = await kube.get("/api")
    groups = await kube.get("/apis")
    group_versions = [("", str(version)) for version in core.get("versions") or []]
    for group in groups.get("groups") or []:
        group_versions.extend((str(group["name"]), str(v["version"])) for v in group.get("versions") or [])
    preferred = frozenset(discovery.preferred_group_versions(core=core, groups=groups))

    async def one(group: str, version: str) -> list[discovery.ApiResource]:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            document = await kube.get(path)
        except ApiError as error:
            log.warning("discovery of %s failed: %s", path, error)
            return []
        return discovery.parse_resource_list(group=group, version=version, document=document)

    results = await asyncio.gather(*(one(group, version) for group, version in group_versions))
    return Discovery(resources=tuple(item for found in results for item in found), preferred=preferred)


def object_path(resource: resources.Resource, body: JSON) -> str:
    metadata = body["metadata"]
    namespace = metadata.get("namespace") if resource.namespaced else None
    return resource.path(namespace=namespace, name=metadata["name"])


async def server_side_apply(
    kube: Kube, resource: resources.Resource, body: JSON, *, field_manager: str, dry_run: bool = False
) -> JSON:
    """PATCH application/apply-patch+yaml with ``force`` (this manager owns what it applies)."""
    return await kube.patch(
        object_path(resource, body),
        body,
        patch_type="apply",
        field_manager=field_manager,
        force=True,
        dry_run=dry_run,
    )


async def list_labelled(kube: Kube, resource: resources.Resource, *, label_selector: str) -> list[JSON]:
    """Every object of ``resource`` in all namespaces matching ``label_selector``."""
    items: list[JSON] = []
    async for page in kube.list_pages(resource.path(), query={"labelSelector": label_selector}):
        items.extend(page.get("items") or [])
    return items


async def delete(kube: Kube, resource: resources.Resource, *, namespace: str, name: str, uid: str) -> bool:
    """Delete one object, but only the one with ``uid`` (not a namesake created since it was listed).
    False when it is already gone (or was replaced by a new object)."""
    path = resource.path(namespace=namespace or None, name=name)
    body: JSON = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
    if uid:
        body["preconditions"] = {"uid": uid}
    try:
        await kube.request("DELETE", path, body=body)
    except ApiError as error:
        if error.not_found or error.conflict:
            return False
        raise
    return True
