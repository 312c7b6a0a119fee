"""Server-side apply of arbitrary objects with a field manager (dry-run first), and delete by UID
precondition. Used by the addon-updater's apply target."""

from __future__ import annotations

from controllers.kube import resources
from controllers.kube.client import JSON, ApiError, Kube


async def server_side_apply(
    kube: Kube, resource: resources.Resource, body: JSON, *, field_manager: str, dry_run: bool = False
) -> JSON:
    """PATCH application/apply-patch+yaml with ``force`` (this manager owns what it applies)."""
    metadata = body["metadata"]
    namespace = metadata.get("namespace") if resource.namespaced else None
    return await kube.patch(
        resource.path(namespace=namespace, name=metadata["name"]),
        body,
        patch_type="apply",
        field_manager=field_manager,
        force=True,
        dry_run=dry_run,
    )


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
