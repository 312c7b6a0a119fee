"""The release delta, pure: what a Kubernetes minor removes, locks or changes compared with the minor before
it, as typed data; its JSON form (one shipped file per minor pair, written by ``make release-delta``); and
the delta across several minors (the union of the pairs between them).

No I/O: :mod:`controllers.release_delta.catalog` reads the shipped files. Documents are validated on the way
in (:class:`DeltaError`), so a damaged file is a clear error, never a half-read delta.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar, get_args

SCHEMA = 1

Component = Literal["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"]
COMPONENTS: tuple[Component, ...] = get_args(Component)
MetricType = Literal["counter", "gauge", "histogram", "summary", ""]  # "": a custom collector's (any)
METRIC_TYPES: tuple[MetricType, ...] = get_args(MetricType)
MetricChange = Literal["removed", "hidden"]  # gone from the source; or still there, hidden by its deprecation
METRIC_CHANGES: tuple[MetricChange, ...] = get_args(MetricChange)
KubeadmApiStatus = Literal["served", "deprecated", "experimental"]
KUBEADM_API_STATUSES: tuple[KubeadmApiStatus, ...] = get_args(KubeadmApiStatus)
Installed = Literal["etcd", "coredns", "pause"]  # what kubeadm installs at a default version
INSTALLED: tuple[Installed, ...] = get_args(Installed)

_MINOR = re.compile(r"^(\d{1,3})\.(\d{1,3})$")
_RELEASE = re.compile(r"^v(\d{1,3})\.(\d{1,3})\.(\d{1,4})(-[0-9A-Za-z.]+)?$")


class DeltaError(ValueError):
    """A delta document that does not have the shape this module writes, or minors without a delta."""


def parse_minor(text: str) -> tuple[int, int]:
    """``1.37`` or ``v1.37`` → (1, 37); :class:`DeltaError` when it is no minor."""
    match = _MINOR.match(text.strip().removeprefix("v"))
    if match is None:
        raise DeltaError(f"{text!r} is not a minor such as 1.37")
    return int(match[1]), int(match[2])


def minor_text(minor: tuple[int, int]) -> str:
    return f"{minor[0]}.{minor[1]}"


@dataclasses.dataclass(frozen=True, slots=True)
class Release:
    """The release a minor's facts were read from: its newest patch (or newest prerelease while it has none)."""

    version: str  # v1.37.2, v1.38.0-beta.0

    @property
    def minor(self) -> str:
        match = _RELEASE.match(self.version)
        assert match is not None  # checked on construction by the document reader
        return f"{match[1]}.{match[2]}"

    @property
    def prerelease(self) -> bool:
        return "-" in self.version


@dataclasses.dataclass(frozen=True, slots=True)
class RemovedGate:
    """A feature gate the target no longer knows: a component given it refuses to start."""

    name: str
    components: tuple[Component, ...]  # the components that knew it before
    default: bool  # its default before
    locked: bool  # whether it was already locked to that default


@dataclasses.dataclass(frozen=True, slots=True)
class LockedGate:
    """A feature gate the target locks to its default: a component given the other value refuses to start."""

    name: str
    components: tuple[Component, ...]
    default: bool  # the only value accepted


@dataclasses.dataclass(frozen=True, slots=True)
class Flag:
    """A component's command-line flag the target removes or deprecates. A ``*`` in the name stands for a
    part the source computes (``audit-*-mode``: ``audit-log-mode``, ``audit-webhook-mode``)."""

    component: Component
    name: str
    message: str = ""  # the deprecation message (deprecated flags)

    def matches(self, flag: str) -> bool:
        if "*" not in self.name:
            return flag == self.name
        pattern = "[^-]+".join(re.escape(part) for part in self.name.split("*"))
        return re.fullmatch(pattern, flag) is not None


