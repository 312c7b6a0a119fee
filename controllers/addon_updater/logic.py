"""The addon-updater's decisions, pure: which bundle, what it contains, what to apply, what to prune.

No I/O here: the bundle arrives as (file name, text) pairs, the cluster as plain dicts. Everything that can
be wrong with a bundle is found here, before anything is switched.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from controllers.bundles import documents, model
from controllers.structs import fields

JSON = dict[str, Any]

# Every object the apply target applies carries this label (value: the release) and these annotations.
BUNDLE_LABEL = "addons.kube-upgrade-controllers.io/bundle"
MINOR_ANNOTATION = "addons.kube-upgrade-controllers.io/minor"
DIGEST_ANNOTATION = "addons.kube-upgrade-controllers.io/digest"
# Whether the suite created the object ("created") or found it there at its first apply ("adopted"): written
# at the first apply and never changed. Only a created object is ever pruned.
ORIGIN_ANNOTATION = "addons.kube-upgrade-controllers.io/origin"
# "disabled" on an object: never pruned (Flux's kustomize.toolkit.fluxcd.io/prune: disabled).
PRUNE_ANNOTATION = "addons.kube-upgrade-controllers.io/prune"
# ConfigMaps that carry a bundle are labelled with its minor: addons.kube-upgrade-controllers.io/minor=1.36
ADDON_MANAGER_MODE_LABEL = "addonmanager.kubernetes.io/mode"

NAMESPACE_KIND = ("", "Namespace")
CRD_KIND = ("apiextensions.k8s.io", "CustomResourceDefinition")

_GENERATION = re.compile(r"^\.\.(\d{1,4}\.\d{1,4})_([0-9a-f]{12})$")


Origin = Literal["created", "adopted"]


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
    namespace when a namespaced object names none. Labels of the bundle (addonmanager mode…) are kept. (Its
    origin annotation is added once the object was read: ``with_origin``.)"""
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


# --- pruning: only what the suite created (its inventory) -------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Created:
    """An object the suite created (an entry of its inventory), with the UID it had then."""

    key: model.ObjectKey
    uid: str


def origin_of(live: Mapping[str, Any] | None) -> Origin:
    """An object that does not exist yet will be created; one that exists keeps the origin recorded on it at
    the suite's first apply, and one without it was there before: adopted."""
    if live is None:
        return "created"
    recorded = fields.dig(live, "metadata", "annotations", ORIGIN_ANNOTATION)
    return "created" if recorded == "created" else "adopted"


def with_origin(body: Mapping[str, Any], origin: Origin) -> JSON:
    """The labelled body with its origin annotation."""
    metadata = {**body["metadata"]}
    metadata["annotations"] = {**(metadata.get("annotations") or {}), ORIGIN_ANNOTATION: origin}
    return {**body, "metadata": metadata}


def parse_inventory(text: str) -> tuple[Created, ...]:
    """The inventory as the state ConfigMap holds it (a JSON list); what is not a well-formed entry is left
    out (the state is read from the cluster: untrusted)."""
    try:
        items = json.loads(text) if text else []
    except ValueError:
        return ()
    entries = set()
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        values = [item.get(field) for field in ("group", "kind", "namespace", "name", "uid")]
        if all(isinstance(value, str) for value in values) and values[1] and values[3]:
            group, kind, namespace, name, uid = (str(value) for value in values)
            entries.add(Created(model.ObjectKey(group, kind, namespace, name), uid))
    return tuple(sorted(entries))


