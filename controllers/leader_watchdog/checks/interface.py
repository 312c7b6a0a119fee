"""The watchdog's check interface, pure: what a check is given — raw API objects turned into typed records, the
:class:`Snapshot` of what the watches show at one moment, the :class:`Situation` around it — and what it finds
(:class:`Finding`, of a :class:`Kind` with one severity and one Event reason). The checks are ``checks/*.py``,
listed once in ``checks/__init__.py``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from controllers.agreement import masters as agreement_masters
from controllers.agreement import selector
from controllers.structs import checking, fields, leases, refs, times

HOSTNAME_LABEL = "kubernetes.io/hostname"
KUBERNETES_SERVICE = refs.ObjectRef(kind="Service", name="kubernetes", namespace="default")
KUBERNETES_SLICES = "kubernetes.io/service-name=kubernetes"  # label selector, in the Service's namespace


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseRecord:
    namespace: str
    name: str
    holder: str
    renew_time: float | None  # Unix time of the last renewal (acquireTime when never renewed)
    duration_seconds: float
    transitions: int
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def holder_hostname(self) -> str:
        """client-go identities are ``<hostname>_<uuid>``."""
        return self.holder.split("_", 1)[0]

    @property
    def expires_at(self) -> float | None:
        return leases.expires_at(self.renew_time, self.duration_seconds)

    def expired(self, *, now: float) -> bool:
        return leases.expired(self.renew_time, self.duration_seconds, now=now)

    def leaderless_for(self, *, now: float) -> float | None:
        """Seconds nobody has led by this Lease: since it was released (no holder), or since the holder's
        claim ran out; ``inf`` when it carries no time; None while it is held."""
        if self.holder and not self.expired(now=now):
            return None
        since = self.expires_at if self.holder else self.renew_time
        return math.inf if since is None else max(0.0, now - since)


@dataclasses.dataclass(frozen=True, slots=True)
class NodeRecord:
    name: str
    master: bool
    ready: bool
    version: str = ""  # as reported by the configured version source ("" when unknown)
    hostnames: frozenset[str] = frozenset()  # lower-cased: the name, the hostname label, Hostname addresses
    addresses: frozenset[str] = frozenset()  # InternalIP / ExternalIP


@dataclasses.dataclass(frozen=True, slots=True)
class AlertRule:
    """An alerting rule Prometheus evaluates: its group, its name, the vector selectors of its expression
    (rebuilt from tokens by :mod:`controllers.structs.promql`, never its text as written), and whether it calls
    ``absent`` (then missing series are what it watches for, not blindness)."""

    group: str
    name: str
    selectors: tuple[str, ...]
    absent: bool = False

    @property
    def subject(self) -> str:
        return f"alert rule {self.group}/{self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class RulesProbe:
    """One round of questions to Prometheus after an upgrade (blind-alert-rules): its alerting rules, how many
    series each selector has now, and, for those with none now, how many it had within ``window_seconds``
    before the upgrade began. A selector missing from ``now`` or ``before`` was not asked or not answered
    (``problems`` says why)."""

    began: float  # Unix time the upgrade began (as the watchdog saw it)
    window_seconds: float
    at: float  # Unix time of the round
    rules: tuple[AlertRule, ...]
    now: Mapping[str, int]
    before: Mapping[str, int]
    problems: tuple[str, ...]
    ref: refs.ObjectRef  # where its Events go

    def to_json(self) -> dict[str, Any]:
        return {
            "asked": times.iso(self.at),
            "upgradeBegan": times.iso(self.began),
            "windowSeconds": self.window_seconds,
            "alertingRules": len(self.rules),
            "selectorsAnswered": len(self.now),
            "selectorsWithoutSeries": sum(1 for count in self.now.values() if count == 0),
            "problems": list(self.problems[:NAMES_SHOWN]),
            "moreProblems": max(0, len(self.problems) - NAMES_SHOWN),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """What the watches show at one moment."""

    leaders: Mapping[str, LeaseRecord | None]  # "namespace/name" → the Lease (None: not found)
    apiservers: Sequence[LeaseRecord]  # kube-apiserver identity Leases
    heartbeats: Mapping[str, LeaseRecord]  # node name → its heartbeat Lease
    nodes: Sequence[NodeRecord]
    endpoint_ips: Sequence[str] | None  # the kubernetes Service's endpoints (None: no EndpointSlice)
    agreed_version: str | None = None  # the settled agreed version, when the masters agree
    checks: frozenset[str] | None = None  # the enabled checks (None: every one)
    rules_probe: RulesProbe | None = None  # the last round of questions to Prometheus (None: none yet)
    rules_error: str = ""  # why the last round could not read the rules ("": it could, or none yet)

    @property
    def masters(self) -> tuple[NodeRecord, ...]:
        return tuple(node for node in self.nodes if node.master)


def lease_record(raw: Mapping[str, Any]) -> LeaseRecord:
    meta = fields.mapping(raw.get("metadata"))
    labels = fields.mapping(meta.get("labels"))
    return LeaseRecord(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        holder=leases.holder(raw),
        renew_time=leases.renewed_at(raw),
        duration_seconds=leases.duration_seconds(raw),
        transitions=leases.transitions(raw),
        labels={str(k): str(v) for k, v in labels.items()},
    )


def node_record(
    raw: Mapping[str, Any], *, selectors: Sequence[selector.Selector], reported_version: str | None = None
) -> NodeRecord:
    """``reported_version`` overrides the kubelet version (the apiserver version source)."""
    meta = fields.mapping(raw.get("metadata"))
    name = str(meta.get("name") or "")
    labels = agreement_masters.node_labels(raw)
    hostnames = {name.lower()}
    if labels.get(HOSTNAME_LABEL):
        hostnames.add(str(labels[HOSTNAME_LABEL]).lower())
    addresses = set()
    for address in fields.mappings(fields.dig(raw, "status", "addresses")):
        value = str(address.get("address") or "")
        if not value:
            continue
        if address.get("type") == "Hostname":
            hostnames.add(value.lower())
        elif address.get("type") in ("InternalIP", "ExternalIP"):
            addresses.add(value)
    return NodeRecord(
        name=name,
        master=selector.matches_any(selectors, labels),
        ready=agreement_masters.node_ready(raw),
        version=agreement_masters.kubelet_version(raw) if reported_version is None else reported_version,
        hostnames=frozenset(hostnames),
        addresses=frozenset(addresses),
    )


def endpoint_slice_ips(raw: Mapping[str, Any]) -> frozenset[str]:
    """Every address (ready or not) of one EndpointSlice."""
    return frozenset(
        address
        for endpoint in fields.mappings(raw.get("endpoints"))
        for address in fields.strings(endpoint.get("addresses"))
    )


def service_endpoint_ips(slices: Iterable[frozenset[str]]) -> tuple[str, ...] | None:
    """The addresses of a Service's EndpointSlices, sorted, without duplicates (None: no slice at all)."""
    found = list(slices)
    return tuple(sorted(frozenset().union(*found))) if found else None