@dataclasses.dataclass(frozen=True, slots=True)
class RemovedApi:
    """A kind of k8s.io/api the target's apiserver no longer serves."""

    group: str  # "" for the core group
    version: str
    kind: str
    removed: str  # the minor its lifecycle names (or the target's, when it left the source unannounced)
    replacement: str = ""  # group/version Kind

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclasses.dataclass(frozen=True, slots=True)
class RemovedMetric:
    """A metric the target no longer exports by default."""

    name: str
    type: MetricType
    stability: str  # ALPHA, BETA, STABLE, INTERNAL as the source says
    change: MetricChange
    components: tuple[Component, ...]  # the components whose code defined it before
    replacement: str = ""  # a metric its help text names instead, exported by the target

    def series(self) -> tuple[str, ...]:
        """The series names a query may select it by (a histogram's _bucket/_sum/_count, ...)."""
        suffixes = {
            "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("_sum", "_count"),
            "": ("_bucket", "_sum", "_count"),
        }.get(self.type, ())
        return (self.name, *(self.name + suffix for suffix in suffixes))


@dataclasses.dataclass(frozen=True, slots=True)
class KubeadmApi:
    """A kubeadm config API version the target's kubeadm reads."""

    version: str  # kubeadm.k8s.io/v1beta4
    status: KubeadmApiStatus


@dataclasses.dataclass(frozen=True, slots=True)
class VersionChange:
    """A version kubeadm installs by default, before and after."""

    name: Installed
    before: str
    after: str


@dataclasses.dataclass(frozen=True, slots=True)
class Delta:
    """What upgrading from ``source``'s minor to ``target``'s brings (across one or several minors)."""

    source: Release
    target: Release
    gates_removed: tuple[RemovedGate, ...] = ()
    gates_locked: tuple[LockedGate, ...] = ()
    flags_removed: tuple[Flag, ...] = ()
    flags_deprecated: tuple[Flag, ...] = ()
    apis_removed: tuple[RemovedApi, ...] = ()
    metrics_removed: tuple[RemovedMetric, ...] = ()
    kubeadm_apis: tuple[KubeadmApi, ...] = ()  # what the target's kubeadm reads
    kubeadm_apis_removed: tuple[str, ...] = ()
    kubeadm_gates_removed: tuple[str, ...] = ()
    kubeadm_gates_locked: tuple[LockedGate, ...] = ()  # kubeadm's own gates (no components)
    versions: tuple[VersionChange, ...] = ()  # only those that change

    @property
    def prerelease(self) -> bool:
        return self.target.prerelease

    def removed_gate(self, name: str) -> RemovedGate | None:
        return next((g for g in self.gates_removed if g.name == name), None)

    def locked_gate(self, name: str) -> LockedGate | None:
        return next((g for g in self.gates_locked if g.name == name), None)

    def removed_flag(self, component: Component, flag: str) -> Flag | None:
        return next((f for f in self.flags_removed if f.component == component and f.matches(flag)), None)

    def served_kubeadm_api(self, version: str) -> KubeadmApi | None:
        return next((api for api in self.kubeadm_apis if api.version == version), None)


# --- JSON documents -----------------------------------------------------------------------------------------


def to_document(delta: Delta) -> dict[str, Any]:
    """The JSON document of a delta (camelCase keys; the caller keeps the lists sorted)."""
    return {
        "schema": SCHEMA,
        "from": delta.source.version,
        "to": delta.target.version,
        "prerelease": delta.prerelease,
        "featureGates": {
            "removed": [_camel(g) for g in delta.gates_removed],
            "lockedToDefault": [_camel(g) for g in delta.gates_locked],
        },
        "flags": {
            "removed": [_camel(f, drop_empty=True) for f in delta.flags_removed],
            "deprecated": [_camel(f, drop_empty=True) for f in delta.flags_deprecated],
        },
        "apis": {"removed": [_camel(a, drop_empty=True) for a in delta.apis_removed]},
        "metrics": {"removed": [_camel(m, drop_empty=True) for m in delta.metrics_removed]},
        "kubeadm": {
            "apiVersions": [_camel(a) for a in delta.kubeadm_apis],
            "apiVersionsRemoved": list(delta.kubeadm_apis_removed),
            "featureGatesRemoved": list(delta.kubeadm_gates_removed),
            "featureGatesLockedToDefault": [
                {"name": g.name, "default": g.default} for g in delta.kubeadm_gates_locked
            ],
        },
        "componentVersions": [_camel(v) for v in delta.versions],
    }


