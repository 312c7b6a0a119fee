"""The addon-updater's decisions, pure: which bundle, what it contains, what to apply, what to prune.

No I/O here: the bundle arrives as (file name, text) pairs, the cluster as plain dicts. Everything that can
be wrong with a bundle is found here, before anything is switched.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from controllers.bundles import documents, model
from controllers.structs import fields

JSON = dict[str, Any]

# Every object the apply target owns carries this label (value: the release), and only such objects are
# ever pruned.
BUNDLE_LABEL = "addons.kube-upgrade-controllers.io/bundle"
MINOR_ANNOTATION = "addons.kube-upgrade-controllers.io/minor"
DIGEST_ANNOTATION = "addons.kube-upgrade-controllers.io/digest"
# ConfigMaps that carry a bundle are labelled with its minor: addons.kube-upgrade-controllers.io/minor=1.36
ADDON_MANAGER_MODE_LABEL = "addonmanager.kubernetes.io/mode"

NAMESPACE_KIND = ("", "Namespace")
CRD_KIND = ("apiextensions.k8s.io", "CustomResourceDefinition")

_GENERATION = re.compile(r"^\.\.(\d{1,4}\.\d{1,4})_([0-9a-f]{12})$")


@dataclasses.dataclass(frozen=True, slots=True)
class LiveObject:
    """An object found in the cluster with the bundle label."""

    key: model.ObjectKey
    uid: str
    labels: Mapping[str, str]


# --- selection ---------------------------------------------------------------------------------------------


# --- variables ---------------------------------------------------------------------------------------------


# --- documents ---------------------------------------------------------------------------------------------


def is_first_phase(manifest: model.Manifest) -> bool:
    """Namespaces and CRDs go first: the rest may live in them or be of their kinds."""
    return (manifest.group, manifest.kind) in (NAMESPACE_KIND, CRD_KIND)


def ordered(manifests: Iterable[model.Manifest]) -> tuple[model.Manifest, ...]:
    """Namespaces, then CRDs, then everything else, each in bundle order."""
    items = list(manifests)
    rank = {NAMESPACE_KIND: 0, CRD_KIND: 1}
    return tuple(sorted(items, key=lambda m: rank.get((m.group, m.kind), 2)))


def bundle_crd_kinds(manifests: Iterable[model.Manifest]) -> dict[tuple[str, str], JSON]:
    """(group, kind) → the CRD body, for the CRDs the bundle itself defines."""
    kinds: dict[tuple[str, str], JSON] = {}
    for manifest in manifests:
        if (manifest.group, manifest.kind) == CRD_KIND:
            spec = fields.mapping(manifest.body.get("spec"))
            names = fields.mapping(spec.get("names"))
            if spec.get("group") and names.get("kind") and names.get("plural"):
                kinds[(str(spec["group"]), str(names["kind"]))] = manifest.body
    return kinds


def bundle_namespaces(manifests: Iterable[model.Manifest]) -> set[str]:
    return {m.name for m in manifests if (m.group, m.kind) == NAMESPACE_KIND}


def object_key(manifest: model.Manifest, *, namespaced: bool, default_namespace: str) -> model.ObjectKey:
    namespace = (manifest.namespace or default_namespace) if namespaced else ""
    return model.ObjectKey(group=manifest.group, kind=manifest.kind, namespace=namespace, name=manifest.name)


def labelled_body(
    manifest: model.Manifest,
    *,
    namespaced: bool,
    default_namespace: str,
    release: str,
    minor: str,
    digest: str,
) -> JSON:
    """The object as applied: the bundle's document plus the bundle label and annotations, and the default
    namespace when a namespaced object names none. Labels of the bundle (addonmanager mode…) are kept."""
    body = {**manifest.body}
    metadata = {**body["metadata"]}
    metadata["labels"] = {**(metadata.get("labels") or {}), BUNDLE_LABEL: release}
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        MINOR_ANNOTATION: minor,
        DIGEST_ANNOTATION: model.short_digest(digest),
    }
    if namespaced:
        metadata["namespace"] = manifest.namespace or default_namespace
    else:
        metadata.pop("namespace", None)
    body["metadata"] = metadata
    return body


# --- pruning -----------------------------------------------------------------------------------------------


def live_object(obj: Mapping[str, Any], *, group: str, kind: str) -> LiveObject | None:
    """The object as pruning sees it; None without a name (nothing to delete by)."""
    metadata = fields.mapping(obj.get("metadata"))
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        return None
    return LiveObject(
        key=model.ObjectKey(
            group=group, kind=kind, namespace=str(metadata.get("namespace") or ""), name=name
        ),
        uid=str(metadata.get("uid") or ""),
        labels=dict(fields.mapping(metadata.get("labels"))),
    )


def prune_set(
    *, live: Iterable[LiveObject], desired: Iterable[model.ObjectKey], release: str
) -> tuple[LiveObject, ...]:
    """The objects to delete: labelled with this release's bundle label and not in the new bundle. Never an
    object without the label. Order: namespaced objects, cluster-scoped ones, CRDs, Namespaces last (deleting
    a CRD or a Namespace deletes what is in it)."""
    wanted = set(desired)
    doomed = {
        obj.key: obj for obj in live if obj.labels.get(BUNDLE_LABEL) == release and obj.key not in wanted
    }

    def rank(obj: LiveObject) -> tuple[int, model.ObjectKey]:
        kind = (obj.key.group, obj.key.kind)
        order = 3 if kind == NAMESPACE_KIND else 2 if kind == CRD_KIND else 0 if obj.key.namespace else 1
        return order, obj.key

    return tuple(sorted(doomed.values(), key=rank))


# --- health ------------------------------------------------------------------------------------------------


def crd_established(crd: Mapping[str, Any]) -> bool:
    conditions = fields.mappings(fields.dig(crd, "status", "conditions"))
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def workload_problem(obj: Mapping[str, Any]) -> str | None:
    """Why a Deployment or DaemonSet is not available yet (None: it is), after ``kubectl rollout status``."""
    kind = obj.get("kind")
    status = fields.mapping(obj.get("status"))

    def count(field: str) -> int:  # a missing or garbled count is 0: not available yet
        return fields.integer(status.get(field)) or 0

    if count("observedGeneration") < (fields.integer(fields.dig(obj, "metadata", "generation")) or 0):
        return "the controller has not observed the latest spec"
    if kind == "Deployment":
        replicas = fields.integer(fields.dig(obj, "spec", "replicas"))
        replicas = 1 if replicas is None else replicas
        updated = count("updatedReplicas")
        if updated < replicas:
            return f"{updated} of {replicas} replicas updated"
        if count("replicas") > updated:
            return "old replicas are pending termination"
        available = count("availableReplicas")
        if available < replicas:
            return f"{available} of {replicas} replicas available"
        return None
    if kind == "DaemonSet":
        desired = count("desiredNumberScheduled")
        updated = count("updatedNumberScheduled")
        if updated < desired:
            return f"{updated} of {desired} pods updated"
        available = count("numberAvailable")
        if available < desired:
            return f"{available} of {desired} pods available"
        return None
    return None


WORKLOAD_KINDS = (("apps", "Deployment"), ("apps", "DaemonSet"))


def workloads(keys: Iterable[model.ObjectKey]) -> tuple[model.ObjectKey, ...]:
    return tuple(sorted(k for k in keys if (k.group, k.kind) in WORKLOAD_KINDS))


def workload_keys(
    manifests: Iterable[model.Manifest], *, default_namespace: str
) -> tuple[model.ObjectKey, ...]:
    """The bundle's Deployments and DaemonSets (namespaced kinds)."""
    return workloads(object_key(m, namespaced=True, default_namespace=default_namespace) for m in manifests)


