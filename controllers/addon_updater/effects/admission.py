"""What the bundle's documents are on this apiserver, and whether its policy admits them: each document's REST
resource (what discovery serves, or a CRD of the bundle itself), its identity and its body as applied; then
the bundle policy (``bundles.policy``, pure) with the roles its bindings refer to read from the cluster. Both
targets go through here before anything changes (the directory target too: kube-addon-manager would apply
what it writes)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from controllers.addon_updater import logic
from controllers.bundles import model, policy
from controllers.kube import discovery, resources
from controllers.kube.client import JSON, ApiError, Kube
from controllers.runtime import failure
from controllers.structs import redact

ROLES = {
    "ClusterRole": resources.Resource(policy.RBAC_GROUP, "v1", "clusterroles", namespaced=False),
    "Role": resources.Resource(policy.RBAC_GROUP, "v1", "roles", namespaced=True),
}


class SwitchError(failure.TemporaryError, redact.Redacted):
    """The switch could not finish for a reason that may pass (timeouts, apiserver errors, a permission or a
    kind missing for now): tried again with backoff, never recorded as an invalid bundle. Its message names
    objects and holds no apiserver message about an object with data values (``redact.describe``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    manifest: model.Manifest
    resource: resources.Resource
    key: model.ObjectKey
    body: logic.JSON


async def admit(
    kube: Kube,
    manifests: Sequence[model.Manifest],
    *,
    served: discovery.Discovery,
    rules: policy.Policy,
    default_namespace: str,
    minor: str,
    digest: str,
) -> tuple[Item, ...]:
    """The bundle's items in apply order, once its policy admits every one (else BundleError "policy")."""
    items = resolve(
        manifests,
        served=served,
        release=rules.release,
        default_namespace=default_namespace,
        minor=minor,
        digest=digest,
    )
    targets = [
        policy.Target(
            where=item.manifest.where,
            key=item.key,
            resource=item.resource.group_resource,
            namespaced=item.resource.namespaced,
            body=item.manifest.body,
        )
        for item in items
    ]
    refs = sorted(policy.role_refs(targets))
    found = await asyncio.gather(*(_role(kube, ref) for ref in refs))
    policy.check(targets, policy=rules, roles=dict(zip(refs, found, strict=True)))
    return items


async def _role(kube: Kube, ref: policy.RoleRef) -> JSON | None:
    """The role a binding refers to, as the cluster has it (None: it has none such)."""
    resource = ROLES.get(ref.kind)
    if resource is None:
        return None
    try:
        return await kube.get(resource.path(namespace=ref.namespace or None, name=ref.name))
    except ApiError as error:
        if error.not_found:
            return None
        raise SwitchError(f"reading {ref} to judge the bundle: {redact.describe(error)}") from None


def resolve(
    manifests: Sequence[model.Manifest],
    *,
    served: discovery.Discovery,
    release: str,
    default_namespace: str,
    minor: str,
    digest: str,
) -> tuple[Item, ...]:
    """Each document with its REST resource, identity and labelled body, in apply order. A kind neither
    served nor defined by a CRD of the bundle is a BundleError; one missing because the discovery of its
    API failed just now is a SwitchError (tried again)."""
    crds = logic.bundle_crd_kinds(manifests)
    items = []
    for manifest in logic.ordered(manifests):
        found = served.lookup(api_version=manifest.api_version, kind=manifest.kind)
        resource = (
            found.resource if found else _crd_resource(crds.get((manifest.group, manifest.kind)), manifest)
        )
        if resource is None and (manifest.group, manifest.api_version.rsplit("/", 1)[-1]) in served.failed:
            raise SwitchError(
                f"{manifest.where}: {manifest.api_version} {manifest.kind}: the discovery of its API failed "
                "just now; trying again"
            )
        if resource is None:
            raise model.BundleError(
                "unknown_kind",
                f"{manifest.where}: {manifest.api_version} {manifest.kind} is not served by the apiserver "
                "and no CRD of the bundle defines it",
            )
        body = logic.labelled_body(
            manifest,
            namespaced=resource.namespaced,
            default_namespace=default_namespace,
            release=release,
            minor=minor,
            digest=digest,
        )
        key = logic.object_key(manifest, namespaced=resource.namespaced, default_namespace=default_namespace)
        items.append(Item(manifest=manifest, resource=resource, key=key, body=body))
    return tuple(items)


def _crd_resource(crd: JSON | None, manifest: model.Manifest) -> resources.Resource | None:
    if crd is None:
        return None
    spec = crd["spec"]
    version = manifest.api_version.rsplit("/", 1)[-1]
    versions = {str(v.get("name")) for v in spec.get("versions") or [] if v.get("served", True)}
    if version not in versions:
        return None
    namespaced = spec.get("scope") == "Namespaced"
    return resources.Resource(
        str(spec["group"]), version, str(spec["names"]["plural"]), namespaced=namespaced
    )
