"""upgrade-readiness's check interface, pure: what a check is given — the objects its stores hold as typed
views, each apiserver's deprecated-API metrics, the next bundle as addon-updater's code sees it, the release
delta of the target, all in one :class:`Evidence` — and what it returns: a :class:`Judgement` of
:class:`Finding` s, each with a severity, and why it could not be (fully) evaluated. The checks are
``checks/*.py``, listed once in ``checks/__init__.py``."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

from controllers.agreement import masters, selector, version
from controllers.agreement.version import Version
from controllers.release_delta import model
from controllers.upgrade_readiness.checks import component_settings

SHOWN = 5  # subjects named in one message


# blocker: the upgrade must wait for it; warning: something to know that does not block (it does with
# --strict); info: what the upgrade brings, nothing to fix.
Severity = Literal["blocker", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    check: str
    subject: str  # what it is about: "Node w1", "CustomResourceDefinition widgets.example.com", ...
    message: str
    severity: Severity = "blocker"


@dataclasses.dataclass(frozen=True, slots=True)
class Judgement:
    """One check's result: its findings, and why it could not be (fully) evaluated."""

    check: str
    findings: tuple[Finding, ...] = ()
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
class StaticPod:
    """A control-plane static pod as its mirror pod shows it: what it sets for its component, its images."""

    node: str
    settings: tuple[component_settings.Settings, ...]
    images: Mapping[str, str]  # container name → image


def static_pod_view(obj: Mapping[str, Any]) -> StaticPod | None:
    """A mirror pod (the kubelet's copy of a static pod; None for any other pod)."""
    if component_settings.MIRROR_ANNOTATION not in (obj.get("metadata", {}).get("annotations") or {}):
        return None
    spec = obj.get("spec") or {}
    containers = spec.get("containers")
    images = {
        str(c.get("name")): str(c.get("image"))
        for c in (containers if isinstance(containers, list) else [])
        if isinstance(c, Mapping) and isinstance(c.get("image"), str)
    }
    return StaticPod(str(spec.get("nodeName") or ""), component_settings.mirror_pod_settings(obj), images)


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a PrometheusRule: where it is and its expression (untrusted)."""

    namespace: str
    name: str  # the PrometheusRule
    group: str
    rule: str  # the alert's or the recording rule's name
    expr: object

    @property
    def subject(self) -> str:
        return f"PrometheusRule {self.namespace}/{self.name} group {self.group!r} rule {self.rule!r}"


def prometheus_rules(obj: Mapping[str, object]) -> tuple[Rule, ...]:
    """The rules of a PrometheusRule object (spec.groups[].rules[]), whatever their shape (untrusted)."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    spec = obj.get("spec")
    groups = spec.get("groups") if isinstance(spec, Mapping) else None
    namespace, prometheus_rule = str(meta.get("namespace", "")), str(meta.get("name", ""))
    rules = []
    for group in groups if isinstance(groups, list) else []:
        if not isinstance(group, Mapping):
            continue
        items = group.get("rules")
        for rule in items if isinstance(items, list) else []:
            if isinstance(rule, Mapping):
                name = str(rule.get("alert") or rule.get("record") or "")
                rules.append(
                    Rule(namespace, prometheus_rule, str(group.get("name", "")), name, rule.get("expr"))
                )
    return tuple(rules)


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
    # The release delta from the masters' minor to the target, or why there is none.
    delta: model.Delta | str = ""
    static_pods: Sequence[StaticPod] = ()
    # kubeadm's ConfigMaps in kube-system, as read (None: absent, not a kubeadm cluster or not kubeadm's way).
    kubeadm_config: component_settings.ClusterConfiguration | None = None
    kubelet_config: component_settings.Settings | None = None
    kube_proxy_config: component_settings.Settings | None = None
    rules: Sequence[Rule] = ()
