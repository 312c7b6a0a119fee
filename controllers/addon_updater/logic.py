"""The addon-updater's decisions, pure: which bundle, what it contains, what to apply, what to prune.

No I/O here: the bundle arrives as (file name, text) pairs, the cluster as plain dicts. Everything that can
be wrong with a bundle is found here, before anything is switched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

import yaml

JSON = dict[str, Any]
Policy = Literal["exact", "nearestLower"]
FailureReason = Literal["variable", "parse", "invalid", "duplicate", "unknown_kind", "dry_run"]
FAILURE_REASONS: tuple[FailureReason, ...] = get_args(FailureReason)

# Every object the apply target owns carries this label (value: the release), and only such objects are
# ever pruned.
BUNDLE_LABEL = "addons.kube-upgrade-controllers.io/bundle"
MINOR_ANNOTATION = "addons.kube-upgrade-controllers.io/minor"
DIGEST_ANNOTATION = "addons.kube-upgrade-controllers.io/digest"
# ConfigMaps that carry a bundle are labelled with its minor: addons.kube-upgrade-controllers.io/minor=1.36
CONFIGMAP_MINOR_LABEL = "addons.kube-upgrade-controllers.io/minor"
ADDON_MANAGER_MODE_LABEL = "addonmanager.kubernetes.io/mode"

NAMESPACE_KIND = ("", "Namespace")
CRD_KIND = ("apiextensions.k8s.io", "CustomResourceDefinition")
BUNDLE_FILE_SUFFIXES = (".yaml", ".yml", ".json")

_MINOR = re.compile(r"^(\d{1,4})\.(\d{1,4})$")
_VARIABLE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GENERATION = re.compile(r"^\.\.(\d{1,4}\.\d{1,4})_([0-9a-f]{12})$")


class BundleError(Exception):
    """The bundle cannot be switched to; ``reason`` is the metric label, the message names file and document."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class BundleFile:
    name: str
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Bundle:
    minor: str  # "1.36"
    source: str  # where it came from, for logs and Events
    files: tuple[BundleFile, ...]


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    """The identity of an object: API group (not version), kind, namespace ("" when cluster-scoped), name."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{kind} {self.namespace}/{self.name}" if self.namespace else f"{kind} {self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    """One document of a bundle, after substitution and parsing."""

    file: str
    index: int  # position of the document in its file, from 0
    body: JSON

    @property
    def api_version(self) -> str:
        return str(self.body["apiVersion"])

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def group(self) -> str:
        return group_of(self.api_version)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"].get("namespace") or "")

    @property
    def where(self) -> str:
        return f"{self.file} document {self.index + 1}"


@dataclasses.dataclass(frozen=True, slots=True)
class LiveObject:
    """An object found in the cluster with the bundle label."""

    key: ObjectKey
    uid: str
    labels: Mapping[str, str]


def group_of(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


# --- selection ---------------------------------------------------------------------------------------------


def parse_minor(text: str) -> tuple[int, int] | None:
    """``1.36`` → (1, 36); anything else → None (directories such as ``README`` or ``1.36.2`` are ignored)."""
    match = _MINOR.match(text)
    return (int(match[1]), int(match[2])) if match else None


def select_bundle(*, wanted: tuple[int, int], available: Iterable[str], policy: Policy) -> str | None:
    """The bundle minor to use for the agreed ``wanted`` minor: the same minor, or with ``nearestLower`` the
    closest minor below it when that one is missing. None: no bundle fits (change nothing)."""
    minors = {key: text for text in available if (key := parse_minor(text)) is not None}
    if wanted in minors:
        return minors[wanted]
    if policy == "nearestLower":
        lower = [key for key in minors if key < wanted]
        if lower:
            return minors[max(lower)]
    return None


# --- variables ---------------------------------------------------------------------------------------------


def variable_problem(values: Sequence[str]) -> str | None:
    """Config check for ``NAME=VALUE`` items."""
    try:
        parse_variables(values)
    except ValueError as error:
        return str(error)
    return None


def parse_variables(values: Sequence[str]) -> dict[str, str]:
    """``["CLUSTER_DOMAIN=cluster.local"]`` → {"CLUSTER_DOMAIN": "cluster.local"}; raises ValueError."""
    result: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not _VARIABLE_NAME.match(name):
            raise ValueError(f"{item!r} is not NAME=VALUE with NAME made of letters, digits and _")
        result[name] = value
    return result


def substitute(text: str, *, variables: Mapping[str, str], file: str) -> str:
    """Replace every ``${NAME}``; ``$${NAME}`` stays as a literal ``${NAME}``. An unknown NAME is an error."""
    unknown: list[str] = []

    def replace(match: re.Match[str]) -> str:
        escaped, name = match[1], match[2]
        if escaped:
            return "${" + name + "}"
        if name not in variables:
            unknown.append(name)
            return match[0]
        return variables[name]

    result = _VARIABLE.sub(replace, text)
    if unknown:
        names = ", ".join(sorted(set(unknown)))
        raise BundleError(
            "variable",
            f"{file}: unknown variable(s) {names} (known: {', '.join(sorted(variables)) or 'none'})",
        )
    return result


# --- documents ---------------------------------------------------------------------------------------------


def bundle_digest(bundle: Bundle, *, variables: Mapping[str, str]) -> str:
    """sha256 over the files (by name) and the variables: equal digest ⇔ the same objects would be applied."""
    sha = hashlib.sha256()
    for file in sorted(bundle.files, key=lambda f: f.name):
        sha.update(b"file\0" + file.name.encode() + b"\0" + file.text.encode() + b"\0")
    for name in sorted(variables):
        sha.update(b"var\0" + name.encode() + b"\0" + variables[name].encode() + b"\0")
    return sha.hexdigest()


def short_digest(digest: str) -> str:
    return digest[:12]


def render(bundle: Bundle, *, variables: Mapping[str, str]) -> tuple[BundleFile, ...]:
    """The bundle's files with variables substituted (what the directory target writes)."""
    return tuple(
        BundleFile(name=f.name, text=substitute(f.text, variables=variables, file=f.name))
        for f in bundle.files
    )


