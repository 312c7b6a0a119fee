"""Do all masters agree on one version? The rule every controller acts on (pure: no I/O, no clock).

``evaluate`` judges one moment; ``Tracker`` adds the settle window: an agreement counts only after the
same masters have reported the same version, all Ready, for ``settle_seconds`` without change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

from controllers.agreement.selector import Selector, matches_any
from controllers.agreement.version import Version, image_tag, parse_version
from controllers.structs import fields

VersionSource = Literal["kubelet", "apiserver"]
VERSION_SOURCES: tuple[VersionSource, ...] = get_args(VersionSource)


@dataclasses.dataclass(frozen=True, slots=True)
class MasterStatus:
    name: str
    reported: str  # the version string as reported ("" when none)
    version: Version | None  # None when ``reported`` is not a version
    ready: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    """The masters at one moment and whether they agree (``reason`` says why not)."""

    masters: tuple[MasterStatus, ...]
    version: Version | None
    reason: str = ""

    @property
    def agreed(self) -> bool:
        return self.version is not None

    @property
    def signature(self) -> tuple[object, ...]:
        """What must stay the same for the settle window to run: version and the master set."""
        return (self.version.key if self.version else None, tuple(m.name for m in self.masters))


@dataclasses.dataclass(frozen=True, slots=True)
class Agreement:
    version: Version
    masters: tuple[str, ...]
    since: float  # when the settle window began (the clock the Tracker is fed with)


# The rule's defaults, written once (the controllers' options default to them).
DEFAULT_MIN_MASTERS = 1
DEFAULT_SETTLE_SECONDS = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class Rules:
    min_masters: int = DEFAULT_MIN_MASTERS
    require_ready: bool = True


def node_ready(node: Mapping[str, Any]) -> bool:
    for condition in fields.mappings(fields.dig(node, "status", "conditions")):
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def node_labels(node: Mapping[str, Any]) -> Mapping[str, str]:
    return fields.mapping(fields.dig(node, "metadata", "labels"))


def kubelet_version(node: Mapping[str, Any]) -> str:
    reported = fields.dig(node, "status", "nodeInfo", "kubeletVersion")
    return reported if isinstance(reported, str) else ""


def apiserver_pod_version(pod: Mapping[str, Any]) -> str:
    """The image tag of the kube-apiserver container of a mirror pod (the first container otherwise)."""
    containers = fields.mappings(fields.dig(pod, "spec", "containers"))
    chosen = next(
        (c for c in containers if c.get("name") == "kube-apiserver"), containers[0] if containers else {}
    )
    return image_tag(chosen.get("image"))


def master_statuses(
    nodes: Iterable[Mapping[str, Any]],
    *,
    selectors: Sequence[Selector],
    source: VersionSource = "kubelet",
    apiserver_pods: Iterable[Mapping[str, Any]] = (),
) -> tuple[MasterStatus, ...]:
    """The masters among ``nodes``, sorted by name, each with the version the chosen source reports."""
    by_node: dict[str, str] = {}
    if source == "apiserver":
        for pod in apiserver_pods:
            node_name = fields.dig(pod, "spec", "nodeName")
            if isinstance(node_name, str) and node_name:
                by_node[str(node_name)] = apiserver_pod_version(pod)
    statuses = []
    for node in nodes:
        name = fields.dig(node, "metadata", "name")
        if not isinstance(name, str) or not name or not matches_any(selectors, node_labels(node)):
            continue  # a Node without a name is no master anyone can name
        reported = kubelet_version(node) if source == "kubelet" else by_node.get(name, "")
        statuses.append(
            MasterStatus(
                name=name, reported=reported, version=parse_version(reported), ready=node_ready(node)
            )
        )
    return tuple(sorted(statuses, key=lambda m: m.name))


def evaluate(masters: Sequence[MasterStatus], *, rules: Rules) -> Observation:
    """Whether ``masters`` agree right now, ignoring the settle window."""
    masters = tuple(masters)

    def disagree(reason: str) -> Observation:
        return Observation(masters=masters, version=None, reason=reason)

    if len(masters) < max(rules.min_masters, 1):
        return disagree(f"{len(masters)} master(s) found, at least {max(rules.min_masters, 1)} required")
    unknown = [m for m in masters if m.version is None]
    if unknown:
        shown = ", ".join(f"{m.name}={m.reported or '<none>'!r}" for m in unknown)
        return disagree(f"unparseable version on {shown}")
    if rules.require_ready:
        not_ready = [m.name for m in masters if not m.ready]
        if not_ready:
            return disagree(f"not Ready: {', '.join(not_ready)}")
    versions = {m.version.key for m in masters if m.version is not None}
    if len(versions) > 1:
        shown = ", ".join(f"{m.name}={m.reported}" for m in masters)
        return disagree(f"masters disagree: {shown}")
    return Observation(masters=masters, version=masters[0].version)


@dataclasses.dataclass
class Tracker:
    """Feeds observations through the settle window; reports each change of the agreed version once."""

    settle_seconds: float
    current: Agreement | None = None  # the settled agreement now in force (None: not agreed now)
    last_reported: Version | None = None
    _candidate: Observation | None = None
    _candidate_since: float = 0.0

    def observe(self, observation: Observation, *, now: float) -> Agreement | None:
        """Take a new observation; returns an Agreement when the agreed version changes (at most once)."""
        if not observation.agreed:
            self._candidate = None
            self.current = None
            return None
        if self._candidate is None or self._candidate.signature != observation.signature:
            self._candidate = observation
            self._candidate_since = now
            if self.current is not None and self.current.version != observation.version:
                self.current = None
        return self.tick(now=now)

    def tick(self, *, now: float) -> Agreement | None:
        """Let time pass; returns an Agreement when a pending one has just settled on a new version."""
        candidate = self._candidate
        if (
            candidate is None
            or candidate.version is None
            or now - self._candidate_since < self.settle_seconds
        ):
            return None
        if self.current is not None and self.current.masters == candidate.signature[1]:
            return None
        self.current = Agreement(
            version=candidate.version,
            masters=tuple(m.name for m in candidate.masters),
            since=self._candidate_since,
        )
        if self.last_reported is not None and self.last_reported == candidate.version:
            return None
        self.last_reported = candidate.version
        return self.current

    def deadline(self) -> float | None:
        """When the pending candidate settles (None when nothing is pending)."""
        if self._candidate is None or (
            self.current is not None and self.current.masters == self._candidate.signature[1]
        ):
            return None
        return self._candidate_since + self.settle_seconds