def unavailable(
    *, wanted: Iterable[model.ObjectKey], live: Mapping[model.ObjectKey, Mapping[str, Any]]
) -> dict[model.ObjectKey, str]:
    """The wanted workloads that are not available, with the reason."""
    result: dict[model.ObjectKey, str] = {}
    for key in wanted:
        obj = live.get(key)
        problem = "not found" if obj is None else workload_problem(obj)
        if problem:
            result[key] = problem
    return result


# --- the directory target ----------------------------------------------------------------------------------


def generation_name(*, minor: str, digest: str) -> str:
    """The directory one bundle is written to, next to the target symlink: ``..1.36_0123456789ab``."""
    return f"..{minor}_{model.short_digest(digest)}"


def parse_generation(name: str) -> tuple[str, str] | None:
    """(minor, short digest) of a generation directory name, else None."""
    match = _GENERATION.match(name)
    return (match[1], match[2]) if match else None


def stale_generations(names: Iterable[str], *, keep: Iterable[str]) -> tuple[str, ...]:
    """Generation directories to delete: all but those in ``keep`` (the current and the previous one, so a
    reader still inside the previous bundle can finish reading it)."""
    kept = set(keep)
    return tuple(sorted(n for n in names if parse_generation(n) is not None and n not in kept))


# --- the decision of a round ----------------------------------------------------------------------------