def parse_documents(files: Iterable[BundleFile]) -> tuple[Manifest, ...]:
    """Every document of every file, validated: parses, is a mapping with apiVersion, kind and metadata.name;
    ``kind: List`` is flattened; empty documents are skipped; no object twice. Raises BundleError."""
    manifests: list[Manifest] = []
    for file in files:
        try:
            documents = list(yaml.safe_load_all(file.text))
        except yaml.YAMLError as error:
            raise BundleError("parse", f"{file.name}: not valid YAML: {_one_line(error)}") from error
        for index, document in enumerate(documents):
            if document is None:
                continue
            where = f"{file.name} document {index + 1}"
            items = _list_items(document, where)
            for item in items:
                _check_document(item, where)
                manifests.append(Manifest(file=file.name, index=index, body=item))
    seen: dict[tuple[str, str, str, str], str] = {}
    for manifest in manifests:
        identity = (manifest.group, manifest.kind, manifest.namespace, manifest.name)
        if identity in seen:
            raise BundleError(
                "duplicate", f"{manifest.where}: {manifest.kind} {manifest.name} is also in {seen[identity]}"
            )
        seen[identity] = manifest.where
    return tuple(manifests)


def _list_items(document: object, where: str) -> list[Any]:
    if isinstance(document, dict) and document.get("kind") == "List" and "items" in document:
        items = document["items"]
        if not isinstance(items, list):
            raise BundleError("invalid", f"{where}: List items must be a list")
        return items
    return [document]


def _check_document(document: object, where: str) -> None:
    if not isinstance(document, dict):
        raise BundleError("invalid", f"{where}: not a mapping (got {type(document).__name__})")
    for field in ("apiVersion", "kind"):
        value = document.get(field)
        if not isinstance(value, str) or not value:
            raise BundleError("invalid", f"{where}: missing {field}")
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        raise BundleError("invalid", f"{where}: {document['kind']} without metadata.name")
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    if namespace is not None and not isinstance(namespace, str):
        raise BundleError("invalid", f"{where}: metadata.namespace must be a string")
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    if labels is not None and not isinstance(labels, dict):
        raise BundleError("invalid", f"{where}: metadata.labels must be a mapping")


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def is_first_phase(manifest: Manifest) -> bool:
    """Namespaces and CRDs go first: the rest may live in them or be of their kinds."""
    return (manifest.group, manifest.kind) in (NAMESPACE_KIND, CRD_KIND)


