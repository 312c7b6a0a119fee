"""upgrade-readiness's check interface, pure: what a check is given — the objects its stores hold as typed
views, each apiserver's deprecated-API metrics, the next bundle as addon-updater's code sees it, all in one
:class:`Evidence` — and what it returns: a :class:`Judgement` of :class:`Blocker` s, and why it could not be
(fully) evaluated. The checks are ``checks/*.py``, listed once in ``checks/__init__.py``."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from controllers.agreement import masters, selector, version
from controllers.agreement.version import Version

SHOWN = 5  # subjects named in one message


@dataclasses.dataclass(frozen=True, slots=True)
class Blocker:
    check: str
    subject: str  # what blocks: "Node w1", "CustomResourceDefinition widgets.example.com", ...
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class Judgement:
    """One check's result: its blockers, and why it could not be (fully) evaluated."""

    check: str
    findings: tuple[Blocker, ...] = ()
    unknown: str = ""


def shown(names: Sequence[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


@dataclasses.dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    kubelet: str  # as reported
    version: Version | None
    master: bool


def node_view(obj: Mapping[str, Any], *, selectors: Sequence[selector.Selector]) -> NodeView:
    reported = masters.kubelet_version(obj)
    return NodeView(
        name=str(obj["metadata"]["name"]),
        kubelet=reported,
        version=version.parse_version(reported),
        master=selector.matches_any(selectors, masters.node_labels(obj)),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class CrdView:
    name: str
    served: frozenset[str]
    stored: tuple[str, ...]  # status.storedVersions


def crd_view(obj: Mapping[str, Any]) -> CrdView:
    versions = obj.get("spec", {}).get("versions") or []
    return CrdView(
        name=str(obj["metadata"]["name"]),
        served=frozenset(str(v["name"]) for v in versions if v.get("served")),
        stored=tuple(str(v) for v in obj.get("status", {}).get("storedVersions") or []),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class PdbView:
    namespace: str
    name: str
    selector: Mapping[str, Any] | None  # spec.selector (None: selects no pod)
    disruptions_allowed: int | None  # None: the disruption controller has not computed it (yet)


@dataclasses.dataclass(frozen=True, slots=True)
class PodView:
    namespace: str
    name: str
    node: str
    labels: Mapping[str, str]


def pdb_view(obj: Mapping[str, Any]) -> PdbView:
    meta, status = obj["metadata"], obj.get("status") or {}
    computed = (status.get("observedGeneration") or 0) >= (meta.get("generation") or 0) and status
    allowed = status.get("disruptionsAllowed") if computed else None
    return PdbView(
        namespace=str(meta["namespace"]),
        name=str(meta["name"]),
        selector=obj.get("spec", {}).get("selector"),
        disruptions_allowed=int(allowed) if allowed is not None else None,
    )


def pod_view(obj: Mapping[str, Any]) -> PodView | None:
    """Pods bound to a node that a drain would evict (finished pods are not evicted)."""
    node = obj.get("spec", {}).get("nodeName")
    if not node or obj.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return None
    meta = obj["metadata"]
    return PodView(str(meta["namespace"]), str(meta["name"]), str(node), dict(meta.get("labels") or {}))


Gvr = tuple[str, str, str, str]  # group, version, resource, subresource
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


DEPRECATED_METRIC = "apiserver_requested_deprecated_apis"


REQUESTS_METRIC = "apiserver_request_total"


@dataclasses.dataclass(frozen=True, slots=True)
class ApiserverMetrics:
    """What one apiserver's /metrics says about deprecated APIs: the APIs its gauge marks as requested
    (with their removed_release), and the request counter per group/version/resource."""

    address: str
    deprecated: Mapping[Gvr, str]  # → removed_release ("" when none is planned)
    requests: Mapping[Gvr, float]
    error: str = ""  # not evaluated: why


def _series(line: str) -> tuple[dict[str, str], float] | None:
    head, _, rest = line.rpartition("}")
    labels_text = head.partition("{")[2]
    try:
        value = float(rest.split()[0])
    except (IndexError, ValueError):
        return None
    return {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(labels_text)}, value


def parse_apiserver_metrics(text: str, *, address: str) -> ApiserverMetrics:
    """The two metrics out of an apiserver's /metrics text (every other line is skipped unparsed)."""
    deprecated: dict[Gvr, str] = {}
    requests: dict[Gvr, float] = {}
    for line in text.splitlines():
        if line.startswith(DEPRECATED_METRIC + "{"):
            parsed = _series(line)
            if parsed and parsed[1] == 1:
                labels = parsed[0]
                deprecated[_gvr(labels)] = labels.get("removed_release", "")
        elif line.startswith(REQUESTS_METRIC + "{"):
            parsed = _series(line)
            if parsed:
                key = _gvr(parsed[0])
                requests[key] = requests.get(key, 0.0) + parsed[1]
    return ApiserverMetrics(address=address, deprecated=deprecated, requests=requests)


def _gvr(labels: Mapping[str, str]) -> Gvr:
    return (labels.get("group", ""), labels.get("version", ""), labels.get("resource", ""),
            labels.get("subresource", ""))  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """The request counter of one API on one apiserver, as last seen, and when it last went up."""

    count: float
    seen_at: float
    increased_at: float | None  # None: never seen requested
    rate: float | None = None  # requests per second between the last two observations (None: seen once)


@dataclasses.dataclass(frozen=True, slots=True)
class BundleProbe:
    """What addon-updater's own code said about the bundle for the target minor."""

    minor: str  # the minor looked for
    chosen: str  # the bundle's minor ("" when none fits)
    source: str
    problem: str = ""  # why it is invalid ("" when valid)


@dataclasses.dataclass(frozen=True, slots=True)
class Evidence:
    """What the checks are given: the target, the time (the event loop's clock), and what the inputs the enabled
    checks need show now (the others are left empty)."""

    target: Version
    now: float
    nodes: Sequence[NodeView] = ()
    crds: Sequence[CrdView] = ()
    pdbs: Sequence[PdbView] = ()
    pods: Sequence[PodView] = ()
    samples: Sequence[ApiserverMetrics] = ()
    usage: Mapping[tuple[str, Gvr], Usage] = dataclasses.field(default_factory=dict)
    deprecated_api_window_seconds: float = 86400.0
    bundle: BundleProbe | str = ""  # the probe, or why the bundle source could not be read