Action = Literal["missing", "invalid", "known-invalid", "current", "switch"]


Health = Literal["Healthy", "Progressing", "Unhealthy"]


def health(*, unavailable: int, waited: float, timeout: float) -> Health:
    """A switched bundle's health: every workload available; some not yet, within ``timeout`` seconds of the
    switch; or some still not after that."""
    if not unavailable:
        return "Healthy"
    return "Progressing" if waited < timeout else "Unhealthy"


def health_settled(*, recorded: str, now: Health) -> bool:
    """Whether ``now`` is news worth an Event: health settled (Healthy or Unhealthy) on another value than
    the one recorded (a resync that finds the same health says nothing)."""
    return now != "Progressing" and now != recorded


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    """What the state ConfigMap says was done last."""

    phase: str = ""
    version: str = ""
    minor: str = ""
    digest: str = ""
    failed_digest: str = ""

    @classmethod
    def of(cls, data: Mapping[str, str]) -> Recorded:
        return cls(
            phase=data.get("phase", ""),
            version=data.get("version", ""),
            minor=data.get("bundleMinor", ""),
            digest=data.get("bundleDigest", ""),
            failed_digest=data.get("failedDigest", ""),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    bundle: model.Bundle | None = None
    digest: str = ""
    files: tuple[model.BundleFile, ...] = ()  # rendered (variables substituted)
    manifests: tuple[model.Manifest, ...] = ()
    error: model.BundleError | None = None  # why it is invalid


def decide(
    *,
    bundle: model.Bundle | model.BundleError | None,
    minor: str,
    variables: Mapping[str, str],
    recorded: Recorded,
    version: str,
    target: Literal["apply", "directory"],
    generation: str | None,
) -> Decision:
    """The whole decision of one round, in this order: no bundle fits the agreed minor (``bundle`` None) →
    missing; it cannot be read → invalid; the same content is in place (and, for the directory target, the
    directory shows it: ``generation``) → current; it was found invalid for this agreed version already →
    known-invalid (reported once; a changed bundle, variable or version is tried again); it does not load
    (documents.load: bounds, variables, documents) → invalid; else switch."""
    if bundle is None:
        return Decision("missing")
    if isinstance(bundle, model.BundleError):
        return Decision("invalid", model.Bundle(minor=minor, source="", files=()), error=bundle)
    digest = model.bundle_digest(bundle, variables=variables)
    in_place = target == "apply" or generation == generation_name(minor=bundle.minor, digest=digest)
    action: Action = "switch"
    if recorded.phase == "Done" and (recorded.minor, recorded.digest) == (bundle.minor, digest) and in_place:
        action = "current"
    elif recorded.phase == "Invalid" and recorded.failed_digest == digest and recorded.version == version:
        return Decision("known-invalid", bundle, digest)
    try:
        loaded = documents.load(bundle, variables=variables)
        return Decision(action, bundle, digest, files=loaded.files, manifests=loaded.manifests)
    except model.BundleError as error:
        return Decision("invalid", bundle, digest, error=error)