def ordered(manifests: Iterable[Manifest]) -> tuple[Manifest, ...]:
    """Namespaces, then CRDs, then everything else, each in bundle order."""
    items = list(manifests)
    rank = {NAMESPACE_KIND: 0, CRD_KIND: 1}
    return tuple(sorted(items, key=lambda m: rank.get((m.group, m.kind), 2)))


def bundle_crd_kinds(manifests: Iterable[Manifest]) -> dict[tuple[str, str], JSON]:
    """(group, kind) → the CRD body, for the CRDs the bundle itself defines."""
    kinds: dict[tuple[str, str], JSON] = {}
    for manifest in manifests:
        if (manifest.group, manifest.kind) == CRD_KIND:
            spec = manifest.body.get("spec") or {}
            names = spec.get("names") or {}
            if (
                isinstance(spec, dict)
                and isinstance(names, dict)
                and spec.get("group")
                and names.get("kind")
                and names.get("plural")
            ):
                kinds[(str(spec["group"]), str(names["kind"]))] = manifest.body
    return kinds


def bundle_namespaces(manifests: Iterable[Manifest]) -> set[str]:
    return {m.name for m in manifests if (m.group, m.kind) == NAMESPACE_KIND}


def object_key(manifest: Manifest, *, namespaced: bool, default_namespace: str) -> ObjectKey:
    namespace = (manifest.namespace or default_namespace) if namespaced else ""
    return ObjectKey(group=manifest.group, kind=manifest.kind, namespace=namespace, name=manifest.name)


def labelled_body(
    manifest: Manifest, *, namespaced: bool, default_namespace: str, release: str, minor: str, digest: str
) -> JSON:
    """The object as applied: the bundle's document plus the bundle label and annotations, and the default
    namespace when a namespaced object names none. Labels of the bundle (addonmanager mode…) are kept."""
    body = {**manifest.body}
    metadata = {**body["metadata"]}
    metadata["labels"] = {**(metadata.get("labels") or {}), BUNDLE_LABEL: release}
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        MINOR_ANNOTATION: minor,
        DIGEST_ANNOTATION: short_digest(digest),
    }
    if namespaced:
        metadata["namespace"] = manifest.namespace or default_namespace
    else:
        metadata.pop("namespace", None)
    body["metadata"] = metadata
    return body


# --- pruning -----------------------------------------------------------------------------------------------


def live_object(obj: Mapping[str, Any], *, group: str, kind: str) -> LiveObject:
    metadata = obj.get("metadata") or {}
    return LiveObject(
        key=ObjectKey(
            group=group, kind=kind, namespace=str(metadata.get("namespace") or ""), name=str(metadata["name"])
        ),
        uid=str(metadata.get("uid") or ""),
        labels=dict(metadata.get("labels") or {}),
    )


def prune_set(
    *, live: Iterable[LiveObject], desired: Iterable[ObjectKey], release: str
) -> tuple[LiveObject, ...]:
    """The objects to delete: labelled with this release's bundle label and not in the new bundle. Never an
    object without the label. Order: namespaced objects, cluster-scoped ones, CRDs, Namespaces last (deleting
    a CRD or a Namespace deletes what is in it)."""
    wanted = set(desired)
    doomed = {
        obj.key: obj for obj in live if obj.labels.get(BUNDLE_LABEL) == release and obj.key not in wanted
    }

    def rank(obj: LiveObject) -> tuple[int, ObjectKey]:
        kind = (obj.key.group, obj.key.kind)
        order = 3 if kind == NAMESPACE_KIND else 2 if kind == CRD_KIND else 0 if obj.key.namespace else 1
        return order, obj.key

    return tuple(sorted(doomed.values(), key=rank))


# --- health ------------------------------------------------------------------------------------------------