def dumps(delta: Delta) -> str:
    """The shipped file's text: stable key order, one trailing newline, nothing that changes between runs."""
    return json.dumps(to_document(delta), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _camel(item: Any, *, drop_empty: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in dataclasses.fields(item):
        value = getattr(item, field.name)
        if drop_empty and value == "":
            continue
        head, *rest = field.name.split("_")
        out[head + "".join(word.title() for word in rest)] = (
            list(value) if isinstance(value, tuple) else value
        )
    return out


T = TypeVar("T")


def from_document(document: object) -> Delta:
    """A delta from its JSON document; :class:`DeltaError` naming the first thing out of shape."""
    try:
        return _from_document(_mapping(document, "the document"))
    except (KeyError, TypeError, AttributeError) as error:
        raise DeltaError(f"malformed release delta: {error!r}") from error


def loads(text: str) -> Delta:
    try:
        document = json.loads(text)
    except ValueError as error:
        raise DeltaError(f"release delta is not JSON: {error}") from error
    return from_document(document)


def _from_document(doc: Mapping[str, Any]) -> Delta:
    if doc.get("schema") != SCHEMA:
        raise DeltaError(f"release delta schema {doc.get('schema')!r}, this version reads {SCHEMA}")
    gates, flags, kubeadm = (_mapping(doc[key], key) for key in ("featureGates", "flags", "kubeadm"))

    def items(value: object, where: str, build: Callable[[Mapping[str, Any]], T]) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise DeltaError(f"{where} is not a list")
        return tuple(build(_mapping(item, where)) for item in value)

    def removed_gate(g: Mapping[str, Any]) -> RemovedGate:
        return RemovedGate(
            _text(g["name"]), _components(g["components"]), _bool(g["default"]), _bool(g["locked"])
        )

    def locked_gate(g: Mapping[str, Any]) -> LockedGate:
        return LockedGate(_text(g["name"]), _components(g.get("components", [])), _bool(g["default"]))

    def flag(f: Mapping[str, Any]) -> Flag:
        return Flag(choice(f["component"], COMPONENTS), _text(f["name"]), _text(f.get("message", "")))

    def api(a: Mapping[str, Any]) -> RemovedApi:
        return RemovedApi(
            _text(a.get("group", "")), _text(a["version"]), _text(a["kind"]), _text(a["removed"]),
            _text(a.get("replacement", "")),
        )  # fmt: skip

    def metric(m: Mapping[str, Any]) -> RemovedMetric:
        return RemovedMetric(
            name=_text(m["name"]),
            type=choice(m.get("type", ""), METRIC_TYPES),
            stability=_text(m["stability"]),
            change=choice(m["change"], METRIC_CHANGES),
            components=_components(m["components"]),
            replacement=_text(m.get("replacement", "")),
        )

    def kubeadm_api(a: Mapping[str, Any]) -> KubeadmApi:
        return KubeadmApi(_text(a["version"]), choice(a["status"], KUBEADM_API_STATUSES))

    def version(v: Mapping[str, Any]) -> VersionChange:
        return VersionChange(choice(v["name"], INSTALLED), _text(v["before"]), _text(v["after"]))

    return Delta(
        source=_release(doc["from"]),
        target=_release(doc["to"]),
        gates_removed=items(gates["removed"], "featureGates.removed", removed_gate),
        gates_locked=items(gates["lockedToDefault"], "featureGates.lockedToDefault", locked_gate),
        flags_removed=items(flags["removed"], "flags.removed", flag),
        flags_deprecated=items(flags["deprecated"], "flags.deprecated", flag),
        apis_removed=items(_mapping(doc["apis"], "apis")["removed"], "apis.removed", api),
        metrics_removed=items(_mapping(doc["metrics"], "metrics")["removed"], "metrics.removed", metric),
        kubeadm_apis=items(kubeadm["apiVersions"], "kubeadm.apiVersions", kubeadm_api),
        kubeadm_apis_removed=tuple(_text(v) for v in kubeadm["apiVersionsRemoved"]),
        kubeadm_gates_removed=tuple(_text(v) for v in kubeadm["featureGatesRemoved"]),
        kubeadm_gates_locked=items(
            kubeadm["featureGatesLockedToDefault"], "kubeadm.featureGatesLockedToDefault", locked_gate
        ),
        versions=items(doc["componentVersions"], "componentVersions", version),
    )


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DeltaError(f"{where} is not an object")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise DeltaError(f"{value!r} is not a string")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise DeltaError(f"{value!r} is not a boolean")
    return value


C = TypeVar("C", bound=str)


def choice(value: object, choices: tuple[C, ...]) -> C:
    for choice in choices:
        if value == choice:
            return choice
    raise DeltaError(f"{value!r} is not one of {', '.join(repr(c) for c in choices)}")


def _components(value: object) -> tuple[Component, ...]:
    if not isinstance(value, list):
        raise DeltaError(f"components {value!r} is not a list")
    return tuple(choice(c, COMPONENTS) for c in value)


def _release(value: object) -> Release:
    if not isinstance(value, str) or not _RELEASE.match(value):
        raise DeltaError(f"{value!r} is not a release version such as v1.37.2")
    return Release(value)


# --- across several minors ----------------------------------------------------------------------------------


def combine(deltas: Sequence[Delta]) -> Delta:
    """The delta across consecutive pairs (1.35→1.36, 1.36→1.37 gives 1.35→1.37): the union of what each
    removes, locks and deprecates (a deprecated flag or a locked gate that a later pair removes is listed
    as removed only); the target's kubeadm API versions; the installed versions from first to last."""
    if not deltas:
        raise DeltaError("no delta to combine")
    for earlier, later in itertools.pairwise(deltas):
        if earlier.target.minor != later.source.minor:
            raise DeltaError(f"{earlier.target.minor} and {later.source.minor} are not consecutive pairs")
    if len(deltas) == 1:
        return deltas[0]
    removed_gates = _union((d.gates_removed for d in deltas), key=lambda g: g.name, merge=_merge_components)
    gone = {g.name for g in removed_gates}
    removed_flags = _union((d.flags_removed for d in deltas), key=lambda f: (f.component, f.name))
    gone_flags = {(f.component, f.name) for f in removed_flags}
    gone_kubeadm = set().union(*(d.kubeadm_gates_removed for d in deltas))
    before = {v.name: v.before for d in reversed(deltas) for v in d.versions}
    after = {v.name: v.after for d in deltas for v in d.versions}
    return Delta(
        source=deltas[0].source,
        target=deltas[-1].target,
        gates_removed=removed_gates,
        gates_locked=tuple(
            g
            for g in _union((d.gates_locked for d in deltas), key=lambda g: g.name, merge=_merge_components)
            if g.name not in gone
        ),
        flags_removed=removed_flags,
        flags_deprecated=tuple(
            f
            for f in _union((d.flags_deprecated for d in deltas), key=lambda f: (f.component, f.name))
            if (f.component, f.name) not in gone_flags
        ),
        apis_removed=_union((d.apis_removed for d in deltas), key=lambda a: (a.group, a.version, a.kind)),
        metrics_removed=_union((d.metrics_removed for d in deltas), key=lambda m: m.name),
        kubeadm_apis=deltas[-1].kubeadm_apis,
        kubeadm_apis_removed=tuple(sorted(set().union(*(d.kubeadm_apis_removed for d in deltas)))),
        kubeadm_gates_removed=tuple(sorted(gone_kubeadm)),
        kubeadm_gates_locked=tuple(
            g
            for g in _union((d.kubeadm_gates_locked for d in deltas), key=lambda g: g.name)
            if g.name not in gone_kubeadm
        ),
        versions=tuple(
            VersionChange(name, before[name], after[name])
            for name in INSTALLED
            if name in after and before[name] != after[name]
        ),
    )


def _union(
    groups: Iterable[Iterable[T]], *, key: Callable[[T], Any], merge: Callable[[T, T], T] | None = None
) -> tuple[T, ...]:
    """The items of all groups, one per key (the first; ``merge`` folds a later one in), sorted by key."""
    by_key: dict[Any, T] = {}
    for group in groups:
        for item in group:
            k = key(item)
            by_key[k] = merge(by_key[k], item) if k in by_key and merge else by_key.get(k, item)
    return tuple(by_key[k] for k in sorted(by_key))


G = TypeVar("G", RemovedGate, LockedGate)


def _merge_components(first: G, later: G) -> G:
    components = tuple(c for c in COMPONENTS if c in first.components or c in later.components)
    return dataclasses.replace(first, components=components)