def inventory_text(entries: Iterable[Created]) -> str:
    return json.dumps(
        [
            {
                "group": e.key.group,
                "kind": e.key.kind,
                "namespace": e.key.namespace,
                "name": e.key.name,
                "uid": e.uid,
            }
            for e in sorted(set(entries))
        ],
        separators=(",", ":"),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class PrunePlan:
    doomed: tuple[Created, ...]  # in deletion order
    skipped: str = ""  # why nothing is pruned although objects left the bundle ("" when not skipped)


def prune_plan(
    *, inventory: Iterable[Created], desired: Iterable[model.ObjectKey], max_fraction: float
) -> PrunePlan:
    """What to delete: the created objects (inventory) that are not in the new bundle, in this order:
    namespaced objects, cluster-scoped ones, CRDs, Namespaces last (deleting a CRD or a Namespace deletes what
    is in it). Nothing when the new bundle is empty (an empty bundle is more likely a mistake than a wish to
    delete everything, as Argo CD's automated sync judges) or when more than ``max_fraction`` of the created
    objects would go; ``skipped`` says why."""
    created, wanted = set(inventory), set(desired)
    leaving = sorted((entry for entry in created if entry.key not in wanted), key=_prune_rank)
    if not leaving:
        return PrunePlan(())
    if not wanted:
        return PrunePlan(
            (), f"the bundle is empty: an empty bundle prunes nothing ({len(leaving)} object(s) kept)"
        )
    if len(leaving) > max_fraction * len(created):
        return PrunePlan(
            (),
            f"{len(leaving)} of the {len(created)} object(s) the suite created would be pruned, more than "
            f"pruneMaxFraction {max_fraction:g}: nothing pruned",
        )
    return PrunePlan(tuple(leaving))


def _prune_rank(entry: Created) -> tuple[int, model.ObjectKey]:
    kind = (entry.key.group, entry.key.kind)
    return (
        3 if kind == NAMESPACE_KIND else 2 if kind == CRD_KIND else 0 if entry.key.namespace else 1
    ), entry.key


def keep_reason(entry: Created, live: Mapping[str, Any], *, release: str) -> str | None:
    """Why the live object must not be deleted after all (None: delete it): it is not the one the suite
    created (another UID), it no longer carries this release's label, it was adopted, or it opted out."""
    metadata = fields.mapping(live.get("metadata"))
    annotations = fields.mapping(metadata.get("annotations"))
    if entry.uid and metadata.get("uid") != entry.uid:
        return "replaced by another object since the suite created it"
    if fields.mapping(metadata.get("labels")).get(BUNDLE_LABEL) != release:
        return f"it no longer carries {BUNDLE_LABEL}={release}"
    if annotations.get(ORIGIN_ANNOTATION) != "created":
        return "adopted: it existed before the suite first applied it"
    if annotations.get(PRUNE_ANNOTATION) == "disabled":
        return f"{PRUNE_ANNOTATION}: disabled"
    return None


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

SwitchAction = Literal["missing", "invalid", "known-invalid", "current", "switch"]


BundleHealth = Literal["Healthy", "Progressing", "Unhealthy"]


def health(*, unavailable: int, waited: float, timeout: float) -> BundleHealth:
    """A switched bundle's health: every workload available; some not yet, within ``timeout`` seconds of the
    switch; or some still not after that."""
    if not unavailable:
        return "Healthy"
    return "Progressing" if waited < timeout else "Unhealthy"


def health_settled(*, recorded: str, now: BundleHealth) -> bool:
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
class SwitchDecision:
    action: SwitchAction
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
) -> SwitchDecision:
    """The whole decision of one round, in this order: no bundle fits the agreed minor (``bundle`` None) →
    missing; it cannot be read → invalid; the same content is in place (and, for the directory target, the
    directory shows it: ``generation``) → current; it was found invalid for this agreed version already →
    known-invalid (reported once; a changed bundle, variable or version is tried again); it does not load
    (documents.load: bounds, variables, documents) → invalid; else switch."""
    if bundle is None:
        return SwitchDecision("missing")
    if isinstance(bundle, model.BundleError):
        return SwitchDecision("invalid", model.Bundle(minor=minor, source="", files=()), error=bundle)
    digest = model.bundle_digest(bundle, variables=variables)
    in_place = target == "apply" or generation == generation_name(minor=bundle.minor, digest=digest)
    action: SwitchAction = "switch"
    if recorded.phase == "Done" and (recorded.minor, recorded.digest) == (bundle.minor, digest) and in_place:
        action = "current"
    elif recorded.phase == "Invalid" and recorded.failed_digest == digest and recorded.version == version:
        return SwitchDecision("known-invalid", bundle, digest)
    try:
        loaded = documents.load(bundle, variables=variables)
        return SwitchDecision(action, bundle, digest, files=loaded.files, manifests=loaded.manifests)
    except model.BundleError as error:
        return SwitchDecision("invalid", bundle, digest, error=error)