def crd_established(crd: Mapping[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def workload_problem(obj: Mapping[str, Any]) -> str | None:
    """Why a Deployment or DaemonSet is not available yet (None: it is), after ``kubectl rollout status``."""
    kind = obj.get("kind")
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(metadata.get("generation") or 0):
        return "the controller has not observed the latest spec"
    if kind == "Deployment":
        replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        updated = int(status.get("updatedReplicas") or 0)
        if updated < replicas:
            return f"{updated} of {replicas} replicas updated"
        if int(status.get("replicas") or 0) > updated:
            return "old replicas are pending termination"
        available = int(status.get("availableReplicas") or 0)
        if available < replicas:
            return f"{available} of {replicas} replicas available"
        return None
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        updated = int(status.get("updatedNumberScheduled") or 0)
        if updated < desired:
            return f"{updated} of {desired} pods updated"
        available = int(status.get("numberAvailable") or 0)
        if available < desired:
            return f"{available} of {desired} pods available"
        return None
    return None


WORKLOAD_KINDS = (("apps", "Deployment"), ("apps", "DaemonSet"))


def workloads(keys: Iterable[ObjectKey]) -> tuple[ObjectKey, ...]:
    return tuple(sorted(k for k in keys if (k.group, k.kind) in WORKLOAD_KINDS))


def workload_keys(manifests: Iterable[Manifest], *, default_namespace: str) -> tuple[ObjectKey, ...]:
    """The bundle's Deployments and DaemonSets (namespaced kinds)."""
    return workloads(object_key(m, namespaced=True, default_namespace=default_namespace) for m in manifests)


def unavailable(
    *, wanted: Iterable[ObjectKey], live: Mapping[ObjectKey, Mapping[str, Any]]
) -> dict[ObjectKey, str]:
    """The wanted workloads that are not available, with the reason."""
    result: dict[ObjectKey, str] = {}
    for key in wanted:
        obj = live.get(key)
        problem = "not found" if obj is None else workload_problem(obj)
        if problem:
            result[key] = problem
    return result


# --- the directory target ----------------------------------------------------------------------------------


def generation_name(*, minor: str, digest: str) -> str:
    """The directory one bundle is written to, next to the target symlink: ``..1.36_0123456789ab``."""
    return f"..{minor}_{short_digest(digest)}"


def parse_generation(name: str) -> tuple[str, str] | None:
    """(minor, short digest) of a generation directory name, else None."""
    match = _GENERATION.match(name)
    return (match[1], match[2]) if match else None


def stale_generations(names: Iterable[str], *, keep: Iterable[str]) -> tuple[str, ...]:
    """Generation directories to delete: all but those in ``keep`` (the current and the previous one, so a
    reader still inside the previous bundle can finish reading it)."""
    kept = set(keep)
    return tuple(sorted(n for n in names if parse_generation(n) is not None and n not in kept))


def bundle_file_name(name: str) -> bool:
    return name.endswith(BUNDLE_FILE_SUFFIXES) and not name.startswith(".")


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
    bundle: Bundle | None = None
    digest: str = ""
    files: tuple[BundleFile, ...] = ()  # rendered (variables substituted)
    manifests: tuple[Manifest, ...] = ()
    error: BundleError | None = None  # why it is invalid


def decide(
    *,
    bundle: Bundle | BundleError | None,
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
    known-invalid (reported once; a changed bundle, variable or version is tried again); it does not render
    or parse → invalid; else switch."""
    if bundle is None:
        return Decision("missing")
    if isinstance(bundle, BundleError):
        return Decision("invalid", Bundle(minor=minor, source="", files=()), error=bundle)
    digest = bundle_digest(bundle, variables=variables)
    in_place = target == "apply" or generation == generation_name(minor=bundle.minor, digest=digest)
    action: Action = "switch"
    if recorded.phase == "Done" and (recorded.minor, recorded.digest) == (bundle.minor, digest) and in_place:
        action = "current"
    elif recorded.phase == "Invalid" and recorded.failed_digest == digest and recorded.version == version:
        return Decision("known-invalid", bundle, digest)
    try:
        files = render(bundle, variables=variables)
        return Decision(action, bundle, digest, files=files, manifests=parse_documents(files))
    except BundleError as error:
        return Decision("invalid", bundle, digest, error=error)