def lease_ref(key: str) -> refs.ObjectRef:
    """The Lease ``namespace/name``."""
    namespace, _, name = key.partition("/")
    return refs.ObjectRef(kind="Lease", name=name, namespace=namespace, api_version="coordination.k8s.io/v1")


def master_of(hostname: str, masters: Iterable[NodeRecord]) -> NodeRecord | None:
    """The master a host name belongs to (its name, hostname label or Hostname address), if any."""
    wanted = hostname.lower()
    return next((m for m in masters if wanted in m.hostnames), None) if wanted else None


FindingSeverity = Literal["critical", "warning"]
NAMES_SHOWN = 10  # node names quoted in evidence; the count is always complete


@dataclasses.dataclass(frozen=True, slots=True)
class Kind:
    """A kind of finding: its name (the ``check`` label of the metrics), one severity (so the metrics' label sets
    are fixed and can be pre-initialised) and one Event reason (CamelCase). ``silence_based``: it rests on time
    passing without an update (a Lease not renewed, a heartbeat not seen), which a lagging watch also looks
    like: the controller confirms a new one with a fresh read before raising it."""

    name: str
    severity: FindingSeverity
    reason: str
    silence_based: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    kind: Kind
    object: str  # what is wrong, as a person reads it: "Lease kube-system/kube-scheduler"
    evidence: str
    since: float  # Unix time: when it became true, as far as the evidence tells, else first seen
    ref: refs.ObjectRef

    @property
    def check(self) -> str:
        return self.kind.name

    @property
    def severity(self) -> FindingSeverity:
        return self.kind.severity

    @property
    def key(self) -> tuple[str, str]:
        return (self.check, self.object)

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "object": self.object,
            "evidence": self.evidence,
            "since": times.iso(self.since),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Thresholds:
    # A failover leaves a Lease expired (or released) for a moment: the next candidate takes it at its next
    # retry (every 2 s by default). Only a longer gap is a stale leader.
    leader_failover_seconds: float = 15.0
    heartbeat_stale_seconds: float = 40.0
    outage_window_seconds: float = 300.0
    notready_jump_min: int = 3
    notready_jump_fraction: float = 0.1

    def jump_threshold(self, workers: int) -> int:
        return max(self.notready_jump_min, math.ceil(self.notready_jump_fraction * workers), 1)


@dataclasses.dataclass(frozen=True, slots=True)
class NodeHealth:
    workers: int
    not_ready: tuple[str, ...]  # workers NotReady by condition or by a stale heartbeat, sorted
    condition_not_ready: int
    heartbeat_stale: int


@dataclasses.dataclass(frozen=True, slots=True)
class Situation:
    """What a check is given: the snapshot at ``now``, the rules, the workers' health, and what the watchdog
    remembers of the master set (when it last changed, how many workers were NotReady just before it did)
    and since when the outage pattern has been seen."""

    snapshot: Snapshot
    now: float
    rules: Thresholds
    health: NodeHealth
    masters_changed_at: float | None = None
    notready_before_change: int = 0
    pattern_since: float | None = None


@dataclasses.dataclass(frozen=True)
class WatchdogCheck(checking.Check[Situation, list[Finding]]):
    """A check of the watchdog: the kinds of finding it may return."""

    kinds: tuple[Kind, ...] = ()


def age(now: float, moment: float | None) -> str:
    return "never" if moment is None else f"{now - moment:.1f}s ago"


def names(masters: Sequence[NodeRecord]) -> str:
    return ", ".join(m.name for m in masters) or "none"


def quote(found: Sequence[str]) -> str:
    shown = ", ".join(found[:NAMES_SHOWN])
    return shown + (f" and {len(found) - NAMES_SHOWN} more" if len(found) > NAMES_SHOWN else "")
